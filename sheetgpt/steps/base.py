"""What a component is, and the kinds of cells it asks the builder to write.

A component is one part of the forward pass with its own sheet (its lesson page). When
constructed it declares its sheet and blocks in the layout, holding the blocks it reads
as objects. Then it says, in one place:
- `compute(v)`: its NumPy computation, from the arrays of the blocks it reads to those it
  declares (`v` maps block names to float64 arrays shaped like the blocks); the reference
  forward pass is these computations composed;
- `cells(inputs)`: its formulas and labels, one template per block in relative terms;
- its words: the sheet title, a note on each block's first cell, a short page title and
  the lesson text (HTML with Jinja2 expressions; `m` holds the model's sizes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from ..a1 import quote_sheet
from ..layout import Block, Layout, Sheet
from ..xlsx import Style
from ..xlsx_chart import ChartSpec

if TYPE_CHECKING:
    from ..load import LoadedModel

Values = dict[str, np.ndarray]


@dataclass(frozen=True)
class BuildInputs:
    """What a workbook is built from, beyond its layout."""

    model: "LoadedModel"
    prompt: str
    ids: Sequence[int]
    overrides: Sequence[int | None] | None = None  # typed prompt: ids written into the override cells
    controls: dict[str, np.ndarray] | None = None  # the controls' cells where not at their defaults


Vocab = Callable[[int], str]  # token id -> its text


@dataclass(frozen=True)
class Shown:
    """What formula cells outside the numeric steps (text lookups, labels, the Guide's
    mirrors) must show, worked out from the reference values and the vocabulary, never
    from the workbook's formulas: check compares every such cell with it."""

    name: str  # what check calls these cells
    expected: Callable[[Values, Vocab], list]  # one text or number per cell, row by row


@dataclass(frozen=True)
class Formula:
    """One shared formula over a rectangle, written for its top-left cell in relative terms.
    Where `mask` is False a cell holds `fill` (None: it stays empty). A formula outside the
    numeric steps says what it `shows`."""

    where: Block
    text: str
    style: int = Style.NUMBER
    mask: np.ndarray | None = field(default=None, compare=False)
    fill: float | None = None
    shows: Shown | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ArrayFormula:
    """One array formula computing a whole rectangle at once ({=MMULT(...)}): a spreadsheet
    computes it in one go, and a learner edits it as a whole."""

    where: Block
    text: str
    style: int = Style.NUMBER
    shows: Shown | None = field(default=None, compare=False)


@dataclass(frozen=True)
class CellFormulas:
    """A plain formula in every cell (they differ beyond relative terms), row by row."""

    where: Block
    texts: Sequence[Sequence[str]]
    style: int = Style.NUMBER
    shows: Shown | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Constants:
    """Numbers or text typed into cells, row by row. `given`: the book's inputs (token ids,
    the vocabulary, the metadata), which check reads rather than compares with itself."""

    where: Block
    values: Sequence[Sequence[object]]
    style: int = Style.DEFAULT
    given: bool = False


@dataclass(frozen=True)
class Chart:
    """A native chart over live blocks: the spreadsheet redraws it as they change. `where`
    is the rectangle of cells it covers; each series plots one block (a column of numbers)
    against the labels in `categories`. check verifies that every series still reads its
    block."""

    where: Block
    title: str
    categories: Block
    series: Sequence[tuple[str, Block]]  # (name in the legend, its values)
    kind: str = "bar"  # bar (horizontal, first on top), column or line: sheetgpt.xlsx_chart.KINDS
    percent: bool = False  # probabilities: the value axis from 0 to 100%

    def spec(self) -> ChartSpec:
        """The chart as the file holds it: its ranges as formula text."""
        w = self.where
        return ChartSpec(self.title, self.kind, self.categories.ref(), [(name, b.ref()) for name, b in self.series],
                         (w.row, w.col, w.n_rows, w.n_cols), self.percent)


Cells = Formula | CellFormulas | Constants | ArrayFormula
FORMULAS = (Formula, CellFormulas, ArrayFormula)  # the kinds of cells that hold formulas


def column(block: Block, values: Iterable[object], style: int = Style.DEFAULT, given: bool = False) -> Constants:
    """Constants down a one-column block."""
    return Constants(block, [[v] for v in values], style, given)


def header(where: Block, labels: Sequence[object]) -> Constants:
    """Column labels in the row above `where` (bold)."""
    return Constants(Block("", where.sheet, where.row - 1, where.col, 1, len(labels)), [list(labels)], Style.HEADER)


