"""The spreadsheet functions this engine supports, each vectorised over a group's cells.

A function gets the evaluation context and its argument trees, so it decides itself
whether an argument is a reference (read lazily, rectangles deduplicated across cells),
an array (inside SUMPRODUCT and MMULT) or one value per cell. Each registers itself, with
its portability facts, through the `function` decorator.
"""
from __future__ import annotations

import math
import re

import numpy as np

from .evaluator import Ctx, evaluate, operand, select
from .evaluator import scalar_operand as _scalar
from .parser import Missing
from .reader import EMPTY, ERR, NUM, STR
from .registry import ALL, declare, function, implementations
from .values import (EvalError, RangeVal, Vals, as_numbers, const, error, first_errors, gather, materialize,
                     numbers_result)


def _array(ctx: Ctx, node):
    """An argument evaluated as an array (Excel evaluates SUMPRODUCT/MMULT args so)."""
    saved, ctx.array = ctx.array, True
    try:
        return evaluate(node, ctx)
    finally:
        ctx.array = saved


def _unique_ranges(rv: RangeVal) -> tuple[RangeVal, np.ndarray]:
    """The distinct rectangles of a RangeVal and, per cell, which one it uses."""
    key = rv.r0 * (1 << 20) + rv.c0
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return RangeVal(rv.sheet, rv.r0[first], rv.c0[first], rv.h, rv.w), inverse.ravel()


def _as_arrays(ctx: Ctx, v) -> tuple[Vals, np.ndarray | None]:
    """An argument as arrays [u, h, w] with, per cell, the index of its array (or None: one per cell)."""
    if isinstance(v, RangeVal):
        uniq, inverse = _unique_ranges(v)
        return materialize(ctx.sheets, uniq), inverse
    if v.num.ndim == 1:
        return Vals(v.num[:, None, None], None if v.kind is None else v.kind[:, None, None],
                    None if v.obj is None else v.obj[:, None, None]), None
    return v, None


def _expand(x: np.ndarray, inverse: np.ndarray | None) -> np.ndarray:
    return x if inverse is None else x[inverse]


# -- reductions over ranges: numbers only, text and empty cells ignored, errors propagate -----
def _reduce(ctx: Ctx, args, reducer, empty_value: float | None) -> Vals:
    """reducer(list of 1-D number arrays) -> value, per cell."""
    parts = []  # per argument: (numbers [u, k] masked, mask, errors, inverse)
    for node in args:
        v = evaluate(node, ctx) if not isinstance(node, Missing) else const(0.0, ctx.n)
        if isinstance(v, RangeVal) or v.num.ndim == 3:
            arr, inverse = _as_arrays(ctx, v)
            u = arr.num.shape[0]
            num = arr.num.reshape(u, -1)
            kind = arr.kind.reshape(u, -1) if arr.kind is not None else None
            mask = np.ones(num.shape, bool) if kind is None else kind == NUM
            errs = None
            if kind is not None and (kind == ERR).any():
                obj = arr.obj.reshape(u, -1)
                errs = np.array([next((o for o, k in zip(obj[i], kind[i]) if k == ERR), None) for i in range(u)],
                                dtype=object)
            parts.append((num, mask, errs, inverse))
        else:  # a value given directly counts even if it is TRUE or numeric text
            num, errs = as_numbers(v)
            parts.append((num[:, None], np.ones((ctx.n, 1), bool), errs, None))
    out = np.empty(ctx.n)
    errors = np.full(ctx.n, None, dtype=object)
    if all(inv is not None and len(num) == 1 for num, _, _, inv in parts):  # one shared range: once
        values = np.concatenate([num[0][mask[0]] for num, mask, _, _ in parts])
        result = reducer(values) if values.size or empty_value is None else empty_value
        out[:] = np.nan if result is None else result
        errors[:] = next((e[0] for _, _, e, _ in parts if e is not None and e[0] is not None), None)
        if result is None and errors[0] is None:
            errors[:] = "#DIV/0!"
        return numbers_result(out, errors if (~np.equal(errors, None)).any() else None)
    if len(parts) == 1 and parts[0][1].all() and parts[0][2] is None:  # plain numbers: vectorised
        num, _, _, inverse = parts[0]
        fast = {np.sum: np.sum, np.max: np.max, np.min: np.min}.get(reducer)
        if fast is not None and num.shape[1] > 0:
            return numbers_result(_expand(fast(num, axis=1), inverse))
    for i in range(ctx.n):
        values = []
        for num, mask, errs, inverse in parts:
            j = i if inverse is None else inverse[i]
            if errs is not None and errs[j] is not None and errors[i] is None:
                errors[i] = errs[j]
            values.append(num[j][mask[j]])
        values = np.concatenate(values)
        result = reducer(values) if values.size or empty_value is None else empty_value
        if result is None:
            errors[i] = errors[i] or "#DIV/0!"
            result = np.nan
        out[i] = result
    return numbers_result(out, errors if (~np.equal(errors, None)).any() else None)


