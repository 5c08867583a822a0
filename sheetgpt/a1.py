"""A1 cell addresses and sheet quoting: the one place that turns rows and columns into
text and back. Used by the layout, the writer, the engines and the lint; imports nothing.

Rows and columns are 1-based here, as in A1 notation (A = 1, row 1 = 1).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ROWS, MAX_COLS = 1_048_576, 16_384  # Excel's sheet size

_CELL = r"(\$?)([A-Za-z]{1,3})(\$?)([0-9]+)"
# a sheet name goes unquoted only if it is letters, digits, '_' and '.' (else 'quote it'):
# so D3/prediction!$B$4 is two references and an operator, not one on sheet "D3/prediction"
_UNQUOTED = r"[\w.]+"
_RANGE = re.compile(rf"^(?:(?:'((?:[^']|'')+)'|({_UNQUOTED}))!)?{_CELL}(?::{_CELL})?$")
_WHOLE = re.compile(rf"^(?:(?:'(?:[^']|'')+'|{_UNQUOTED})!)?\$?([A-Za-z]{{1,3}}|[0-9]+):\$?([A-Za-z]{{1,3}}|[0-9]+)$")


class AddressError(ValueError):
    """Text that looks like a reference but is not one sheetgpt can use."""


def col_letter(col: int) -> str:
    """1 -> A, 27 -> AA."""
    s = ""
    while col:
        col, r = divmod(col - 1, 26)
        s = chr(65 + r) + s
    return s


def col_number(letters: str | bytes) -> int:
    """A -> 1, AA -> 27 (any case)."""
    n = 0
    for ch in letters.decode() if isinstance(letters, bytes) else letters:
        n = n * 26 + (ord(ch) & ~32) - 64
    return n


def cell_name(row: int, col: int, abs_row: bool = False, abs_col: bool = False) -> str:
    """(3, 2) -> B3, optionally anchored: $B$3."""
    return f"{'$' if abs_col else ''}{col_letter(col)}{'$' if abs_row else ''}{row}"


def quote_sheet(sheet: str) -> str:
    """Sheet names are always quoted in formulas sheetgpt writes: 'h0 qkv'!B3."""
    return "'" + sheet.replace("'", "''") + "'"


def box(row: int, col: int, n_rows: int, n_cols: int) -> str:
    """A rectangle without its sheet, relative: B3:Q12 (one cell: B3)."""
    a, b = cell_name(row, col), cell_name(row + n_rows - 1, col + n_cols - 1)
    return a if a == b else f"{a}:{b}"


@dataclass(frozen=True)
class Range:
    """A parsed reference: its sheet (None: the formula's own) and 1-based corners."""

    sheet: str | None
    row0: int
    col0: int
    row1: int
    col1: int
    abs_row0: bool = True
    abs_col0: bool = True
    abs_row1: bool = True
    abs_col1: bool = True

    @property
    def shape(self) -> tuple[int, int]:
        return self.row1 - self.row0 + 1, self.col1 - self.col0 + 1


def parse_range(text: str) -> Range | None:
    """'Sheet'!$A$1:B2 -> Range (corners ordered); None when the text is not a cell reference.

    Raises AddressError for references sheetgpt cannot use: whole rows or columns, other
    workbooks, cells outside a sheet."""
    m = _RANGE.match(text)
    if not m:
        if _WHOLE.match(text):
            raise AddressError(f"whole-row or whole-column reference {text} is not supported")
        return None
    sheet = m.group(1).replace("''", "'") if m.group(1) is not None else m.group(2)
    if sheet is not None and "[" in sheet:
        raise AddressError(f"reference {text} points into another workbook, which is not supported")
    a = (m.group(3) == "$", col_number(m.group(4)), m.group(5) == "$", int(m.group(6)))
    b = (m.group(7) == "$", col_number(m.group(8)), m.group(9) == "$", int(m.group(10))) if m.group(8) else a
    for _, col, _, row in (a, b):
        if not (1 <= row <= MAX_ROWS and 1 <= col <= MAX_COLS):
            raise AddressError(f"reference {text} is outside a sheet")
    (ac0, c0, ar0, r0), (ac1, c1, ar1, r1) = a, b
    if r0 > r1:
        r0, r1, ar0, ar1 = r1, r0, ar1, ar0
    if c0 > c1:
        c0, c1, ac0, ac1 = c1, c0, ac1, ac0
    return Range(sheet, r0, c0, r1, c1, ar0, ac0, ar1, ac1)


# a cell address in formula text: not part of a name, a number or a function call
_FORMULA_CELL = re.compile(r"(?<![A-Za-z0-9_.$])(\$?)([A-Z]{1,3})(\$?)([0-9]+)(?![A-Za-z0-9_(!])")
_QUOTED = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")")  # sheet names and text literals


def pin_rows(formula: str, offset: int) -> str:
    """A formula written for a cell `offset` rows below, with every relative row made
    absolute: B3 -> B$5, $D3:$S3 -> $D$5:$S$5 for offset 2. Shared along a row, it then
    forms no group down a column (which LibreOffice computes as one, see BENCHMARKS.md)."""
    def pin(m: re.Match) -> str:
        abs_col, col, abs_row, row = m.groups()
        return f"{abs_col}{col}${int(row) + (0 if abs_row else offset)}"

    parts = _QUOTED.split(formula)
    return "".join(p if k % 2 else _FORMULA_CELL.sub(pin, p) for k, p in enumerate(parts))
