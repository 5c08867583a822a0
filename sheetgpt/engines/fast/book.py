"""Evaluated books built on the reader: what the file says (sheets, names, formulas,
extents), and for this engine the values too."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from ..base import EvaluatedBook, FormulaCell
from .reader import BOOL, EMPTY, ERR, NUM, STR, SharedFormula, Sheet, Workbook


@dataclass(frozen=True)
class SheetStructure:
    """A sheet's formulas and extent as the file holds them; no values, so it stays small
    when the values come from another program."""

    shape: tuple[int, int]
    single_cell: list[tuple[int, int, str]]  # plain and array formulas: 0-based row, col, text
    shared: list[SharedFormula]
    arrays: dict[tuple[int, int], tuple[int, int]]  # every array formula's master -> its (rows, cols)

    @classmethod
    def of(cls, sheet: Sheet) -> SheetStructure:
        arrays = {(r, c): sheet.array_extents.get((r, c), (1, 1)) for r, c, _ in sheet.array_formulas}
        return cls(sheet.shape, sheet.formulas + sheet.array_formulas, list(sheet.shared.values()), arrays)

    def cells(self):
        """(row, col) arrays (0-based) of every cell a formula computes: an array formula's whole range."""
        rows = [np.array([r for r, _, _ in self.single_cell], np.int64)]
        cols = [np.array([c for _, c, _ in self.single_cell], np.int64)]
        for (r, c), (h, w) in self.arrays.items():
            if h * w > 1:
                rr, cc = np.mgrid[r:r + h, c:c + w]
                rows.append(rr.ravel())
                cols.append(cc.ravel())
        rows += [np.asarray(g.rows, np.int64) for g in self.shared]
        cols += [np.asarray(g.cols, np.int64) for g in self.shared]
        return np.concatenate(rows), np.concatenate(cols)


@dataclass(frozen=True)
class FileStructure:
    """A workbook file's sheets (in workbook order), defined names and formulas."""

    names: dict[str, str]
    sheets: dict[str, SheetStructure]

    @classmethod
    def of(cls, wb: Workbook) -> FileStructure:
        return cls(dict(wb.names), {name: SheetStructure.of(s) for name, s in wb.sheets.items()})


class FileBook(EvaluatedBook):
    """An evaluated book whose formulas and structure are the file's, as this engine's reader
    reads them, whichever engine computed the values (subclasses give those)."""

    def __init__(self, structure: FileStructure):
        self._structure = structure

    def _sheet_structure(self, sheet: str) -> SheetStructure:
        try:
            return self._structure.sheets[sheet]
        except KeyError:
            raise UserError(f"the workbook has no sheet {sheet!r}") from None

    def sheet_names(self) -> list[str]:
        return list(self._structure.sheets)

    def defined_names(self) -> dict[str, str]:
        return dict(self._structure.names)

    def formulas(self, sheet: str) -> list[FormulaCell]:
        s = self._sheet_structure(sheet)
        out = [FormulaCell(r + 1, c + 1, text, _size(s.arrays.get((r, c), (1, 1))), False, (r, c) in s.arrays)
               for r, c, text in s.single_cell]
        out += [FormulaCell(g.row + 1, g.col + 1, g.text, len(g.rows), True) for g in s.shared]
        return sorted(out, key=lambda f: (f.row, f.col))

    def formula_cells(self, sheet: str, max_row: int, max_col: int) -> set[tuple[int, int]]:
        rows, cols = self._sheet_structure(sheet).cells()
        inside = (rows < max_row) & (cols < max_col)
        return set(zip((rows[inside] + 1).tolist(), (cols[inside] + 1).tolist()))

    def formula_mask(self, sheet: str) -> np.ndarray:
        s = self._sheet_structure(sheet)
        mask = np.zeros(s.shape, bool)
        mask[s.cells()] = True
        return mask

    def formula_at(self, sheet: str, row: int, col: int) -> str | None:
        s = self._sheet_structure(sheet)
        for r, c, text in s.single_cell:
            h, w = s.arrays.get((r, c), (1, 1))
            if r <= row - 1 < r + h and c <= col - 1 < c + w:
                return text
        for g in s.shared:
            if any(r == row - 1 and c == col - 1 for r, c in zip(g.rows, g.cols)):
                return g.text
        return None

    def shape(self, sheet: str) -> tuple[int, int]:
        return self._sheet_structure(sheet).shape


def _size(extent: tuple[int, int]) -> int:
    return extent[0] * extent[1]


class FastBook(FileBook):
    """Values held by a reader Workbook: computed by evaluate_fast (or by LibreOffice, whose
    results replace the formula sheets); unevaluated, only the file's constants. The
    formulas are those of `structure` (by default: wb's own). `problems`: formulas the
    engine could not compute, whose cells show #VALUE! (lenient evaluation)."""

    def __init__(self, wb: Workbook, structure: FileStructure | None = None, problems: list[str] | None = None):
        super().__init__(structure if structure is not None else FileStructure.of(wb))
        self._wb = wb
        self.problems = problems or []

    def _sheet(self, sheet: str) -> Sheet:
        try:
            return self._wb.sheets[sheet]
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

    def first_error(self, sheet: str) -> tuple[int, int, str] | None:
        s = self._sheet(sheet)
        where = np.argwhere(s.kind == ERR)
        if not len(where):
            return None
        r, c = (int(k) for k in where[0])
        return r + 1, c + 1, s.text[(r, c)]

    def numbers(self, sheet: str, row: int, col: int, n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
        s = self._sheet(sheet)
        out = np.full((n_rows, n_cols), np.nan)
        kind = np.zeros((n_rows, n_cols), np.uint8)
        r1, c1 = min(row - 1 + n_rows, s.num.shape[0]), min(col - 1 + n_cols, s.num.shape[1])
        if r1 > row - 1 and c1 > col - 1:
            out[: r1 - row + 1, : c1 - col + 1] = s.num[row - 1:r1, col - 1:c1]
            kind[: r1 - row + 1, : c1 - col + 1] = s.kind[row - 1:r1, col - 1:c1]
        out[kind != NUM] = np.nan
        other = (kind != NUM) & (kind != EMPTY)
        for i, j in np.argwhere(kind == STR).tolist():  # "" (a formula's way of staying empty) counts as empty
            if s.text.get((row - 1 + i, col - 1 + j)) == "":
                other[i, j] = False
        return out, other

    def block(self, sheet: str, row: int, col: int, n_rows: int, n_cols: int) -> np.ndarray:
        s = self._sheet(sheet)
        r0, c0 = row - 1, col - 1
        if r0 + n_rows <= s.num.shape[0] and c0 + n_cols <= s.num.shape[1]:
            kind = s.kind[r0:r0 + n_rows, c0:c0 + n_cols]
            if (kind == NUM).all():  # the common case: a view, no copy of big weight blocks
                return s.num[r0:r0 + n_rows, c0:c0 + n_cols]
        return super().block(sheet, row, col, n_rows, n_cols)