def _mean(values: np.ndarray):
    return values.mean() if values.size else None


def _varp(values: np.ndarray):
    return ((values - values.mean()) ** 2).mean() if values.size else None


@function("SUM", portable=True, range_args=ALL)
def SUM(ctx, args):
    return _reduce(ctx, args, np.sum, 0.0)


@function("AVERAGE", portable=True, range_args=ALL)
def AVERAGE(ctx, args):
    return _reduce(ctx, args, _mean, None)


@function("MAX", portable=True, range_args=ALL)
def MAX(ctx, args):
    return _reduce(ctx, args, np.max, 0.0)


@function("MIN", portable=True, range_args=ALL)
def MIN(ctx, args):
    return _reduce(ctx, args, np.min, 0.0)


@function("COUNT", portable=True, range_args=ALL)
def COUNT(ctx, args):
    """Numbers in ranges; direct arguments that are numbers, booleans or numeric text. Errors
    and other text are not counted and do not propagate."""
    total = np.zeros(ctx.n)
    for node in args:
        v = evaluate(node, ctx) if not isinstance(node, Missing) else const(0.0, ctx.n)
        if isinstance(v, RangeVal) or v.num.ndim == 3:
            arr, inverse = _as_arrays(ctx, v)
            kind = arr.kind.reshape(arr.num.shape[0], -1) if arr.kind is not None else None
            counts = (kind == NUM).sum(axis=1) if kind is not None else np.full(arr.num.shape[0], arr.num[0].size)
            total += _expand(counts, inverse)
        else:
            num, errs = as_numbers(v)
            kinds = v.kind if v.kind is not None else np.full(ctx.n, NUM, np.uint8)
            counted = (kinds != ERR) & (kinds != EMPTY)
            if errs is not None:
                counted &= np.equal(errs, None)
            total += counted
    return Vals(total)


@function("VARP", portable=True, range_args=ALL)
@function("VAR.P", xlfn=True, portable=True, range_args=ALL)
def VARP(ctx, args):
    return _reduce(ctx, args, _varp, None)


def _kth(ctx, args, largest: bool) -> Vals:
    if len(args) != 2:
        raise EvalError("LARGE and SMALL take 2 arguments")
    v = evaluate(args[0], ctx)
    arr, inverse = _as_arrays(ctx, v)
    k, kerr = as_numbers(_scalar(ctx, args[1]))
    u = arr.num.shape[0]
    num = arr.num.reshape(u, -1)
    kind = arr.kind.reshape(u, -1) if arr.kind is not None else None
    out = np.full(ctx.n, np.nan)
    errors = np.full(ctx.n, None, dtype=object) if kerr is None else kerr.copy()
    sorted_ = []
    for i in range(u):
        if kind is not None and (kind[i] == ERR).any():
            sorted_.append(arr.obj.reshape(u, -1)[i][kind[i] == ERR][0])
            continue
        vals = num[i] if kind is None else num[i][kind[i] == NUM]
        sorted_.append(-np.sort(-vals) if largest else np.sort(vals))
    for i in range(ctx.n):
        if errors[i] is not None:
            continue
        s = sorted_[i if inverse is None else inverse[i]]
        kk = math.ceil(k[i] - 1e-12) if np.isfinite(k[i]) else 0
        if isinstance(s, str):
            errors[i] = s
        elif not 1 <= kk <= len(s):
            errors[i] = "#NUM!"
        else:
            out[i] = s[kk - 1]
    return numbers_result(out, errors)


@function("LARGE", portable=True, range_args=(0,))
def LARGE(ctx, args):
    return _kth(ctx, args, True)


