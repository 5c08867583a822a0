"""Where every cell of the workbook lives: the sheets and blocks that the components
declare, in workbook order. The builder writes them, the checker finds them, the lesson
reads them; nothing else decides an address.

Every sheet has a title in row 1, column labels in row 2 and row labels in column A, so
data starts at B3. A block is a rectangle of cells: a step (one tensor of the forward
pass), an input (token ids, weights, vocabulary) or, without a name, a label beside one.
Named blocks are workbook-level defined names; steps are what `check` compares.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Callable, Mapping, Sequence, TypeVar

from .a1 import AddressError, box, cell_name, parse_range, quote_sheet
from .model import GPT2Config

if TYPE_CHECKING:
    from .steps.base import Component

C = TypeVar("C")
FIRST_ROW = 3  # rows 1-2: title and column labels
FIRST_COL = 2  # column A: row labels
# Sheets are ordered by group, then by declaration: the forward pass reads the vocabulary and
# the weights, so they are declared first but shown after it.
GROUPS = {"guide": 0, "input": 1, "embedding": 1, "attention": 1, "mlp": 1, "output": 1,
          "selftest": 2, "vocab": 2, "weights": 3, "meta": 4}
FORWARD_STAGES = ("input", "embedding", "attention", "mlp", "output")


@dataclass(frozen=True)
class Block:
    name: str  # workbook-level defined name; "" for a label block (not named)
    sheet: str
    row: int  # 1-based first row
    col: int  # 1-based first column
    n_rows: int
    n_cols: int
    heads: int = 1  # attention heads stacked along the rows ([heads * T, n])

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_rows, self.n_cols

    @property
    def size(self) -> int:
        return self.n_rows * self.n_cols

    def cell(self, i: int, j: int, abs_row: bool = False, abs_col: bool = False) -> str:
        """A1 address (no sheet) of element [i, j], optionally anchored."""
        return cell_name(self.row + i, self.col + j, abs_row, abs_col)

    def span(self, i0: int, j0: int, i1: int, j1: int, abs_row: bool, abs_col: bool) -> str:
        """Elements [i0..i1, j0..j1] as a range with its sheet."""
        a, b = self.cell(i0, j0, abs_row, abs_col), self.cell(i1, j1, abs_row, abs_col)
        return f"{quote_sheet(self.sheet)}!{a}" + (f":{b}" if a != b else "")

    def rows_ref(self, i: int, abs_row: bool = False) -> str:
        """Row i of the block as a range with anchored columns, e.g. 'h0 ln_1'!$D3:$S3."""
        return self.span(i, 0, i, self.n_cols - 1, abs_row, True)

    def col_ref(self, j: int, abs_col: bool = False) -> str:
        """Column j of the block as a range with anchored rows, e.g. 'wte'!B$3:B$50259."""
        return self.span(0, j, self.n_rows - 1, j, True, abs_col)

    def ref(self) -> str:
        """The whole block, absolute, with its sheet: the defined name's target."""
        return self.span(0, 0, self.n_rows - 1, self.n_cols - 1, True, True)

    def at(self, i: int, j: int) -> str:
        """Relative address of element [i, j] with its sheet, for a cell on another sheet."""
        return f"{quote_sheet(self.sheet)}!{self.cell(i, j)}"

    def box(self) -> str:
        """The block without its sheet, relative: B3:Q12."""
        return box(self.row, self.col, self.n_rows, self.n_cols)

    def part(self, row0: int = 0, n_rows: int | None = None, col0: int = 0, n_cols: int | None = None,
             row: int | None = None, col: int | None = None) -> Block:
        """An unnamed sub-rectangle (rows row0.., cols col0..), or one beside the block at
        an absolute `row` / `col` with the block's rows / columns."""
        n_rows = self.n_rows - row0 if n_rows is None else n_rows
        n_cols = self.n_cols - col0 if n_cols is None else n_cols
        return Block("", self.sheet, self.row + row0 if row is None else row,
                     self.col + col0 if col is None else col, n_rows, n_cols)

    def is_spelled(self, text: str | None) -> bool:
        """Whether a reference's text (a defined name's, a chart series') is this block,
        however a program spells it (LibreOffice drops the quotes around a plain sheet name)."""
        try:
            ref = parse_range(text.lstrip("=")) if text else None
        except AddressError:
            return False
        return (ref is not None and ref.sheet is not None and ref.sheet.upper() == self.sheet.upper()
                and (ref.row0, ref.col0, ref.shape) == (self.row, self.col, self.shape))

    def contains(self, row: int, col: int) -> bool:
        return self.row <= row < self.row + self.n_rows and self.col <= col < self.col + self.n_cols


FORMS = ("arrays", "cells")  # how a book writes its matrix products (see BookOptions.form)


