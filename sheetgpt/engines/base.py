"""What every engine returns: cell values by sheet and position."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


def cell_name(row: int, col: int) -> str:
    letters = ""
    while col:
        col, r = divmod(col - 1, 26)
        letters = chr(65 + r) + letters
    return f"{letters}{row}"


class CellValueError(Exception):
    """A cell that should hold a number holds an error value or text."""

    def __init__(self, sheet: str, row: int, col: int, value: object):
        self.sheet, self.cell, self.value = sheet, cell_name(row, col), value
        super().__init__(f"cell {sheet}!{self.cell} holds {value!r}, not a number")


class EvaluatedBook(ABC):
    """Values of an evaluated workbook. Rows and columns are 1-based."""

    @abstractmethod
    def value(self, sheet: str, row: int, col: int) -> object:
        """One cell: float, str, bool, None (empty) or an error string such as '#DIV/0!'."""

    def numbers(self, sheet: str, row: int, col: int, n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
        """A rectangle as float64 (NaN where empty or not a number) and a mask of the cells
        that hold something other than a number (an error value, text, a boolean)."""
        out = np.full((n_rows, n_cols), np.nan)
        other = np.zeros((n_rows, n_cols), bool)
        for i in range(n_rows):
            for j in range(n_cols):
                v = self.value(sheet, row + i, col + j)
                if v is None:
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