@function("SMALL", portable=True, range_args=(0,))
def SMALL(ctx, args):
    return _kth(ctx, args, False)


# -- products -------------------------------------------------------------------------------
def _dot(ctx: Ctx, a: RangeVal, b: RangeVal) -> Vals | None:
    """Per cell: sum of a's rectangle times b's, both read row by row; None if not all numbers.

    Distinct rectangles are read once; when few distinct pairs exist (a row of activations
    against columns of a weight matrix) it is one matrix product."""
    ua, ia = _unique_ranges(a)
    ub, ib = _unique_ranges(b)
    A, B = materialize(ctx.sheets, ua), materialize(ctx.sheets, ub)
    if A.kind is not None or B.kind is not None:
        return None
    k = a.h * a.w
    Am, Bm = A.num.reshape(A.num.shape[0], k), B.num.reshape(B.num.shape[0], k)
    if Am.shape[0] * Bm.shape[0] <= 4 * ctx.n + 64:
        return numbers_result((Am @ Bm.T)[ia, ib])
    return numbers_result(np.einsum("nk,nk->n", Am[ia], Bm[ib]))


@function("SUMPRODUCT", portable=True, array_args=True)
def SUMPRODUCT(ctx, args):
    if not args:
        raise EvalError("SUMPRODUCT needs at least one argument")
    vals = [_array(ctx, a) for a in args]
    if len(vals) == 2 and all(isinstance(v, RangeVal) for v in vals) and \
            (vals[0].h, vals[0].w) == (vals[1].h, vals[1].w):
        fast = _dot(ctx, vals[0], vals[1])
        if fast is not None:
            return fast
    arrays = [_as_arrays(ctx, v) for v in vals]
    if len({arr.num.shape[1:] for arr, _ in arrays}) != 1:
        return error("#VALUE!", ctx.n)
    total = np.ones((ctx.n, *arrays[0][0].num.shape[1:]))
    errs = None
    for arr, inverse in arrays:
        num = arr.num if arr.kind is None else np.where(arr.kind == NUM, arr.num, 0.0)  # text counts as 0
        total = total * _expand(num, inverse)
        if arr.kind is not None and (arr.kind == ERR).any():
            codes = _expand(np.where(arr.kind == ERR, arr.obj, None), inverse).reshape(ctx.n, -1)
            errs = first_errors(errs, np.array([next((x for x in row if x is not None), None) for row in codes],
                                               dtype=object))
    return numbers_result(total.reshape(ctx.n, -1).sum(axis=1), errs)


@function("MMULT", portable=True, array_args=True)
def MMULT(ctx, args):
    """The matrix product; a normal cell shows its top-left element, an array formula all of it."""
    if len(args) != 2:
        raise EvalError("MMULT takes 2 arguments")
    a, b = _array(ctx, args[0]), _array(ctx, args[1])
    if isinstance(a, RangeVal) and isinstance(b, RangeVal):
        if a.w != b.h:
            return error("#VALUE!", ctx.n)
        if a.h == 1 and b.w == 1:  # a row by a column: one number, their dot product
            fast = _dot(ctx, a, b)
            if fast is not None:
                return fast
    A, ia = _as_arrays(ctx, a)
    B, ib = _as_arrays(ctx, b)
    if A.num.shape[2] != B.num.shape[1]:
        return error("#VALUE!", ctx.n)
    bad = _per_cell(_not_numbers(A), ia) | _per_cell(_not_numbers(B), ib)  # [n or 1]
    if not ctx.array:
        top_left = np.einsum("nk,nk->n", _expand(A.num, ia)[:, 0, :], _expand(B.num, ib)[:, :, 0])
        return numbers_result(top_left, np.where(bad, "#VALUE!", None) if bad.any() else None)
    product = np.matmul(_per_cell(A.num, ia), _per_cell(B.num, ib))  # [n or 1, h, w]
    product = np.broadcast_to(product, (ctx.n, *product.shape[1:]))
    bad = np.broadcast_to(bad, (ctx.n,))[:, None, None]
    return numbers_result(product, np.where(bad, "#VALUE!", None) if bad.any() else None)


def _not_numbers(v: Vals) -> np.ndarray:
    """[u]: whether each array holds anything but numbers."""
    if v.kind is None:
        return np.zeros(v.num.shape[0], bool)
    return (v.kind != NUM).reshape(len(v.num), -1).any(axis=1)


