"""Vectorised cell values: one value (or one array) per cell of a formula group.

A `Vals` holds float64 numbers plus, only when needed, a kind per element (empty,
number, text, boolean, error) and the text or error code of the non-numbers. A
`RangeVal` is a reference not yet read: one rectangle of fixed shape per cell.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .reader import BOOL, EMPTY, ERR, NUM, STR, Sheet


class EvalError(Exception):
    """A construct this engine cannot evaluate for a whole group (e.g. mismatched arrays)."""


@dataclass
class Vals:
    num: np.ndarray  # float64 [n] (a scalar per cell) or [n, h, w] (an array per cell)
    kind: np.ndarray | None = None  # uint8, same shape; None: all numbers
    obj: np.ndarray | None = None  # object, same shape: text or error code where kind is STR/ERR

    @property
    def shape(self) -> tuple[int, ...]:
        return self.num.shape

    def flat(self) -> "Vals":
        """The elements in one dimension, row by row."""
        return Vals(self.num.ravel(), None if self.kind is None else self.kind.ravel(),
                    None if self.obj is None else self.obj.ravel())

    def take(self, index) -> "Vals":
        return Vals(self.num[index], None if self.kind is None else self.kind[index],
                    None if self.obj is None else self.obj[index])


@dataclass
class RangeVal:
    sheet: str
    r0: np.ndarray  # int64 [n], 0-based top-left per cell
    c0: np.ndarray
    h: int
    w: int


def const(value: bool | float | str, n: int) -> Vals:
    """A literal for every cell (text stays text even when it looks like an error code)."""
    if isinstance(value, bool):
        return Vals(np.full(n, float(value)), np.full(n, BOOL, np.uint8))
    if isinstance(value, (int, float)):
        return Vals(np.full(n, float(value)))
    return Vals(np.full(n, np.nan), np.full(n, STR, np.uint8), np.full(n, value, dtype=object))


def error(code: str, shape) -> Vals:
    return Vals(np.full(shape, np.nan), np.full(shape, ERR, np.uint8), np.full(shape, code, dtype=object))


def gather(sheets: dict[str, Sheet], sheet: str, rows: np.ndarray, cols: np.ndarray) -> Vals:
    """Values at (rows, cols) of a sheet (any matching shapes); outside the used area: empty."""
    s = sheets[sheet]
    n_rows, n_cols = s.num.shape
    inside = (rows < n_rows) & (cols < n_cols) & (rows >= 0) & (cols >= 0)
    if inside.all():
        num, kind = s.num[rows, cols], s.kind[rows, cols]
    else:
        r, c = np.where(inside, rows, 0), np.where(inside, cols, 0)
        if n_rows == 0 or n_cols == 0:
            return Vals(np.full(rows.shape, np.nan), np.zeros(rows.shape, np.uint8))
        num = np.where(inside, s.num[r, c], np.nan)
        kind = np.where(inside, s.kind[r, c], np.uint8(EMPTY)).astype(np.uint8)
    if kind.size and (kind == NUM).all():
        return Vals(num)
    obj = None
    special = np.flatnonzero((kind == STR) | (kind == ERR))
    if special.size:
        obj = np.full(kind.shape, None, dtype=object)
        flat_r, flat_c = rows.ravel(), cols.ravel()
        obj.ravel()[special] = [s.text[(int(flat_r[i]), int(flat_c[i]))] for i in special.tolist()]
    return Vals(num, kind, obj)


def materialize(sheets: dict[str, Sheet], rv: RangeVal) -> Vals:
    """The rectangles of a RangeVal as arrays [n, h, w]."""
    view = _contiguous_view(sheets[rv.sheet], rv)
    if view is not None:
        return view
    rows = rv.r0[:, None, None] + np.arange(rv.h)[None, :, None]
    cols = rv.c0[:, None, None] + np.arange(rv.w)[None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    return gather(sheets, rv.sheet, rows, cols)


def _contiguous_view(s: Sheet, rv: RangeVal) -> Vals | None:
    """Rectangles that tile one block of numbers (the columns of a weight matrix, the rows
    of an activation block): read them as a view instead of gathering cell by cell."""
    n = len(rv.r0)
    if n == 0 or rv.r0.max() + rv.h > s.num.shape[0] or rv.c0.max() + rv.w > s.num.shape[1]:
        return None
    r, c = int(rv.r0[0]), int(rv.c0[0])
    steps = np.arange(n)
    if rv.w == 1 and (rv.r0 == r).all() and (rv.c0 == c + steps).all():
        num, kind = s.num[r:r + rv.h, c:c + n].T[:, :, None], s.kind[r:r + rv.h, c:c + n]
    elif rv.h == 1 and (rv.c0 == c).all() and (rv.r0 == r + steps).all():
        num, kind = s.num[r:r + n, c:c + rv.w][:, None, :], s.kind[r:r + n, c:c + rv.w]
    elif n == 1:
        num, kind = s.num[r:r + rv.h, c:c + rv.w][None], s.kind[r:r + rv.h, c:c + rv.w]
    else:
        return None
    return Vals(num) if (kind == NUM).all() else None


_NUMERIC_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")  # what Excel reads as a number


def as_numbers(v: Vals) -> tuple[np.ndarray, np.ndarray | None]:
    """Excel's arithmetic view: empty -> 0, TRUE -> 1, numeric text -> number.

    Returns the numbers and an object array of error codes (None where there is none)."""
    if v.kind is None:
        return v.num, None
    num = np.where(v.kind == EMPTY, 0.0, v.num)
    errors = None
    special = np.flatnonzero((v.kind == STR) | (v.kind == ERR))
    if special.size:
        errors = np.full(v.kind.shape, None, dtype=object)
        flat_num, flat_err, flat_kind, flat_obj = num.ravel(), errors.ravel(), v.kind.ravel(), v.obj.ravel()
        for i in special.tolist():
            if flat_kind[i] == ERR:
                flat_err[i] = flat_obj[i]
                continue
            text = str(flat_obj[i]).strip()
            if _NUMERIC_TEXT.match(text):
                flat_num[i] = float(text)
            else:
                flat_err[i] = "#VALUE!"
    return num, errors


def first_errors(*errs: np.ndarray | None) -> np.ndarray | None:
    """Combine error arrays (broadcast): the leftmost error wins, as Excel reads left to right."""
    present = [e for e in errs if e is not None]
    if not present:
        return None
    shape = np.broadcast_shapes(*(e.shape for e in present))
    out = np.full(shape, None, dtype=object)
    for e in reversed(present):
        e = np.broadcast_to(e, shape)
        has = ~np.equal(e, None)
        out[has] = e[has]
    return out


def numbers_result(num: np.ndarray, errors: np.ndarray | None = None) -> Vals:
    """Numbers with their errors; NaN or infinity without a recorded error becomes #NUM!."""
    bad = ~np.isfinite(num)
    if errors is None and not bad.any():
        return Vals(num)
    codes = np.full(num.shape, None, dtype=object) if errors is None else np.broadcast_to(errors, num.shape).copy()
    codes[bad & np.equal(codes, None)] = "#NUM!"
    is_err = ~np.equal(codes, None)
    if not is_err.any():
        return Vals(num)
    kind = np.where(is_err, ERR, NUM).astype(np.uint8)
    return Vals(np.where(is_err, np.nan, num), kind, np.where(is_err, codes, None))