@dataclass(frozen=True)
class BookOptions:
    """What a book holds beyond the forward pass (its probes: generation, the logit lens,
    see sheetgpt.probes) and the form of its matrix products."""

    # arrays: each matrix product (linear layers, unembedding, lens) is one array formula, which
    # LibreOffice computes several times faster; cells: one formula per cell, for programs
    # that compute array formulas wrong (IronCalc). A book that does not say is of the cells
    # form: it was written before there were two.
    form: str = field(default="arrays", metadata={"unsaid": "cells"})
    architecture: str = "gpt2"  # the name its components are composed by (sheetgpt.architectures)
    # the probes it holds: name -> value (given as a mapping; kept as sorted pairs, the off ones left out)
    probes: Mapping[str, int] | tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if self.form not in FORMS:
            raise ValueError(f"form {self.form!r}: give one of {', '.join(FORMS)}")
        asked = tuple(sorted((name, int(value)) for name, value in dict(self.probes).items() if value))
        object.__setattr__(self, "probes", asked)

    def probe(self, name: str) -> int:
        """A probe's value in this book (0: the book does not hold it)."""
        return dict(self.probes).get(name, 0)

    def to_meta(self, probes: Sequence[str]) -> dict[str, int | str]:
        """The options as the metadata sheet holds them: each of these probes (0 if off),
        then the book's form and architecture."""
        return {**{name: self.probe(name) for name in probes}, "form": self.form, "architecture": self.architecture}

    @classmethod
    def from_meta(cls, meta: dict, probes: Sequence[str]) -> BookOptions:
        """The options a metadata sheet records for these probes; one it does not record takes
        its value for books written before the option existed (a probe: off)."""
        given = {}
        for f in fields(cls):
            if f.name != "probes":
                value = meta.get(f.name)
                given[f.name] = f.metadata.get("unsaid", f.default) if value is None or value == "" else str(value)
        return cls(**given, probes={name: int(meta.get(name) or 0) for name in probes})

    @property
    def arrays(self) -> bool:
        return self.form == "arrays"


@dataclass
class Sheet:
    name: str
    title: str  # row 1: what it computes, in plain words, with its shape
    stage: str  # guide, input, embedding, attention, mlp, output, selftest, vocab, weights, meta
    owner: "Component | None" = None  # the component whose page this sheet is
    blocks: list[Block] = field(default_factory=list)  # named blocks, in declaration order


class Layout:
    """The sheets and blocks of one workbook: a model configuration, a number of token
    positions and an architecture (a function that declares its components in order)."""

    def __init__(self, cfg: GPT2Config, n_tokens: int, architecture: Callable[["Layout"], Sequence["Component"]],
                 n_merges: int | None = None, options: BookOptions = BookOptions()):
        """architecture: the function that declares the components (sheetgpt.architectures.lay_out
        finds it by the options' name). n_merges: the tokenizer's merges, for a book whose prompt
        is typed in and tokenized by formulas (n_tokens is then its capacity); None: the token
        ids are typed in."""
        if not 1 <= n_tokens <= cfg.n_ctx:
            raise ValueError(f"need 1 to {cfg.n_ctx} tokens, got {n_tokens}")
        self.cfg, self.T, self.n_merges, self.options = cfg, n_tokens, n_merges, options
        self._sheets: list[Sheet] = []
        self._blocks: list[Block] = []
        self._steps: set[str] = set()
        self._weights: dict[str, Block] = {}
        self._owners: dict[str, Component | None] = {}
        self.given: list[str] = []  # blocks the learner may fill, which the reference reads (readback.given)
        self.components: list[Component] = list(architecture(self))
        order = {s.name: (GROUPS[s.stage], k) for k, s in enumerate(self._sheets)}
        self.sheets = sorted(self._sheets, key=lambda s: order[s.name])
        self._by_name = {s.name: s for s in self.sheets}
        self.blocks = {b.name: b for b in sorted(self._blocks, key=lambda b: order[b.sheet][0])}
        self.steps = [name for name in self.blocks if name in self._steps]  # checked, in forward order
        self.loops = self._loops()

    def _loops(self) -> bool:
        """Whether a component reads a block of a later one: the book's positions feed back
        (it writes tokens after the prompt), so its reference runs until they settle, and its
        formulas must reach no later position (see builder.Writer._pins_rows)."""
        index = {id(c): k for k, c in enumerate(self.components)}
        later = lambda c, block: index.get(id(self._owners.get(block.name)), -1) > index[id(c)]
        return any(later(c, block) for c in self.components for block in c.reads)

    # -- declaration (components call these while the architecture runs) -------------
    def add_sheet(self, name: str, title: str, stage: str, owner: "Component | None" = None) -> Sheet:
        if any(s.name == name for s in self._sheets):
            raise ValueError(f"two sheets named {name!r}")
        sheet = Sheet(name, title, stage, owner)
        self._sheets.append(sheet)
        return sheet

    def add_block(self, sheet: Sheet, name: str, n_rows: int, n_cols: int, row: int = FIRST_ROW,
                  col: int = FIRST_COL, step: bool = True, heads: int = 1,
                  owner: "Component | None" = None, given: bool = False) -> Block:
        """A named block; `step`: computed by the forward pass and compared by check;
        `given`: cells the learner may fill (empty or a number), which the reference reads."""
        if any(b.name == name for b in self._blocks):
            raise ValueError(f"two blocks named {name!r}")
        block = Block(name, sheet.name, row, col, n_rows, n_cols, heads)
        sheet.blocks.append(block)
        self._blocks.append(block)
        self._owners[name] = owner
        if step:
            self._steps.add(name)
        if given:
            self.given.append(name)
        return block

    @property
    def typed_prompt(self) -> bool:
        return self.n_merges is not None

    def add_weight(self, param: str, block: Block) -> None:
        self._weights[param] = block

    # -- lookup ---------------------------------------------------------------------
    def sheet(self, name: str) -> Sheet:
        return self._by_name[name]

    def weight(self, param: str) -> Block:
        """The block holding a GPT-2 parameter, by its checkpoint name (h.0.attn.c_attn.weight)."""
        return self._weights[param]

    @property
    def weights(self) -> dict[str, Block]:
        return dict(self._weights)

    def find(self, kind: type[C]) -> C:
        """The book's first component of this class (a probe's, to read its blocks back)."""
        return next(c for c in self.components if isinstance(c, kind))

    def owner(self, block: Block) -> "Component | None":
        return self._owners[block.name]

    def n_cells(self, owned_by: Callable[["Component | None"], bool] | None = None) -> int:
        """Cells of the named blocks (of those whose owner passes the test)."""
        return sum(b.size for b in self.blocks.values() if owned_by is None or owned_by(self._owners[b.name]))