def _per_cell(x: np.ndarray, inverse: np.ndarray | None) -> np.ndarray:
    """Arrays indexed per cell, or one array left for broadcasting when every cell uses it."""
    if len(x) > 1 and x.strides[0] == 0:  # one array broadcast to every cell
        return x[:1]
    if inverse is None or len(x) == 1:
        return x
    return x[inverse]


@function("TRANSPOSE", portable=True, array_args=True)
def TRANSPOSE(ctx, args):
    if len(args) != 1:
        raise EvalError("TRANSPOSE takes 1 argument")
    v = _array(ctx, args[0])
    if isinstance(v, RangeVal):
        uniq, inverse = _unique_ranges(v)
        arr = materialize(ctx.sheets, uniq)
        arr = arr.take(inverse) if len(uniq.r0) > 1 else arr
    else:
        arr = v if v.num.ndim == 3 else Vals(*(None if a is None else a[:, None, None] for a in (v.num, v.kind, v.obj)))
    t = Vals(*(None if a is None else np.swapaxes(a, 1, 2) for a in (arr.num, arr.kind, arr.obj)))
    if len(t.num) == 1 and ctx.n > 1:
        t = Vals(*(None if a is None else np.broadcast_to(a, (ctx.n, *a.shape[1:])) for a in (t.num, t.kind, t.obj)))
    return t if ctx.array else t.take((slice(None), 0, 0))


# -- lookup ----------------------------------------------------------------------------------
@function("INDEX", portable=True, range_args=(0,))
def INDEX(ctx, args):
    if not 2 <= len(args) <= 3:
        raise EvalError("INDEX takes 2 or 3 arguments")
    ref = evaluate(args[0], ctx)
    r, er = as_numbers(_scalar(ctx, args[1]))
    has_col = len(args) == 3 and not isinstance(args[2], Missing)
    c, ec = as_numbers(_scalar(ctx, args[2])) if has_col else (np.zeros(ctx.n), None)
    index_errors = first_errors(er, ec)
    # a cell whose index is an error keeps that error; give it index 1 meanwhile
    failed = np.zeros(ctx.n, bool) if index_errors is None else ~np.equal(index_errors, None)
    r = np.trunc(np.where(failed | ~np.isfinite(r), 1, r)).astype(np.int64)
    c = np.trunc(np.where(failed | ~np.isfinite(c), 1 if has_col else 0, c)).astype(np.int64)
    if isinstance(ref, RangeVal):
        h, w, sheet, r0, c0 = ref.h, ref.w, ref.sheet, ref.r0, ref.c0
    else:
        raise EvalError("INDEX of a computed array is not supported")
    if not has_col and h == 1 and w > 1:  # INDEX(a row, n) picks the n-th column
        r, c = np.ones_like(r), r
    elif not has_col and w == 1:
        c = np.ones_like(r)
    whole_row, whole_col = c == 0, r == 0
    partial = (whole_row | whole_col) & ~(whole_row.all() | whole_col.all())
    if (whole_row | whole_col).any() and not partial.any():  # a whole row or column: a reference
        if (whole_row & whole_col).any() or failed.any():
            raise EvalError("INDEX with both row and column 0 is not supported")
        outside = (r < 1) | (r > h) if whole_row.all() else (c < 1) | (c > w)
        if outside.all():
            return error("#REF!", ctx.n)
        if outside.any():
            raise EvalError("INDEX of a whole row or column out of range in only some cells is not supported")
        if whole_row.all():
            return RangeVal(sheet, r0 + r - 1, c0, 1, w)
        return RangeVal(sheet, r0, c0 + c - 1, h, 1)
    if partial.any():  # some cells ask for a whole row/column, others for one cell: not supported there
        index_errors = first_errors(index_errors, np.where(partial, "#VALUE!", None))
        r, c = np.where(partial, 1, r), np.where(partial, 1, c)
    ok = (r >= 1) & (r <= h) & (c >= 1) & (c <= w)
    v = gather(ctx.sheets, sheet, np.where(ok, r0 + r - 1, r0), np.where(ok, c0 + c - 1, c0))
    errs = first_errors(index_errors, np.where(ok, None, "#REF!") if not ok.all() else None)
    if errs is None:
        return v
    return select(np.equal(errs, None), v, Vals(np.full(ctx.n, np.nan), np.full(ctx.n, ERR, np.uint8), errs))


