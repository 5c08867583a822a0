"""The book tests the program it is open in: small cases computed in exactly the forms the
book relies on, each with the answer worked out when the book was built, and one line on
the Guide that says whether this program computes them all right or names the first form
it gets wrong.

sheetgpt checks its books in LibreOffice, Gnumeric and IronCalc; in a program it cannot run
(Excel, Numbers, Google Sheets, another version) these cells are the check. Each form here
is one the book's steps use; two of them once went wrong in a real program (Gnumeric read
INDEX(row, n) as row n; LibreOffice's threaded calculation computed the first cell of a
group reading another group's row from a cell not yet computed), which is why the book
writes INDEX(row, 1, n) and keeps its merge rounds apart.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..layout import FIRST_ROW, Block, Layout
from ..xlsx import Style
from .base import BuildInputs, CellFormulas, Cells, Component, Constants, Formula, Shown, column, header

TOL = 1e-12  # relative: the float cases (EXP, TANH, SQRT) may differ in the last bits
ROW_DATA = [10, 20, 30, 40, 50]
COLUMN_DATA = [5, 6, 7, 8]
TABLE = [[1, 2, 3], [4, 5, 6]]
TIES = [3, 7, 7, 1]
TEXTS = ["He's 9!", "a\tb c", "a\nb"]  # a tab and a line break apart: LibreOffice reads a tab in
# multi-line text back through UNO as \x01
GROUP_ROWS, GROUP_COLS = 100, 4  # 100 cells: enough for LibreOffice to compute the group in threads
GELU_X = 1.5


def _gelu(x: float) -> float:
    return 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


@dataclass(frozen=True)
class Case:
    form: str  # what a learner is told the program gets wrong
    formula: str  # reads the data cells by their names below ({row}, {col}, ...)
    expected: float


class SelfTest(Component):
    stage = "selftest"
    kind = "selftest"

    def __init__(self, layout: Layout):
        super().__init__(layout)
        self.add_sheet("selftest", "")  # titled below, when the cases are known
        d = 8  # first data column (H)
        self.row_data = self.add_block("selftest_row", 1, len(ROW_DATA), col=d, step=False)
        self.column_data = self.add_block("selftest_column", len(COLUMN_DATA), 1, row=FIRST_ROW + 2, col=d,
                                          step=False)
        self.table = self.add_block("selftest_table", 2, 3, row=FIRST_ROW + 7, col=d, step=False)
        self.ties = self.add_block("selftest_ties", 1, len(TIES), row=FIRST_ROW + 10, col=d, step=False)
        self.texts = self.add_block("selftest_texts", len(TEXTS), 1, row=FIRST_ROW + 12, col=d, step=False)
        self.empty = Block("", self.sheet.name, FIRST_ROW + 16, d, 1, 1)  # stays empty
        g = d + 6
        self.numbers = self.add_block("selftest_numbers", GROUP_ROWS, 1, col=g, step=False)
        self.multiples = self.add_block("selftest_multiples", GROUP_ROWS, GROUP_COLS, col=g + 1, step=False, note=(
            "One shared formula over the rectangle: the number in column N times the column's factor (row 2)."))
        self.minima = self.add_block("selftest_minima", GROUP_ROWS, 1, col=g + 1 + GROUP_COLS, step=False, note=(
            "MIN of the row of the group beside it: the form of the tokenizer's best rank (bpe_best)."))
        self.cases = self._cases()
        n = len(self.cases)
        self.sheet.title = (f"Self-test: the formula forms this book relies on, each on a small case whose answer "
                            f"was worked out when the book was built [{n} forms]")
        self.results = self.add_block("selftest_results", n, 1, step=False,
                                      note="Each form computed on its small case.")
        self.expected = self.add_block("selftest_expected", n, 1, col=3, step=False)
        self.right = self.add_block("selftest_right", n, 1, col=4, step=False,
                                    note="1 where the result is the expected one.")
        self.status = self.add_block("selftest_status", 1, 1, row=FIRST_ROW + n + 1, col=2, step=False)

    def _cases(self) -> list[Case]:
        row, col, table, ties, minima = map(_range, (self.row_data, self.column_data, self.table, self.ties,
                                                     self.minima))
        text, tab, line_break, empty = (_range(b.part(row0=k, n_rows=1)) for b, k in (
            (self.texts, 0), (self.texts, 1), (self.texts, 2), (self.empty, 0)))
        table_row, column3 = _range(self.table.part(n_rows=1)), _range(self.column_data.part(n_rows=3))
        x = GELU_X
        return [
            Case("INDEX(row, 1, n) of a one-row range", f"INDEX({row},1,3)", ROW_DATA[2]),
            Case("INDEX(column, n)", f"INDEX({col},3)", COLUMN_DATA[2]),
            Case("INDEX(range, row, column)", f"INDEX({table},2,3)", TABLE[1][2]),
            Case("MATCH(x, sorted keys, 1)", f"MATCH(25,{row},1)", 2),
            Case("MATCH(x, range, 0)", f"MATCH(40,{row},0)", 4),
            Case("MATCH(MAX(range), range, 0) with ties", f"MATCH(MAX({ties}),{ties},0)", 2),
            Case("RANK with ties", f"RANK(7,{ties})", 1),
            Case("CODE(MID(text, k, 1))", f"CODE(MID({text},3,1))", ord(TEXTS[0][2])),
            Case("LEN of text with a tab", f"LEN({tab})", len(TEXTS[1])),
            Case("LEN of text with a line break", f"LEN({line_break})", len(TEXTS[2])),
            Case("EXACT(MID(text, k, 1), CHAR(code))", f"IF(EXACT(MID({text},1,1),CHAR(72)),1,0)", 1),
            Case("EXACT telling case apart", f"IF(EXACT(MID({text},1,1),\"h\"),1,0)", 0),
            Case("text joined with &", f"LEN(MID({text},1,2)&\"c\")", 3),
            Case("an empty cell equal to \"\"", f"IF({empty}=\"\",1,0)", 1),
            Case("SUMPRODUCT of two rows", f"SUMPRODUCT({row},{row})", sum(v * v for v in ROW_DATA)),
            Case("MMULT of a row and a column", f"MMULT({table_row},{column3})",
                 sum(a * b for a, b in zip(TABLE[0], COLUMN_DATA))),
            Case("EXP, TANH, SQRT and PI (GELU)", f"0.5*{x}*(1+TANH(SQRT(2/PI())*({x}+0.044715*{x}^3)))*EXP(0)",
                 _gelu(x)),
            Case("a group reading another group's row (MIN), its first cell", _range(self.minima.part(n_rows=1)), 1),
            Case("a group reading another group's row (MIN), every cell", f"SUM({minima})",
                 GROUP_ROWS * (GROUP_ROWS + 1) / 2),
        ]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        n = len(self.cases)
        yield header(self.results.part(n_cols=3), ["result", "expected", "right?"])
        yield column(self.results.part(col=1), (c.form for c in self.cases))
        # not steps of the forward pass: what each cell must show is the answer worked out here
        yield CellFormulas(self.results, [[c.formula] for c in self.cases], Style.NUMBER,
                           Shown("selftest_results", lambda v, vocab: [c.expected for c in self.cases]))
        yield column(self.expected, (c.expected for c in self.cases), Style.NUMBER)
        got, want = self.results.cell(0, 0), self.expected.cell(0, 0)
        yield Formula(self.right, f"IF(ISNUMBER({got}),IF(ABS({got}-{want})<={TOL}*MAX(1,ABS({want})),1,0),0)",
                      Style.INTEGER, shows=Shown("selftest_right", lambda v, vocab: [1] * n))
        yield Formula(self.status, status_formula(self.right, self.results.part(col=1), n), Style.DEFAULT,
                      shows=self.shows_status("selftest_status"))
        yield Constants(self.status.part(col=1), [["this program"]], Style.HEADER)
        yield Constants(self.row_data, [ROW_DATA])
        yield Constants(self.column_data, [[v] for v in COLUMN_DATA])
        yield Constants(self.table, TABLE)
        yield Constants(self.ties, [TIES])
        yield column(self.texts, TEXTS)
        yield header(self.row_data.part(n_cols=1), ["inputs"])
        yield column(self.numbers, range(1, GROUP_ROWS + 1))
        yield header(self.multiples.part(col=self.numbers.col, n_cols=GROUP_COLS + 2),
                     ["n"] + list(range(1, GROUP_COLS + 1)) + ["MIN"])
        factor = self.multiples.cell(-1, 0, abs_row=True)
        numbers = np.arange(1, GROUP_ROWS + 1)
        yield Formula(self.multiples, f"{self.numbers.cell(0, 0, abs_col=True)}*{factor}", Style.INTEGER,
                      shows=Shown("selftest_multiples", lambda v, vocab: list(
                          np.outer(numbers, np.arange(1, GROUP_COLS + 1)).ravel())))
        first_row = f"{self.multiples.cell(0, 0, abs_col=True)}:{self.multiples.cell(0, GROUP_COLS - 1, abs_col=True)}"
        yield Formula(self.minima, f"MIN({first_row})", Style.INTEGER,
                      shows=Shown("selftest_minima", lambda v, vocab: list(numbers)))  # the factor-1 column

    def shows_status(self, name: str) -> Shown:
        """What the status line must show: every self-test right (check fails otherwise)."""
        return Shown(name, lambda v, vocab: [ALL_RIGHT.format(n=len(self.cases))])


ALL_RIGHT = "OK: this program computed all {n} self-tests right (sheet selftest)."


def status_formula(right: Block, forms: Block, n: int) -> str:
    """One line: all right, or the first form this program gets wrong."""
    oks, names = _range(right), _range(forms)
    return (f"IF(SUM({oks})={n},\"{ALL_RIGHT.format(n=n)}\",\"This program computes \"&INDEX({names},"
            f"MATCH(0,{oks},0))&\" wrong: the book's numbers here may be wrong too (sheet selftest).\")")


def _range(block: Block) -> str:
    """The block as an anchored range on its own sheet, e.g. $H$3:$L$3."""
    a, b = block.cell(0, 0, True, True), block.cell(block.n_rows - 1, block.n_cols - 1, True, True)
    return a if a == b else f"{a}:{b}"
