"""Text and logical functions, element by element, with Excel's rules: what a tokenizer
written in formulas needs (MID, LEN, LEFT, RIGHT, CODE, CHAR, EXACT, ISNUMBER, AND, OR, NOT).

Arguments are single values per cell (a range in a normal cell is implicitly intersected,
as for the other one-value functions). Text arguments take Excel's text view of numbers
(General format), booleans and empty cells; number arguments its arithmetic view, with
fractions truncated toward zero where a count or a position is meant.
"""
from __future__ import annotations

import numpy as np

from .evaluator import scalar_operand as _scalar
from .evaluator import select
from .reader import BOOL, EMPTY, ERR, NUM, STR
from .registry import function
from .values import EvalError, Vals, as_numbers, first_errors, numbers_result, text_result, to_text


def _arity(args, lo: int, hi: int, name: str) -> None:
    if not lo <= len(args) <= hi:
        raise EvalError(f"{name} takes {lo} argument{'s' if lo > 1 else ''}" if lo == hi else
                        f"{name} takes {lo} to {hi} arguments")


def _texts(ctx, node) -> tuple[np.ndarray, np.ndarray | None]:
    return to_text(_scalar(ctx, node))


def _counts(ctx, node) -> tuple[np.ndarray, np.ndarray | None]:
    x, errors = as_numbers(_scalar(ctx, node))
    return np.trunc(x), errors


def _invalid(where: np.ndarray) -> np.ndarray | None:
    return np.where(where, "#VALUE!", None) if where.any() else None


def _booleans(values: np.ndarray, errors: np.ndarray | None) -> Vals:
    v = Vals(values.astype(np.float64), np.full(values.shape, BOOL, np.uint8))
    if errors is None or np.equal(errors, None).all():
        return v
    return select(np.equal(errors, None), v,
                  Vals(np.full(values.shape, np.nan), np.full(values.shape, ERR, np.uint8), errors))


@function("LEN", portable=True)
def LEN(ctx, args):
    _arity(args, 1, 1, "LEN")
    text, errors = _texts(ctx, args[0])
    return numbers_result(np.array([len(t) for t in text], dtype=np.float64), errors)


@function("MID", portable=True)
def MID(ctx, args):
    """MID(text, start, n): n characters from position start (1-based); #VALUE! when
    start < 1 or n < 0; empty text past the end."""
    _arity(args, 3, 3, "MID")
    text, e_text = _texts(ctx, args[0])
    start, e_start = _counts(ctx, args[1])
    n, e_n = _counts(ctx, args[2])
    ok = (start >= 1) & (n >= 0)
    out = np.array([t[int(s) - 1:int(s) - 1 + int(k)] if good else ""
                    for t, s, k, good in zip(text, start, n, ok)] + [None], dtype=object)[:-1]
    return text_result(out, first_errors(e_text, e_start, e_n, _invalid(~ok)))


def _end(args, ctx, name: str, right: bool) -> Vals:
    _arity(args, 1, 2, name)
    text, e_text = _texts(ctx, args[0])
    n, e_n = _counts(ctx, args[1]) if len(args) == 2 else (np.ones(len(text)), None)
    ok = n >= 0
    out = np.array([(t[len(t) - int(k):] if k else "") if right else t[:int(k)] if good else ""
                    for t, k, good in zip(text, n, ok)] + [None], dtype=object)[:-1]
    return text_result(out, first_errors(e_text, e_n, _invalid(~ok)))


@function("LEFT", portable=True)
def LEFT(ctx, args):
    return _end(args, ctx, "LEFT", right=False)


@function("RIGHT", portable=True)
def RIGHT(ctx, args):
    return _end(args, ctx, "RIGHT", right=True)


@function("CODE", portable=True)
def CODE(ctx, args):
    """The code of the first character (#VALUE! for empty text). Excel and LibreOffice agree
    on ASCII; beyond it Excel answers in the system's code page, this engine in Unicode."""
    _arity(args, 1, 1, "CODE")
    text, errors = _texts(ctx, args[0])
    codes = np.array([ord(t[0]) if t else np.nan for t in text], dtype=np.float64)
    return numbers_result(np.nan_to_num(codes, nan=0.0), first_errors(errors, _invalid(np.isnan(codes))))


@function("CHAR", portable=True)
def CHAR(ctx, args):
    """The character of a code 1..255 (#VALUE! otherwise). Excel and LibreOffice agree on
    ASCII; beyond it Excel answers in the system's code page, this engine in Latin-1."""
    _arity(args, 1, 1, "CHAR")
    codes, errors = _counts(ctx, args[0])
    ok = (codes >= 1) & (codes <= 255)
    out = np.array([chr(int(c)) if good else "" for c, good in zip(codes, ok)] + [None], dtype=object)[:-1]
    return text_result(out, first_errors(errors, _invalid(~ok)))


@function("EXACT", portable=True)
def EXACT(ctx, args):
    """Whether two texts are the same, case included (the one comparison that sees case)."""
    _arity(args, 2, 2, "EXACT")
    (a, ea), (b, eb) = _texts(ctx, args[0]), _texts(ctx, args[1])
    return _booleans(np.array([x == y for x, y in zip(a, b)], dtype=bool), first_errors(ea, eb))


@function("ISNUMBER", portable=True)
def ISNUMBER(ctx, args):
    _arity(args, 1, 1, "ISNUMBER")
    v = _scalar(ctx, args[0])
    return _booleans(np.ones(v.num.shape, bool) if v.kind is None else v.kind == NUM, None)


def _truth(ctx, node) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(value as a boolean, whether it counts, errors): empty cells do not count; text is
    #VALUE! (Excel's AND("x"))."""
    v = _scalar(ctx, node)
    kind = v.kind if v.kind is not None else np.full(v.num.shape, NUM, np.uint8)
    errors = np.where(kind == ERR, v.obj, None) if (kind == ERR).any() else None
    errors = first_errors(errors, _invalid(kind == STR))
    return np.where(kind == EMPTY, 0.0, np.nan_to_num(v.num)) != 0, kind != EMPTY, errors


def _all_or_any(ctx, args, name: str, combine) -> Vals:
    if not args:
        raise EvalError(f"{name} takes at least one argument")
    parts = [_truth(ctx, a) for a in args]
    values = np.stack([p[0] | ~p[1] if combine is np.all else p[0] & p[1] for p in parts])
    counted = np.stack([p[1] for p in parts]).any(axis=0)
    errors = first_errors(*(p[2] for p in parts), _invalid(~counted))
    return _booleans(combine(values, axis=0), errors)


@function("AND", portable=True)
def AND(ctx, args):
    return _all_or_any(ctx, args, "AND", np.all)


@function("OR", portable=True)
def OR(ctx, args):
    return _all_or_any(ctx, args, "OR", np.any)


@function("NOT", portable=True)
def NOT(ctx, args):
    _arity(args, 1, 1, "NOT")
    value, counted, errors = _truth(ctx, args[0])
    return _booleans(~value, errors)  # NOT of an empty cell is TRUE, as in Excel