@function("MATCH", portable=True, range_args=(1,))
def MATCH(ctx, args):
    if not 2 <= len(args) <= 3:
        raise EvalError("MATCH takes 2 or 3 arguments")
    lookup = _scalar(ctx, args[0])
    rng = evaluate(args[1], ctx)
    kind_arg = as_numbers(_scalar(ctx, args[2]))[0] if len(args) == 3 and not isinstance(args[2], Missing) \
        else np.ones(ctx.n)
    if not isinstance(rng, RangeVal) or (rng.h > 1 and rng.w > 1):
        return error("#N/A", ctx.n)
    uniq, inverse = _unique_ranges(rng)
    arr = materialize(ctx.sheets, uniq)
    out = np.full(ctx.n, np.nan)
    errors = np.full(ctx.n, None, dtype=object)
    lk = lookup.kind if lookup.kind is not None else np.full(ctx.n, NUM, np.uint8)
    for u in range(len(uniq.r0)):
        cells = np.flatnonzero(inverse == u)
        num = arr.num[u].ravel()
        kind = arr.kind[u].ravel() if arr.kind is not None else np.full(num.size, NUM, np.uint8)
        numeric = np.flatnonzero(kind == NUM)
        values, first = np.unique(num[numeric], return_index=True)  # sorted, first occurrence
        plain = cells[(lk[cells] == NUM) & ((kind_arg[cells] == 0) | (kind_arg[cells] == 1))]
        if len(plain):  # number lookups, all at once
            x, exact = lookup.num[plain], kind_arg[plain] == 0
            j = np.minimum(np.searchsorted(values, x), max(len(values) - 1, 0))
            hit = (values[j] == x) if len(values) else np.zeros(len(x), bool)
            at_or_below = np.searchsorted(num[numeric], x, side="right")  # ascending data: largest value <= x
            found = np.where(exact, hit, at_or_below > 0)
            pos = np.where(exact, numeric[first[j]] if len(values) else 0,
                           numeric[np.maximum(at_or_below - 1, 0)] if len(numeric) else 0)
            out[plain] = np.where(found, pos + 1, np.nan)
            errors[plain] = np.where(found, None, "#N/A")
            cells = np.setdiff1d(cells, plain)
        for i in cells.tolist():
            mode = kind_arg[i]
            if lk[i] == ERR:
                errors[i] = lookup.obj[i]
            elif lk[i] == NUM and mode == 0:
                j = np.searchsorted(values, lookup.num[i])
                if j < len(values) and values[j] == lookup.num[i]:
                    out[i] = numeric[first[j]] + 1
                else:
                    errors[i] = "#N/A"
            elif lk[i] == STR and mode == 0:
                pattern = _wildcard(str(lookup.obj[i]))
                obj = arr.obj[u].ravel() if arr.obj is not None else [None] * num.size
                hit = next((j for j in range(num.size) if kind[j] == STR and pattern.fullmatch(str(obj[j]))), None)
                out[i], errors[i] = (hit + 1, None) if hit is not None else (np.nan, "#N/A")
            elif lk[i] == NUM and mode == 1:  # ascending data: position of the largest value <= lookup
                nums = num[numeric]
                j = np.searchsorted(nums, lookup.num[i], side="right")
                out[i], errors[i] = (numeric[j - 1] + 1, None) if j > 0 else (np.nan, "#N/A")
            else:
                raise EvalError("MATCH supports match type 0 and 1 with number or text lookups")
    return numbers_result(out, errors)


