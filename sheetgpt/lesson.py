"""What each page of the exported lesson shows, read from an evaluated workbook: the step's
words (from its component), its formulas (as written in the file), what it reads and
writes (with shapes), and a preview of its values laid out as in the sheet. No HTML here:
`export.py` renders these records.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .a1 import col_letter, quote_sheet
from .layout import FIRST_ROW, FORWARD_STAGES, Block, Sheet
from .readback import BookContents
from .steps.base import Component

IMG_DIR = "img"  # the lesson's pictures, inside its directory
BARS = 10  # bars in the prediction charts

PREVIEW_ROWS, PREVIEW_COLS = 12, 8
FORMULAS_PER_BLOCK = 2  # per-head blocks hold one shared formula per head: show a couple


@dataclass
class Formula:
    sheet: str
    cell: str  # A1 address on `sheet`
    text: str  # with the leading '=', exactly as stored
    n_cells: int  # cells computed by it (a shared formula's group)
    block: str | None  # the block it fills; None for label columns
    block_cells: int = 1  # the size of that block

    @property
    def address(self) -> str:
        return f"{quote_sheet(self.sheet)}!{self.cell}"


@dataclass
class Operand:
    """A block a step reads or writes."""
    name: str
    label: str  # what a reader calls it: sheet name, parameter name
    shape: str
    sheet: str | None = None  # the lesson page's sheet, when it has one


@dataclass
class Cell:
    text: str
    value: float | None = None  # numbers only (NaN: empty cell in a block)
    block: str | None = None  # layout block holding the cell, and its position there
    i: int = 0
    j: int = 0
    kind: str = "num"  # num, text, empty (a block's empty cell: masked), blank


@dataclass
class Preview:
    columns: list[tuple[str, str]]  # (column letter, the sheet's row-2 label)
    rows: list[tuple[int, str, list[Cell]]]  # (sheet row, column-A label, cells)
    n_rows: int  # the whole table's size, to say what is left out
    n_cols: int


@dataclass
class Figure:
    src: str  # relative to the lesson directory
    alt: str
    caption: str = ""


@dataclass
class Page:
    sheet: str
    component: Component  # the step: its words, its blocks
    header: str  # the sheet's title row, as the workbook shows it
    formulas: list[Formula]
    hidden_formulas: int  # shared formulas of per-head blocks left out
    inputs: list[Operand]
    outputs: list[Operand]
    preview: Preview
    explain: str = ""  # the component's lesson text, rendered
    figures: list[Figure] = field(default_factory=list)
    prev: "Page | None" = None
    next: "Page | None" = None

    kind = property(lambda self: self.component.kind)
    layer = property(lambda self: self.component.layer)
    stage = property(lambda self: self.component.stage)
    short_title = property(lambda self: self.component.short_title or self.sheet)

    @property
    def filename(self) -> str:
        return page_filename(self.sheet)

    @property
    def title(self) -> str:
        return self.short_title if self.layer is None else f"Layer {self.layer}: {self.short_title}"

    @property
    def group(self) -> str:
        """Heading of the page's section on the index."""
        if self.layer is not None:
            return f"Layer {self.layer}: {'attention' if self.stage == 'attention' else 'MLP'}"
        return {"input": "Input", "embedding": "Embedding", "output": "Output"}.get(self.stage, self.stage)


def page_filename(sheet: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", sheet.replace(" ", "-")) + ".html"


def visible(token: str) -> str:
    """Token text with its spaces and control characters made visible (a leading space is
    part of most GPT-2 tokens and matters)."""
    out = token.replace(" ", "\u2423").replace("\n", "\u21b5").replace("\t", "\u21e5")
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in out)


def fmt(v: object, token: bool = False) -> str:
    """A cell's value for a table; `token`: text computed by a formula, which in these
    sheets is always a token's text, so its spaces are made visible."""
    if v is None:
        return ""
    if isinstance(v, str):
        return visible(v) if token else v
    v = float(v)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:#.4g}"


