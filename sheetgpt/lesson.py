"""What each page of the exported lesson shows, read from an evaluated workbook: the step's
formulas (as written in the file), what it reads and writes (with shapes), and a preview of
its values laid out as in the sheet. No HTML here: `export.py` renders these records.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from openpyxl.formula.tokenizer import Token, Tokenizer

from .check import BookContents
from .engines.fast.parser import FormulaError, parse_ref
from .engines.fast.reader import Workbook
from .layout import FIRST_ROW, META_SHEET, VOCAB_SHEET, Block, col_letter, quote_sheet
from .model import param_shapes

LESSON_STAGES = ("input", "embedding", "attention", "mlp", "output")
PER_HEAD = ("scores", "softmax", "probs")  # sheets whose rows are (head, query)
PREVIEW_ROWS, PREVIEW_COLS = 12, 8
FORMULAS_PER_BLOCK = 2  # per-head blocks hold one shared formula per head: show a couple

# short page titles, per kind of step (layers repeat the same kinds)
TITLES = {
    "tokens": "Token ids", "embed_tok": "Token embedding", "embed": "Adding the position",
    "ln_1": "Layer norm 1", "qkv": "Queries, keys and values", "kT": "Keys, turned on their side",
    "scores": "Attention scores", "softmax": "Softmax, piece by piece", "probs": "Attention weights",
    "attn": "Mixing the values", "attn_proj": "Attention output projection",
    "resid_1": "Residual add: attention", "ln_2": "Layer norm 2", "fc": "MLP: widen",
    "gelu": "MLP: GELU", "mlp_proj": "MLP: narrow back", "resid_2": "Residual add: MLP",
    "ln_f": "Final layer norm", "logits": "Logits: a score for every token",
    "prediction": "The prediction",
}


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
    kind: str  # tokens, embed, ln_1, qkv, ... (the part of the sheet name after the layer)
    layer: int | None
    stage: str
    header: str  # the sheet's title row, as the workbook shows it
    formulas: list[Formula]
    hidden_formulas: int  # shared formulas of per-head blocks left out
    inputs: list[Operand]
    outputs: list[Operand]
    preview: Preview
    figures: list[Figure] = field(default_factory=list)
    prev: "Page | None" = None
    next: "Page | None" = None

    @property
    def filename(self) -> str:
        return page_filename(self.sheet)

    @property
    def short_title(self) -> str:
        return TITLES.get(self.kind, self.kind)

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


def read_meta(book: BookContents) -> dict[str, object]:
    meta, r = {}, 1
    while (key := book.values.value(META_SHEET, r, 1)) is not None:
        meta[str(key)] = book.values.value(META_SHEET, r, 2)
        r += 1
    return meta


def token_text(book: BookContents, token_id: int) -> str:
    """A token's text as the workbook's vocabulary sheet holds it."""
    blk = book.layout.blocks["vocab_text"]
    v = book.values.value(VOCAB_SHEET, blk.row + token_id, blk.col)
    return "" if v is None else str(v)


def block_values(book: BookContents, name: str) -> np.ndarray:
    """A layout block's evaluated values, float64 [n_rows, n_cols]."""
    b = book.layout.blocks[name]
    return book.values.block(b.sheet, b.row, b.col, b.n_rows, b.n_cols)


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
    """Builds the Page of each lesson sheet of one evaluated workbook."""

    def __init__(self, book: BookContents, wb: Workbook):
        self.book, self.wb, self.L = book, wb, book.layout
        self.by_sheet: dict[str, list[Block]] = {}
        for blk in self.L.blocks.values():
            self.by_sheet.setdefault(blk.sheet, []).append(blk)
        self.params = {self.L.weight(p).name: (p, shape) for p, shape in param_shapes(self.L.cfg).items()}
        self.lesson_sheets = [s.name for s in self.L.sheets if s.stage in LESSON_STAGES]

    def pages(self) -> list[Page]:
        pages = [self.page(name) for name in self.lesson_sheets]
        for a, b in zip(pages, pages[1:]):
            a.next, b.prev = b, a
        return pages

    def page(self, sheet_name: str) -> Page:
        sheet = self.L.sheet(sheet_name)
        layer, kind = None, sheet_name
        if m := re.fullmatch(r"h(\d+) (.+)", sheet_name):
            layer, kind = int(m.group(1)), m.group(2)
        header = self.book.values.value(sheet_name, 1, 1)
        all_formulas = self.formulas(sheet_name)
        shown, hidden, per_block = [], 0, {}
        for f in all_formulas:
            per_block[f.block] = per_block.get(f.block, 0) + 1
            if f.block is None or per_block[f.block] <= FORMULAS_PER_BLOCK:
                shown.append(f)
            else:
                hidden += 1
        outputs = [self.operand(b) for b in sheet.blocks]
        return Page(sheet_name, kind, layer, sheet.stage, str(header or sheet.title), shown, hidden,
                    self.inputs(sheet_name, all_formulas), outputs, self.preview(sheet_name))

    # -- formulas -------------------------------------------------------------------
    def formulas(self, sheet_name: str) -> list[Formula]:
        """Every shared formula's master cell, and the plain formula at the top-left corner
        of blocks that have no shared one (the transposed keys, single cells), in block
        order; formulas of label columns come last."""
        s = self.wb.sheets[sheet_name]
        blocks = self.by_sheet.get(sheet_name, [])
        found = [(sh.row + 1, sh.col + 1, sh.text, len(sh.rows)) for sh in s.shared.values()]
        covered = {self._block_at(blocks, r, c) for r, c, _, _ in found}
        corners = {(b.row, b.col): b for b in blocks if b.name not in covered}
        found += [(r + 1, c + 1, text, 1) for r, c, text in s.formulas if (r + 1, c + 1) in corners]
        order = {b.name: k for k, b in enumerate(sorted(blocks, key=lambda b: b.col))}
        out = []
        for r, c, text, n in found:
            name = self._block_at(blocks, r, c)
            size = self.L.blocks[name].n_rows * self.L.blocks[name].n_cols if name else 1
            out.append(((order.get(name, len(order)), r, c),
                        Formula(sheet_name, f"{col_letter(c)}{r}", "=" + text, n, name, size)))
        return [f for _, f in sorted(out, key=lambda x: x[0])]

    @staticmethod
    def _block_at(blocks: list[Block], row: int, col: int) -> str | None:
        for b in blocks:
            if b.row <= row < b.row + b.n_rows and b.col <= col < b.col + b.n_cols:
                return b.name
        return None

    # -- inputs and outputs ---------------------------------------------------------
    def inputs(self, sheet_name: str, formulas: list[Formula]) -> list[Operand]:
        """Blocks on other sheets that the formulas read, in order of first use."""
        seen: dict[str, Operand] = {}
        for f in formulas:
            for tok in Tokenizer(f.text).items:
                if tok.type != Token.OPERAND or tok.subtype != Token.RANGE:
                    continue
                name = self._referenced_block(tok.value)
                if name and name not in seen and self.L.blocks[name].sheet != sheet_name:
                    seen[name] = self.operand(self.L.blocks[name])
        return list(seen.values())

    def _referenced_block(self, text: str) -> str | None:
        if text in self.L.blocks:  # a defined name, e.g. logits
            return text
        try:
            ref = parse_ref(text)
        except FormulaError:
            return None
        if ref is None or ref.sheet is None:  # same-sheet references stay inside the step
            return None
        return self._block_at(self.by_sheet.get(ref.sheet, []), ref.r0 + 1, ref.c0 + 1)

    def operand(self, blk: Block) -> Operand:
        cfg, T = self.L.cfg, self.L.T
        if blk.name in self.params:
            param, shape = self.params[blk.name]
            return Operand(blk.name, param, " \u00d7 ".join(map(str, shape)))
        shape = f"{blk.n_rows} \u00d7 {blk.n_cols}"
        if blk.sheet.endswith(PER_HEAD) and blk.n_rows == cfg.n_head * T:
            shape = f"{cfg.n_head} heads \u00d7 {T} \u00d7 {blk.n_cols}"
        if blk.name == "vocab_text":
            return Operand(blk.name, "vocab (token text)", shape)
        page = blk.sheet if blk.sheet in self.lesson_sheets else None
        return Operand(blk.name, blk.name, shape, page)

    # -- values ---------------------------------------------------------------------
    def preview(self, sheet_name: str) -> Preview:
        """The top-left corner of the sheet's data, as the sheet lays it out: column A labels
        the rows, row 2 the columns."""
        values, blocks = self.book.values, self.by_sheet.get(sheet_name, [])
        n_rows_sheet, n_cols_sheet = self.wb.sheets[sheet_name].shape
        n_rows, n_cols = n_rows_sheet - FIRST_ROW + 1, n_cols_sheet - 1
        rows_shown = min(n_rows, PREVIEW_ROWS)
        cols = list(range(2, 2 + min(n_cols, PREVIEW_COLS)))
        computed = self._formula_cells(sheet_name, FIRST_ROW + rows_shown, cols[-1] if cols else 1)
        columns = [(col_letter(c), fmt(values.value(sheet_name, FIRST_ROW - 1, c))) for c in cols]
        rows = []
        for r in range(FIRST_ROW, FIRST_ROW + rows_shown):
            cells = [self._cell(sheet_name, blocks, r, c, (r, c) in computed) for c in cols]
            rows.append((r, fmt(values.value(sheet_name, r, 1), (r, 1) in computed), cells))
        return Preview(columns, rows, n_rows, n_cols)

    def _formula_cells(self, sheet_name: str, max_row: int, max_col: int) -> set[tuple[int, int]]:
        """1-based cells up to (max_row, max_col) that hold a formula."""
        s = self.wb.sheets[sheet_name]
        cells = {(r + 1, c + 1) for r, c, _ in s.formulas}
        for sh in s.shared.values():
            cells.update((r + 1, c + 1) for r, c in zip(sh.rows, sh.cols) if r < max_row and c < max_col)
        return cells

    def _cell(self, sheet_name: str, blocks: list[Block], r: int, c: int, computed: bool) -> Cell:
        v = self.book.values.value(sheet_name, r, c)
        name = self._block_at(blocks, r, c)
        i, j = (r - self.L.blocks[name].row, c - self.L.blocks[name].col) if name else (0, 0)
        if isinstance(v, str):
            return Cell(fmt(v, computed), None, name, i, j, "text")
        if v is None:
            return Cell("", float("nan"), name, i, j, "empty") if name else Cell("", kind="blank")
        return Cell(fmt(v), float(v), name, i, j, "num")


def stacked_heads(arr: np.ndarray, n_head: int) -> np.ndarray:
    """[H*T, T] as the workbook stacks heads -> [H, T, T]."""
    return arr.reshape(n_head, -1, arr.shape[1])
