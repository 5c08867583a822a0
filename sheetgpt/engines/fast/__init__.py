"""sheetgpt's own formula engine: reads an .xlsx and computes every formula with NumPy.

It knows nothing of the builder: its input is a file, its output the value of every
cell. Cells computed the same way are evaluated together as one array operation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import UserError
from ...progress import Progress
from ..base import CellValueError, EvaluatedBook
from .compiler import CompileError, compile_groups, order_groups, shorten
from .evaluator import evaluate_group
from .functions import FUNCTIONS
from .parser import FormulaError
from .reader import BOOL, EMPTY, ERR, NUM, STR, FileError, Workbook, read_workbook
from .values import EvalError


class FastBook(EvaluatedBook):
    def __init__(self, wb: Workbook):
        self.wb = wb

    def _sheet(self, sheet: str):
        try:
            return self.wb.sheets[sheet]
        except KeyError:
            raise UserError(f"the workbook has no sheet {sheet!r}") from None

    def value(self, sheet: str, row: int, col: int) -> object:
        s = self._sheet(sheet)
        r, c = row - 1, col - 1
        if not (0 <= r < s.num.shape[0] and 0 <= c < s.num.shape[1]):
            return None
        k = s.kind[r, c]
        if k == EMPTY:
            return None
        if k == NUM:
            return float(s.num[r, c])
        if k == BOOL:
            return bool(s.num[r, c])
        return s.text[(r, c)]

    def numbers(self, sheet: str, row: int, col: int, n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
        s = self._sheet(sheet)
        out = np.full((n_rows, n_cols), np.nan)
        kind = np.zeros((n_rows, n_cols), np.uint8)
        r1, c1 = min(row - 1 + n_rows, s.num.shape[0]), min(col - 1 + n_cols, s.num.shape[1])
        if r1 > row - 1 and c1 > col - 1:
            out[: r1 - row + 1, : c1 - col + 1] = s.num[row - 1:r1, col - 1:c1]
            kind[: r1 - row + 1, : c1 - col + 1] = s.kind[row - 1:r1, col - 1:c1]
        out[kind != NUM] = np.nan
        return out, (kind != NUM) & (kind != EMPTY)

    def block(self, sheet: str, row: int, col: int, n_rows: int, n_cols: int) -> np.ndarray:
        s = self._sheet(sheet)
        r0, c0 = row - 1, col - 1
        if r0 + n_rows <= s.num.shape[0] and c0 + n_cols <= s.num.shape[1]:
            kind = s.kind[r0:r0 + n_rows, c0:c0 + n_cols]
            if (kind == NUM).all():  # the common case: a view, no copy of big weight blocks
                return s.num[r0:r0 + n_rows, c0:c0 + n_cols]
        return super().block(sheet, row, col, n_rows, n_cols)


def evaluate_fast(path: str | Path, progress: bool | None = None) -> FastBook:
    """Read the workbook and compute all its formulas from scratch."""
    with Progress(total=0, desc="reading sheets", enabled=progress, unit="sheet") as bar:
        wb = read_workbook(path, progress=lambda name: bar.update(1))
    try:
        groups = order_groups(compile_groups(wb, FUNCTIONS))
    except FormulaError as e:
        raise UserError(str(e)) from None
    total = sum(len(g) for g in groups)
    with Progress(total=total, desc="evaluating formulas", enabled=progress) as bar:
        for g in groups:
            try:
                evaluate_group(wb.sheets, g)
            except EvalError as e:
                raise UserError(f"cannot evaluate cell {g.first_cell()} (formula ={shorten(g.source)}): {e}") from None
            bar.update(len(g))
    return FastBook(wb)