class PageReader:
    """Builds the Page of each forward-pass sheet of one evaluated workbook."""

    def __init__(self, book: BookContents):
        self.book, self.L = book, book.layout
        self.lesson_sheets = [s for s in self.L.sheets if s.stage in FORWARD_STAGES]
        self._on_page = {s.name for s in self.lesson_sheets}

    def pages(self) -> list[Page]:
        pages = [self.page(sheet) for sheet in self.lesson_sheets]
        for a, b in zip(pages, pages[1:]):
            a.next, b.prev = b, a
        return pages

    def page(self, sheet: Sheet) -> Page:
        header = self.book.values.value(sheet.name, 1, 1)
        all_formulas = self.formulas(sheet)
        shown, hidden, per_block = [], 0, {}
        for f in all_formulas:
            per_block[f.block] = per_block.get(f.block, 0) + 1
            if f.block is None or per_block[f.block] <= FORMULAS_PER_BLOCK:
                shown.append(f)
            else:
                hidden += 1
        return Page(sheet.name, sheet.owner, str(header or sheet.title), shown, hidden, self.inputs(sheet),
                    [self.operand(b) for b in sheet.blocks], self.preview(sheet))

    # -- formulas -------------------------------------------------------------------
    def formulas(self, sheet: Sheet) -> list[Formula]:
        """Every shared formula's master cell, and the plain formula at the top-left corner
        of blocks that have no shared one (the transposed keys, single cells), in block
        order; formulas of label columns come last."""
        found = self.book.values.formulas(sheet.name)
        covered = {self._block_at(sheet, f.row, f.col) for f in found if f.shared or f.array}
        corners = {(b.row, b.col) for b in sheet.blocks if b not in covered}
        order = {b.name: k for k, b in enumerate(sorted(sheet.blocks, key=lambda b: b.col))}
        out = []
        for f in found:
            if not (f.shared or f.array) and (f.row, f.col) not in corners:
                continue
            block = self._block_at(sheet, f.row, f.col)
            name = block.name if block else None
            out.append(((order.get(name, len(order)), f.row, f.col),
                        Formula(sheet.name, f"{col_letter(f.col)}{f.row}",
                                "{=" + f.text + "}" if f.array else "=" + f.text, f.n_cells, name,
                                block.size if block else 1)))
        return [f for _, f in sorted(out, key=lambda x: x[0])]

    @staticmethod
    def _block_at(sheet: Sheet, row: int, col: int) -> Block | None:
        return next((b for b in sheet.blocks if b.contains(row, col)), None)

    # -- inputs and outputs ---------------------------------------------------------
    def inputs(self, sheet: Sheet) -> list[Operand]:
        """Blocks on other sheets that the sheet's components read, in order of use."""
        owners = dict.fromkeys(self.L.owner(b) for b in sheet.blocks)
        reads = dict.fromkeys(b for c in owners for b in c.reads if b.sheet != sheet.name)
        return [self.operand(b) for b in reads]

    def operand(self, blk: Block) -> Operand:
        owner = self.L.owner(blk)
        if blk.heads > 1:
            shape = f"{blk.heads} heads \u00d7 {blk.n_rows // blk.heads} \u00d7 {blk.n_cols}"
        else:
            shape = " \u00d7 ".join(map(str, owner.shape_of(blk)))
        return Operand(blk.name, owner.label(blk), shape, blk.sheet if blk.sheet in self._on_page else None)

    # -- values ---------------------------------------------------------------------
    def preview(self, sheet: Sheet) -> Preview:
        """The top-left corner of the sheet's data, as the sheet lays it out: column A labels
        the rows, row 2 the columns."""
        values, name = self.book.values, sheet.name
        n_rows_sheet, n_cols_sheet = values.shape(name)
        n_rows, n_cols = n_rows_sheet - FIRST_ROW + 1, n_cols_sheet - 1
        rows_shown = min(n_rows, PREVIEW_ROWS)
        cols = list(range(2, 2 + min(n_cols, PREVIEW_COLS)))
        computed = values.formula_cells(name, FIRST_ROW + rows_shown - 1, cols[-1] if cols else 1)
        columns = [(col_letter(c), fmt(values.value(name, FIRST_ROW - 1, c))) for c in cols]
        rows = []
        for r in range(FIRST_ROW, FIRST_ROW + rows_shown):
            cells = [self._cell(sheet, r, c, (r, c) in computed) for c in cols]
            rows.append((r, fmt(values.value(name, r, 1), (r, 1) in computed), cells))
        return Preview(columns, rows, n_rows, n_cols)

    def _cell(self, sheet: Sheet, r: int, c: int, computed: bool) -> Cell:
        v = self.book.values.value(sheet.name, r, c)
        block = self._block_at(sheet, r, c)
        name, i, j = (block.name, r - block.row, c - block.col) if block else (None, 0, 0)
        if isinstance(v, str):
            return Cell(fmt(v, computed), None, name, i, j, "text")
        if v is None:
            return Cell("", float("nan"), name, i, j, "empty") if name else Cell("", kind="blank")
        return Cell(fmt(v), float(v), name, i, j, "num")


def stacked_heads(arr: np.ndarray, n_head: int) -> np.ndarray:
    """[H*T, T] as the workbook stacks heads -> [H, T, T]."""
    return arr.reshape(n_head, -1, arr.shape[1])
