"""What every engine returns: cell values by sheet and position, and the file's formulas."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..a1 import cell_name, quote_sheet
from ..errors import UserError


ERROR_VALUES = {"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA", "#SPILL!",
                "#CALC!", "#ERR!", "#ERROR!"}


class CellValueError(Exception):
    """A cell that should hold a number holds an error value or text."""

    def __init__(self, sheet: str, row: int, col: int, value: object):
        self.sheet, self.cell, self.value = sheet, cell_name(row, col), value
        super().__init__(f"cell {sheet}!{self.cell} holds {value!r}, not a number")


@dataclass(frozen=True)
class FormulaCell:
    """One formula as the file stores it: a plain formula, an array formula (over its whole
    range), or a shared formula's whole group, given by its master cell."""

    row: int  # 1-based
    col: int
    text: str  # without the leading '=', exactly as stored (a shared group: the master's text)
    n_cells: int  # cells computed by it: a shared group's size, an array's range, else 1
    shared: bool
    array: bool = False  # an array formula, shown {=...}


@dataclass(frozen=True)
class CellOverride:
    sheet: str
    row: int  # 1-based
    col: int
    value: float | str

    @property
    def shown(self) -> str:
        """The value as a person would type it."""
        return f"{self.value:.17g}" if isinstance(self.value, float) else repr(self.value)

    def __str__(self) -> str:
        return f"{self.sheet}!{cell_name(self.row, self.col)}={self.shown}"


def refuse_array_formulas(structure, program: str, path) -> None:
    """One line for a program that computes array formulas over ranges wrong (IronCalc) or
    not at all (the formulas package), if the file (its FileStructure) has one."""
    for name, sheet in structure.sheets.items():
        for (r, c), (h, w) in sheet.arrays.items():
            if h * w > 1:
                raise UserError(f"{program} computes array formulas wrong, and {path} has one ({quote_sheet(name)}!"
                                f"{cell_name(r + 1, c + 1)}): build the book with --form cells for {program}")


def edits(overrides) -> list[list]:
    """Overrides as the other programs' runners take them: [[sheet, row, col, value], ...], 0-based."""
    return [[o.sheet, o.row - 1, o.col - 1, o.value] for o in overrides]


class EvaluatedBook(ABC):
    """An evaluated workbook: the values every engine computed, and what the file itself
    says (sheets, defined names, formulas, extents), the same whichever engine ran.
    Rows and columns are 1-based. `problems`: formulas the engine could not compute (their
    cells hold an error value), one line each."""

    problems: list[str] = []

    @abstractmethod
    def value(self, sheet: str, row: int, col: int) -> object:
        """One cell: float, str, bool, None (empty) or an error string such as '#DIV/0!'."""

    @abstractmethod
    def sheet_names(self) -> list[str]:
        """Every sheet, in workbook order."""

    @abstractmethod
    def defined_names(self) -> dict[str, str]:
        """Workbook-level defined names -> their reference text as stored (no leading '=')."""

    @abstractmethod
    def formulas(self, sheet: str) -> list[FormulaCell]:
        """One entry per plain or array formula and per shared group, ordered by (row, col)."""

    @abstractmethod
    def formula_cells(self, sheet: str, max_row: int, max_col: int) -> set[tuple[int, int]]:
        """(row, col) of every cell up to (max_row, max_col) that holds a formula, shared or not."""

    def formula_mask(self, sheet: str) -> np.ndarray:
        """bool [n_rows, n_cols] of the sheet's extent: True where a cell holds a formula."""
        mask = np.zeros(self.shape(sheet), bool)
        for r, c in self.formula_cells(sheet, *mask.shape):
            mask[r - 1, c - 1] = True
        return mask

    @abstractmethod
    def formula_at(self, sheet: str, row: int, col: int) -> str | None:
        """The formula of one cell as the file stores it (in a shared group: its master's text)."""

    @abstractmethod
    def shape(self, sheet: str) -> tuple[int, int]:
        """The used extent of the sheet in the file: (n_rows, n_cols)."""

    def first_error(self, sheet: str) -> tuple[int, int, str] | None:
        """The first cell (row by row) holding an error value such as '#VALUE!', or None."""
        n_rows, n_cols = self.shape(sheet)
        for r, c in sorted(self.formula_cells(sheet, n_rows, n_cols)):
            v = self.value(sheet, r, c)
            if isinstance(v, str) and v.startswith("#") and v in ERROR_VALUES:
                return r, c, v
        return None

    def numbers(self, sheet: str, row: int, col: int, n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
        """A rectangle as float64 (NaN where empty or not a number) and a mask of the cells
        that hold something other than a number (an error value, text but "", a boolean)."""
        out = np.full((n_rows, n_cols), np.nan)
        other = np.zeros((n_rows, n_cols), bool)
        for i in range(n_rows):
            for j in range(n_cols):
                v = self.value(sheet, row + i, col + j)
                if v is None or v == "":  # "": a formula's way of staying empty
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
                    other[i, j] = True
                else:
                    out[i, j] = float(v)
        return out, other

    def block(self, sheet: str, row: int, col: int, n_rows: int, n_cols: int) -> np.ndarray:
        """A rectangle as float64 [n_rows, n_cols]; empty cells are NaN.

        Raises CellValueError on the first cell (row by row) holding an error or text.
        """
        out, other = self.numbers(sheet, row, col, n_rows, n_cols)
        if other.any():
            i, j = (int(k) for k in np.argwhere(other)[0])
            raise CellValueError(sheet, row + i, col + j, self.value(sheet, row + i, col + j))
        return out
