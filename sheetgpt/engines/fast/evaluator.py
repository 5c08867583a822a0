"""Evaluate formula groups over NumPy arrays, with Excel's semantics for what is supported."""
from __future__ import annotations

import operator

import numpy as np

from .compiler import Apply, Group, Slot
from .parser import Binary, Bool, Err, Missing, Num, Str, Unary
from .reader import BOOL, EMPTY, ERR, NUM, STR, Sheet
from .values import (EvalError, RangeVal, Vals, as_numbers, const, error, first_errors, gather, materialize,
                     numbers_result, text_result, to_text)

CHUNK_ELEMENTS = 1 << 23  # bound on gathered elements per evaluation chunk


class Ctx:
    """One chunk of a group being evaluated."""

    def __init__(self, sheets: dict[str, Sheet], group: Group, sel: slice):
        self.sheets, self.group = sheets, group
        self.rows, self.cols = group.rows[sel], group.cols[sel]
        self.n = len(self.rows)
        self.slots = [RangeVal(s, r[sel], c[sel], h, w) for s, (h, w), r, c in
                      zip(group.slot_sheets, group.slot_shapes, group.slot_r0, group.slot_c0)]
        self.array = group.array


def evaluate_group(sheets: dict[str, Sheet], group: Group) -> None:
    """Compute every cell of the group and store the results in its sheet."""
    biggest = max([h * w for h, w in group.slot_shapes] + [1])
    step = max(1, CHUNK_ELEMENTS // biggest)
    for start in range(0, len(group), step):
        ctx = Ctx(sheets, group, slice(start, start + step))
        with np.errstate(all="ignore"):  # overflow and invalid results become #NUM! explicitly
            if group.extent == (1, 1):
                _store(sheets[group.sheet], ctx.rows, ctx.cols, to_cell(ctx, evaluate(group.tree, ctx)))
                continue
            h, w = group.extent
            result = to_range(ctx, evaluate(group.tree, ctx), h, w)  # [n, h, w]
            rows = np.broadcast_to(ctx.rows[:, None, None] + np.arange(h)[None, :, None], result.shape)
            cols = np.broadcast_to(ctx.cols[:, None, None] + np.arange(w)[None, None, :], result.shape)
            _store(sheets[group.sheet], rows.ravel(), cols.ravel(), result.flat())


def to_cell(ctx: Ctx, v) -> Vals:
    """What a cell shows: a reference or array is reduced to one value per cell."""
    if isinstance(v, RangeVal):
        v = materialize(ctx.sheets, v) if ctx.array else intersect(ctx, v)
    if v.num.ndim == 3:
        v = v.take((slice(None), 0, 0))
    return to_cell_values(v)  # =A1 of an empty cell shows 0


def to_range(ctx: Ctx, v, h: int, w: int) -> Vals:
    """What an array formula shows over its h x w range, per cell of the group [n, h, w]:
    its array, where the array is one value, one row or one column that repeated (as Excel
    and LibreOffice do), and #N/A beyond the array's size."""
    if isinstance(v, RangeVal):
        v = materialize(ctx.sheets, v)
    if v.num.ndim == 1:
        v = Vals(v.num[:, None, None], None if v.kind is None else v.kind[:, None, None],
                 None if v.obj is None else v.obj[:, None, None])
    vh, vw = v.num.shape[1:]
    rows, cols = np.arange(h), np.arange(w)
    ri = (np.zeros(h, np.int64) if vh == 1 else np.minimum(rows, vh - 1))[:, None]
    ci = (np.zeros(w, np.int64) if vw == 1 else np.minimum(cols, vw - 1))[None, :]
    out = v.take((slice(None), ri, ci))
    n = len(ctx.rows)
    out = Vals(*(None if a is None else np.broadcast_to(a, (n, h, w)) for a in (out.num, out.kind, out.obj)))
    beyond = ((rows >= vh) & (vh > 1))[:, None] | ((cols >= vw) & (vw > 1))[None, :]
    if beyond.any():
        out = select(np.broadcast_to(~beyond, (n, h, w)), out, error("#N/A", (n, h, w)))
    return to_cell_values(out)


def to_cell_values(v: Vals) -> Vals:
    """An empty cell read by a formula shows 0."""
    if v.kind is not None and (v.kind == EMPTY).any():
        kind = v.kind.copy()
        num = np.where(kind == EMPTY, 0.0, v.num)
        kind[kind == EMPTY] = NUM
        v = Vals(num, kind, v.obj)
    return v


def _store(sheet: Sheet, rows: np.ndarray, cols: np.ndarray, v: Vals) -> None:
    sheet.num[rows, cols] = v.num
    if v.kind is None:
        sheet.kind[rows, cols] = NUM
        return
    sheet.kind[rows, cols] = v.kind
    for i in np.flatnonzero((v.kind == STR) | (v.kind == ERR)).tolist():
        sheet.text[(int(rows[i]), int(cols[i]))] = v.obj[i]


# -- expressions --------------------------------------------------------------------------
def evaluate(node, ctx: Ctx):
    """A node's value: Vals (per cell) or RangeVal (a reference, read lazily)."""
    if isinstance(node, Slot):
        return ctx.slots[node.index]
    if isinstance(node, Num):
        return const(node.value, ctx.n)
    if isinstance(node, Str):
        return const(node.value, ctx.n)
    if isinstance(node, Bool):
        return const(node.value, ctx.n)
    if isinstance(node, Err):
        return error(node.code, ctx.n)
    if isinstance(node, Missing):
        return const(0.0, ctx.n)
    if isinstance(node, Unary):
        x, errs = as_numbers(operand(ctx, evaluate(node.arg, ctx)))
        x = -x if node.op == "-" else x / 100 if node.op == "%" else x
        return numbers_result(x, errs)
    if isinstance(node, Binary):
        a = operand(ctx, evaluate(node.left, ctx))
        b = operand(ctx, evaluate(node.right, ctx))
        a, b = _conform(a, b)
        if node.op in ARITHMETIC:
            return arithmetic(node.op, a, b)
        if node.op == "&":
            return concat(a, b)
        return compare(node.op, a, b)
    if isinstance(node, Apply):
        return node.implementation(ctx, node.args)
    raise EvalError(f"cannot evaluate {type(node).__name__}")


def operand(ctx: Ctx, v) -> Vals:
    """A value used by an operator: arrays in array context, else one value per cell."""
    if isinstance(v, RangeVal):
        if ctx.array:
            m = materialize(ctx.sheets, v)
            return m.take((slice(None), 0, 0)) if v.h == v.w == 1 else m
        return intersect(ctx, v)
    return v


def intersect(ctx: Ctx, rv: RangeVal) -> Vals:
    """Excel's implicit intersection: a range in a one-value place gives the cell in the
    formula's own row (a column range) or column (a row range), else #VALUE!."""
    if rv.h == 1 and rv.w == 1:
        return gather(ctx.sheets, rv.sheet, rv.r0, rv.c0)
    if rv.w == 1:
        ok = (ctx.rows >= rv.r0) & (ctx.rows < rv.r0 + rv.h)
        v = gather(ctx.sheets, rv.sheet, np.where(ok, ctx.rows, rv.r0), rv.c0)
    elif rv.h == 1:
        ok = (ctx.cols >= rv.c0) & (ctx.cols < rv.c0 + rv.w)
        v = gather(ctx.sheets, rv.sheet, rv.r0, np.where(ok, ctx.cols, rv.c0))
    else:
        return error("#VALUE!", ctx.n)
    if ok.all():
        return v
    return select(ok, v, error("#VALUE!", ctx.n))


def _conform(a: Vals, b: Vals) -> tuple[Vals, Vals]:
    """Two arrays of different sizes, as Excel and LibreOffice combine them: the result is as
    large as the larger in each direction; a one-row or one-column array repeats, and a
    longer one meets #N/A beyond the shorter's end ({1,2,3}+{1,2} is {2,4,#N/A})."""
    if a.num.ndim != 3 or b.num.ndim != 3 or a.num.shape[1:] == b.num.shape[1:]:
        return a, b
    h, w = max(a.num.shape[1], b.num.shape[1]), max(a.num.shape[2], b.num.shape[2])
    return _padded(a, h, w), _padded(b, h, w)


def _padded(v: Vals, h: int, w: int) -> Vals:
    n, vh, vw = v.num.shape
    th, tw = (vh if vh == 1 else h), (vw if vw == 1 else w)
    if (th, tw) == (vh, vw):
        return v
    num = np.full((n, th, tw), np.nan)
    kind = np.full((n, th, tw), ERR, np.uint8)
    obj = np.full((n, th, tw), "#N/A", dtype=object)
    num[:, :vh, :vw], kind[:, :vh, :vw], obj[:, :vh, :vw] = v.num, _kinds(v), _objs(v)
    return Vals(num, kind, obj)


def _align(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell scalars [n] against per-cell arrays [n, h, w] (arrays already conformed)."""
    if x.ndim == 1 and y.ndim == 3:
        x = x[:, None, None]
    elif y.ndim == 1 and x.ndim == 3:
        y = y[:, None, None]
    return x, y


ARITHMETIC = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power}


def arithmetic(op: str, a: Vals, b: Vals) -> Vals:
    x, ex = as_numbers(a)
    y, ey = as_numbers(b)
    x, y = _align(x, y)
    if ex is not None:
        ex = ex.reshape(x.shape)
    if ey is not None:
        ey = ey.reshape(y.shape)
    with np.errstate(all="ignore"):
        result = ARITHMETIC[op](x, y)
    errs = first_errors(ex, ey)
    if op == "/" and (y == 0).any():
        div0 = np.broadcast_to(np.where(y == 0, "#DIV/0!", None), result.shape)
        errs = first_errors(errs, div0)
    if op == "^" and ((x == 0) & (y <= 0)).any():  # Excel: 0^0 is #NUM!, 0^negative is #DIV/0!
        code = np.where((x == 0) & (y == 0), "#NUM!", np.where((x == 0) & (y < 0), "#DIV/0!", None))
        errs = first_errors(errs, np.broadcast_to(code, result.shape))
    return numbers_result(result, errs)


_COMPARE = {"=": operator.eq, "<>": operator.ne, "<": operator.lt, ">": operator.gt,
            "<=": operator.le, ">=": operator.ge}


def scalar_operand(ctx: Ctx, node) -> Vals:
    """An argument that takes one value per cell: evaluated outside array context, a
    range implicitly intersected, an array's first element."""
    saved, ctx.array = ctx.array, False
    try:
        v = operand(ctx, evaluate(node, ctx))
    finally:
        ctx.array = saved
    return v.take((slice(None), 0, 0)) if v.num.ndim == 3 else v


def compare(op: str, a: Vals, b: Vals) -> Vals:
    if a.kind is None and b.kind is None:
        x, y = _align(a.num, b.num)
        out = _COMPARE[op](x, y)
        return Vals(out.astype(np.float64), np.full(out.shape, BOOL, np.uint8))
    # mixed types, element by element: numbers < text < booleans; text ignores case
    x, y = _align(a.num, b.num)
    shape = np.broadcast_shapes(x.shape, y.shape)
    ka = np.broadcast_to(_kinds(a).reshape(x.shape), shape)
    kb = np.broadcast_to(_kinds(b).reshape(y.shape), shape)
    oa = np.broadcast_to(_objs(a).reshape(x.shape), shape)
    ob = np.broadcast_to(_objs(b).reshape(y.shape), shape)
    xa, yb = np.broadcast_to(x, shape), np.broadcast_to(y, shape)
    out = np.zeros(shape)
    errs = np.full(shape, None, dtype=object)
    for i in np.ndindex(shape):
        if ka[i] == ERR or kb[i] == ERR:
            errs[i] = oa[i] if ka[i] == ERR else ob[i]
            continue
        out[i] = _COMPARE[op](_sort_key(ka[i], xa[i], oa[i], kb[i]), _sort_key(kb[i], yb[i], ob[i], ka[i]))
    v = Vals(out, np.full(shape, BOOL, np.uint8))
    if (~np.equal(errs, None)).any():
        return select(np.equal(errs, None), v, Vals(np.full(shape, np.nan), np.full(shape, ERR, np.uint8), errs))
    return v


def _sort_key(kind, num, obj, other_kind):
    if kind == EMPTY:  # an empty cell compares as 0 with numbers, "" with text, FALSE with booleans
        kind = {STR: STR, BOOL: BOOL}.get(other_kind, NUM)
        num, obj = 0.0, ""
    if kind == NUM:
        return (0, num)
    if kind == STR:
        return (1, str(obj).lower())
    return (2, num)


def _as_3d(v: Vals) -> Vals:
    if v.num.ndim == 3:
        return v
    return Vals(v.num[:, None, None], None if v.kind is None else v.kind[:, None, None],
                None if v.obj is None else v.obj[:, None, None])


def _kinds(v: Vals) -> np.ndarray:
    return v.kind if v.kind is not None else np.full(v.num.shape, NUM, np.uint8)


def _objs(v: Vals) -> np.ndarray:
    return v.obj if v.obj is not None else np.full(v.num.shape, None, dtype=object)


def concat(a: Vals, b: Vals) -> Vals:
    ta, ea = to_text(a)
    tb, eb = to_text(b)
    ta, tb = _align(ta, tb)
    return text_result(np.frompyfunc(operator.add, 2, 1)(ta, tb), first_errors(
        None if ea is None else ea.reshape(ta.shape), None if eb is None else eb.reshape(tb.shape)))


def select(cond: np.ndarray, a: Vals, b: Vals) -> Vals:
    """Per element: a where cond, else b (shapes broadcast: a value per cell [n] against
    an array per cell [n, h, w])."""
    if a.num.ndim != b.num.ndim or cond.ndim != max(a.num.ndim, b.num.ndim):
        a, b = _as_3d(a), _as_3d(b)
        cond = cond.reshape(cond.shape + (1,) * (3 - cond.ndim))
    num = np.where(cond, a.num, b.num)
    if a.kind is None and b.kind is None:
        return Vals(num)
    kind = np.where(cond, _kinds(a), _kinds(b)).astype(np.uint8)
    obj = np.where(cond, _objs(a), _objs(b))
    return Vals(num, kind, obj)