class Component:
    """Base of every part of the forward pass; see the module docstring."""

    stage = "output"  # sets the tab colour and the lesson section
    kind = ""  # what kind of page the lesson makes of it (a template may single some out)
    short_title = ""  # the lesson page's title
    lesson = ""  # the lesson text: HTML with Jinja2 expressions (m: sizes, c: this component)
    layer: int | None = None  # the transformer layer it belongs to, if any
    decorated = True  # the sheet gets the standard title row and link back to the Guide

    sheet: Sheet

    def __init__(self, layout: Layout):
        self.layout = layout
        self.notes: dict[str, str] = {}  # block name -> note on its first cell
        self.color_scales: list[Block] = []  # blocks shaded by value
        self.signed_scales: list[Block] = []  # blocks shaded by sign: blue below 0, white at 0, orange above
        self.reads: list[Block] = []  # blocks of other components it reads, in order of use
        self.charts: list[Chart] = []  # native charts of its blocks (on any sheet, the Guide's too)

    def add_sheet(self, name: str, title: str) -> Sheet:
        self.sheet = self.layout.add_sheet(name, title, self.stage, owner=self)
        return self.sheet

    def add_block(self, name: str, n_rows: int, n_cols: int, note: str | None = None,
                  sheet: Sheet | None = None, **where) -> Block:
        block = self.layout.add_block(sheet or self.sheet, name, n_rows, n_cols, owner=self, **where)
        if note:
            self.notes[name] = note
        return block

    def read(self, *blocks: Block) -> None:
        """Declare blocks of other components that this one's formulas read."""
        self.reads.extend(b for b in blocks if b not in self.reads)

    def compute(self, v: Values) -> None:
        """Set v[name] for every step block this component declares."""

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        """Everything the builder writes for this component, in writing order."""
        return ()

    def label(self, block: Block) -> str:
        """What a reader calls one of its blocks (the lesson's list of what a step reads)."""
        return block.name

    def shape_of(self, block: Block) -> tuple[int, ...]:
        """The tensor shape a block holds (a weight vector is one row of cells)."""
        return block.shape

    def sheet_options(self, inputs: BuildInputs):
        """The sheet's options when they differ from every step sheet's (None: the usual)."""
        return None


# -- labels shared by many sheets --------------------------------------------------------
def labels_column(rows: Block) -> Block:
    """Column A beside a block: where the rows are named."""
    return Block("", rows.sheet, rows.row, 1, rows.n_rows, 1)


def token_texts(name: str, ids: Block) -> Shown:
    """The text of the token of each id in a one-column block of ids."""
    return Shown(name, lambda v, vocab: [vocab(int(i)) for i in v[ids.name][:, 0]])


@dataclass(frozen=True)
class Positions:
    """The book's token positions as every sheet with a row per position reads them: the
    text that labels those rows, and how many positions hold tokens (the last of them
    predicts). Made by the token ids' component and handed to the others."""

    T: int
    text: Block  # each position's token text
    shows: Shown  # what `text` shows
    count: Block | None = None  # typed prompt: the positions filled (fixed ids: all T)
    may_be_empty: bool = True  # the count may be 0 (an empty prompt): its first position still predicts

    def last_position(self) -> str:
        """A formula for the 1-based row of the last filled position."""
        if self.count is None:
            return str(self.T)
        return f"MAX(1,{self.count.name})" if self.may_be_empty else self.count.name

    def last_row(self, v: Values) -> int:
        """The 0-based row of the last filled position, as last_position computes it."""
        return self.T - 1 if self.count is None else max(1, int(v[self.count.name][0, 0])) - 1

    def labels(self, rows: Block) -> CellFormulas:
        """Column A of a block whose rows are positions: the live text of each position's token."""
        return CellFormulas(labels_column(rows), [[f"{quote_sheet(self.text.sheet)}!{self.text.cell(t, 0, True, True)}"]
                                                  for t in range(rows.n_rows)],
                            Style.DEFAULT, Shown("position_labels", self.shows.expected))


def numbered_header(block: Block) -> Constants:
    """Row 2 above a block: its column numbers 0, 1, ..."""
    return header(block, list(range(block.n_cols)))


def head_rows(rows: Block, n_head: int) -> Constants:
    """Column A of a block whose rows are (head, query position) pairs."""
    T = rows.n_rows // n_head
    return column(labels_column(rows), (f"head {h}, query {t}" for h in range(n_head) for t in range(T)))


def key_header(block: Block) -> Constants:
    return header(block, [f"key {s}" for s in range(block.n_cols)])


def causal_mask(T: int, n_head: int = 1) -> np.ndarray:
    """[n_head * T, T]: True where query t may see key s (s <= t)."""
    return np.tile(np.tril(np.ones((T, T), dtype=bool)), (n_head, 1))