def to_text(v: Vals) -> tuple[np.ndarray, np.ndarray | None]:
    """Excel's text view for &: numbers in General format, TRUE/FALSE, empty -> ''."""
    out = np.empty(v.num.shape, dtype=object)
    errors = None
    kind = v.kind if v.kind is not None else np.full(v.num.shape, NUM, np.uint8)
    flat_out, flat_num, flat_kind = out.ravel(), v.num.ravel(), kind.ravel()
    flat_obj = v.obj.ravel() if v.obj is not None else None
    for i in range(flat_out.size):
        k = flat_kind[i]
        if k == NUM:
            flat_out[i] = general_format(flat_num[i])
        elif k == EMPTY:
            flat_out[i] = ""
        elif k == BOOL:
            flat_out[i] = "TRUE" if flat_num[i] else "FALSE"
        elif k == STR:
            flat_out[i] = flat_obj[i]
        else:
            if errors is None:
                errors = np.full(v.num.shape, None, dtype=object)
            errors.ravel()[i] = flat_obj[i]
            flat_out[i] = ""
    return out, errors


def general_format(x: float) -> str:
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return ("%.15g" % x).upper()  # Excel writes 1E+20, not 1e+20


def text_result(text: np.ndarray, errors: np.ndarray | None) -> Vals:
    kind = np.full(text.shape, STR, np.uint8)
    obj = text.copy()
    if errors is not None:
        is_err = ~np.equal(errors, None)
        kind[is_err] = ERR
        obj[is_err] = errors[is_err]
    return Vals(np.full(text.shape, np.nan), kind, obj)