@function("RANK", portable=True, range_args=(1,))
def RANK(ctx, args):
    """RANK(number, ref[, order]): 1 + how many numbers of ref are larger (order 0, the
    default) or smaller (order non-zero); #N/A if ref does not hold the number."""
    if not 2 <= len(args) <= 3:
        raise EvalError("RANK takes 2 or 3 arguments")
    x, errs = as_numbers(_scalar(ctx, args[0]))
    rng = evaluate(args[1], ctx)
    ascending = as_numbers(_scalar(ctx, args[2]))[0] != 0 if len(args) == 3 else np.zeros(ctx.n, bool)
    if not isinstance(rng, RangeVal):
        return error("#N/A", ctx.n)
    uniq, inverse = _unique_ranges(rng)
    arr = materialize(ctx.sheets, uniq)
    out = np.full(ctx.n, np.nan)
    for u in range(len(uniq.r0)):
        cells = np.flatnonzero(inverse == u)
        num = arr.num[u].ravel()
        kind = arr.kind[u].ravel() if arr.kind is not None else np.full(num.size, NUM, np.uint8)
        values = np.sort(num[kind == NUM])
        below = np.searchsorted(values, x[cells], side="left")
        above = len(values) - np.searchsorted(values, x[cells], side="right")
        found = below < len(values) - above  # some value equals x
        out[cells] = np.where(found, np.where(ascending[cells], below, above) + 1, np.nan)
    missing = np.where(np.isnan(out), "#N/A", None)
    return numbers_result(out, first_errors(errs, missing))


# Excel 2010's name for RANK, which Gnumeric writes when it saves a book: the same function
declare("RANK.EQ", portable=True, xlfn=True, range_args=(1,), implementation=RANK)


def _wildcard(text: str) -> re.Pattern:
    """Excel's text match: case-insensitive, * any run, ? one character, ~ escapes them."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "~" and i + 1 < len(text) and text[i + 1] in "*?~":
            out.append(re.escape(text[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


# -- element-wise ----------------------------------------------------------------------------
def _unary(fn, domain=None):
    def apply(ctx, args):
        if len(args) != 1:
            raise EvalError("expects one argument")
        v = operand(ctx, evaluate(args[0], ctx)) if ctx.array else _scalar(ctx, args[0])
        x, errs = as_numbers(v)
        with np.errstate(all="ignore"):
            y = fn(x)
        if domain is not None:
            bad = ~domain(x)
            if bad.any():
                errs = first_errors(errs, np.where(bad, "#NUM!", None))
        return numbers_result(y, errs)
    return apply


SQRT = function("SQRT", portable=True)(_unary(np.sqrt, lambda x: x >= 0))
EXP = function("EXP", portable=True)(_unary(np.exp))
LN = function("LN", portable=True)(_unary(np.log, lambda x: x > 0))
ABS = function("ABS", portable=True)(_unary(np.abs))
TANH = function("TANH", portable=True)(_unary(np.tanh))
INT = function("INT", portable=True)(_unary(np.floor))  # down, as Excel's INT(-1.5) = -2


@function("MOD", portable=True)
def MOD(ctx, args):
    """n - d * INT(n / d), the sign of d's (exact for whole numbers below 2^53: the seeded draws)."""
    if len(args) != 2:
        raise EvalError("MOD takes 2 arguments")
    (n, en), (d, ed) = (as_numbers(operand(ctx, evaluate(a, ctx)) if ctx.array else _scalar(ctx, a))
                        for a in args)
    with np.errstate(all="ignore"):
        y = np.mod(n, d)
    return numbers_result(y, first_errors(first_errors(en, ed), np.where(d == 0, "#DIV/0!", None)))


@function("PI", portable=True)
def PI(ctx, args):
    if args:
        raise EvalError("PI takes no arguments")
    return const(math.pi, ctx.n)


@function("IF", portable=True)
def IF(ctx, args):
    if not 2 <= len(args) <= 3:
        raise EvalError("IF takes 2 or 3 arguments")
    cond, errs = as_numbers(_scalar(ctx, args[0]))

    def branch(k: int, used: bool) -> Vals:
        if not used:  # as in Excel, a branch no cell takes is not computed (a guarded unembedding)
            return const(0.0, ctx.n)
        if k >= len(args):
            return const(False, ctx.n)
        return operand(ctx, evaluate(args[k], ctx)) if not isinstance(args[k], Missing) else const(0.0, ctx.n)

    taken = cond != 0
    then, other = branch(1, bool(taken.any()) or errs is not None), branch(2, not taken.all() or errs is not None)
    v = select(cond != 0, then, other)
    if errs is None:
        return v
    return select(np.equal(errs, None), v, Vals(np.full(ctx.n, np.nan), np.full(ctx.n, ERR, np.uint8), errs))


from . import text_functions  # noqa: E402,F401  (registers MID, LEN, CODE, AND, ...)

FUNCTIONS = implementations()  # every function above and in text_functions, by name, for the compiler
