"""Write a GPT-2 forward pass as an .xlsx workbook: every weight a cell, every step a formula.

The layout says where everything is and the components say what goes there; this module
only turns their cells into sheet XML. A formula the same in relative (R1C1) terms over a
rectangle is written as one shared formula group, so the file stays small and a reader
sees one formula that explains the whole block.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import regex

from . import probes
from .a1 import box, pin_rows, quote_sheet
from .architectures import lay_out
from .errors import UserError
from .layout import FIRST_COL, FIRST_ROW, FORWARD_STAGES, Block, BookOptions, Layout, Sheet
from .load import LoadedModel
from .parallel import WeightFormatter, default_workers
from .progress import Progress
from .steps.base import ArrayFormula, BuildInputs, CellFormulas, Cells, Chart, Constants, Formula
from .steps.guide import GUIDE_SHEET
from .steps.prompt import chars_capacity, is_tokenizer, readable, status_message
from .tokenizer import GPT2_PATTERN
from .xlsx import (SheetOptions, Style, WorkbookWriter, array_formula_cell, empty_cells, formula_cell, number_cells,
                   row_xml, shared_formula_cells, shared_formula_master, string_cell)

DEFAULT_POSITIONS = 16  # token positions of a typed-prompt book, unless the prompt needs more
COMPRESS_LEVEL = 3  # deflate: level 3 is ~12% smaller than 1 for 50% more time
BACK_LINK = "<- Guide"
TAB_COLORS = {"guide": "FFC000", "input": "FFC000", "embedding": "70AD47", "attention": "4472C4",
              "mlp": "ED7D31", "output": "7030A0", "vocab": "A5A5A5", "weights": "A5A5A5"}

SHADED_WIDTH = 11  # the columns of a colour scale: wide enough for 100.0000%, which shows ### in the default width
Rows = dict[int, list]  # sheet row -> runs (first col, n cells, xml)


@dataclass
class BuildResult:
    path: Path
    ids: list[int]
    n_cells: int
    n_formulas: int
    positions: int = 0
    typed_prompt: bool = False
    tokenizer_cells: int = 0  # of n_cells: the typed prompt's tokenizer sheets and tables


@dataclass(frozen=True)
class BookPlan:
    """Everything a workbook is made of, checked and laid out, before a byte is written."""

    inputs: BuildInputs
    layout: Layout
    compact: bool = False  # omit the optional r= on cells that follow on (smaller; see xlsx.py)

    @property
    def ids(self) -> list[int]:
        return list(self.inputs.ids)


def plan_book(model: LoadedModel, prompt: str, compact: bool = False, typed_prompt: bool = False,
              positions: int | None = None, options: BookOptions = BookOptions(),
              controls: dict[str, np.ndarray] | None = None) -> BookPlan:
    """Tokenize `prompt` and lay out the workbook; one clear error for input it cannot hold.

    typed_prompt: the prompt is a cell the learner edits, tokenized by formulas, in a book
    of `positions` token positions (default: DEFAULT_POSITIONS, or the prompt's length plus
    the generated tokens). Otherwise the token ids are the input cells, one per token of
    the prompt. options: generation and the logit lens; controls: the controls' cells
    where they are not plain GPT-2's (a steering vector)."""
    if not prompt:
        raise UserError("the prompt is empty: give some text, e.g. sheetgpt build \"Hello, my name is\"")
    ids = model.tokenizer.encode(prompt)
    cfg = model.weights.config
    if len(ids) > cfg.n_ctx:
        raise UserError(f"the prompt is {len(ids)} tokens long; this model reads at most {cfg.n_ctx}")
    for name, arr in model.weights.params.items():
        if not np.isfinite(arr).all():
            raise UserError(f"weight {name} holds NaN or infinity, which a spreadsheet cannot store")
    K = written_after_prompt(options, typed_prompt)
    if not typed_prompt:
        if positions is not None and positions != len(ids):
            raise UserError(f"--positions {positions}: a book with fixed token ids has one position per token of "
                            f"the prompt ({len(ids)})")
        layout = lay_out(cfg, len(ids), options)
        return BookPlan(BuildInputs(model, prompt, ids, controls=controls), layout, compact)
    T = typed_positions(model, prompt, positions, K)
    layout = lay_out(cfg, T, options, n_merges=len(model.tokenizer.merge_table()))
    return BookPlan(BuildInputs(model, prompt, ids, controls=controls), layout, compact)


def written_after_prompt(options: BookOptions, typed_prompt: bool = True) -> int:
    """How many tokens the book's probes write after the prompt; one clear error for a
    count below 0, or a book that writes without a typed prompt."""
    for probe in probes.options():
        value = options.probe(probe.name)
        if value < 0:
            raise UserError(f"--{probe.name} {value}: give 0 or more")
        if value and probe.writes and not typed_prompt:
            raise UserError(f"--{probe.name} needs a book with a typed prompt (leave out --fixed)")
        if value and probe.needs and not options.probe(probe.needs):
            raise UserError(f"--{probe.name} is an option of --{probe.needs}: give both")
    return sum(options.probe(p.name) for p in probes.options() if p.writes)


def typed_positions(model: LoadedModel, prompt: str, positions: int | None, generate: int) -> int:
    """How many token positions a typed-prompt book of this prompt has (`positions`, or the
    default); one clear error when they cannot hold the prompt and the generated tokens."""
    n, n_ctx = len(model.tokenizer.encode(prompt)), model.weights.config.n_ctx
    T = positions if positions is not None else min(n_ctx, max(DEFAULT_POSITIONS, n + generate))
    if not n + generate <= T <= n_ctx:
        what = "the prompt's tokens" + (f" + {generate} generated" if generate else "")
        raise UserError(f"--positions {T}: give {n + generate} ({what}) to {n_ctx} (the model's context)")
    return T


def why_the_sheet_cannot_read(model: LoadedModel, prompt: str, positions: int) -> str | None:
    """Why a typed-prompt book of `positions` positions could not tokenize this prompt in its
    formulas (its Guide's status would say so), or None when it can."""
    words = regex.findall(GPT2_PATTERN, readable(prompt, chars_capacity(positions)))
    tok = model.tokenizer
    if any(tok.byte_id(ord(ch)) is None for ch in set(prompt) if ord(ch) < 128):
        return "the vocabulary lacks a token for one of the prompt's bytes"
    status = status_message(prompt, positions, len(words), [len(w) for w in words], len(tok.encode(prompt)))
    return None if status.startswith("OK") else status


def build_workbook(model: LoadedModel, prompt: str, path: str | Path, progress: bool | None = None,
                   workers: int | None = None, compresslevel: int = COMPRESS_LEVEL,
                   compact: bool = False, typed_prompt: bool = False,
                   positions: int | None = None, options: BookOptions = BookOptions(),
                   controls: dict[str, np.ndarray] | None = None) -> BuildResult:
    """Tokenize `prompt` and write the workbook for `model` to `path` (atomically).

    workers: processes formatting weight sheets (None: one per core for big models).
    compact: omit the r= of cells that follow on (about 30% smaller; Gnumeric and IronCalc
    cannot read such files).
    typed_prompt, positions: see plan_book.
    """
    plan = plan_book(model, prompt, compact, typed_prompt, positions, options, controls)
    return write_book(plan, path, progress, workers, compresslevel)


def write_book(plan: BookPlan, path: str | Path, progress: bool | None = None, workers: int | None = None,
               compresslevel: int = COMPRESS_LEVEL) -> BuildResult:
    layout, model = plan.layout, plan.inputs.model
    sheets = _SheetWriter(plan)
    arrays = {p: model.weights[p].reshape(block.shape) for p, block in layout.weights.items()}
    formatter = WeightFormatter(arrays, FIRST_ROW, Style.HEADER,
                                default_workers(model.weights.n_params) if workers is None else workers,
                                cell_refs=not plan.compact)
    try:
        with Progress(total=layout.n_cells(), desc="writing workbook", enabled=progress) as bar:
            with WorkbookWriter(path, compresslevel) as wb:
                formatter.start()
                for sheet in layout.sheets:
                    sheets.write(wb, sheet, bar, formatter)
                for block in layout.blocks.values():
                    wb.define_name(block.name, block.ref())
    finally:
        formatter.close()
    return BuildResult(Path(path), plan.ids, layout.n_cells(), sheets.n_formulas, layout.T, layout.typed_prompt,
                       layout.n_cells(is_tokenizer))


def book_cells(layout: Layout, inputs: BuildInputs) -> dict[str, list[Cells]]:
    """Every cell the builder writes except the weights' values, by sheet in writing order:
    the components' cells after each sheet's title and link back to the Guide. check
    compares a workbook with these."""
    out: dict[str, list[Cells]] = {}
    for sheet in layout.sheets:
        if sheet.owner.decorated:
            out[sheet.name] = [Constants(Block("", sheet.name, 1, 1, 1, 1), [[sheet.title]], Style.TITLE),
                               Constants(Block("", sheet.name, 2, 1, 1, 1), [[BACK_LINK]], Style.LINK)]
    for component in layout.components:
        for cells in component.cells(inputs):
            out.setdefault(cells.where.sheet, []).append(cells)
    return out


def book_charts(layout: Layout) -> dict[str, list[Chart]]:
    """The components' charts, by the sheet they are drawn on, in declaration order. check
    compares a workbook's charts with these."""
    out: dict[str, list[Chart]] = {}
    for component in layout.components:
        for chart in component.charts:
            out.setdefault(chart.where.sheet, []).append(chart)
    return out


class _SheetWriter:
    """The cells of every sheet, from the components, in their order; the weights' values
    come from the formatter's worker processes."""

    def __init__(self, plan: BookPlan):
        self.layout, self.inputs, self.cell_refs = plan.layout, plan.inputs, not plan.compact
        self.cells = book_cells(self.layout, self.inputs)
        self.charts = book_charts(self.layout)
        self.n_formulas = 0

    def write(self, wb: WorkbookWriter, sheet: Sheet, bar: Progress, formatter: WeightFormatter) -> None:
        rows: Rows = {}
        si = 0  # shared-formula index, per sheet
        for cells in self.cells.get(sheet.name, []):
            si = self._put_cells(rows, cells, si)
        if sheet.stage == "weights":
            _write_weights(wb, sheet, rows, bar, formatter, self.cell_refs)
            return
        with wb.sheet(sheet.name, self._options(sheet)) as write:
            for r in sorted(rows):
                write(row_xml(r, rows[r], self.cell_refs))
        bar.update(sum(b.size for b in sheet.blocks))

    def _options(self, sheet: Sheet) -> SheetOptions:
        options = sheet.owner.sheet_options(self.inputs) or self._step_options(sheet)
        return dataclasses.replace(options, charts=[c.spec() for c in self.charts.get(sheet.name, [])])

    def _step_options(self, sheet: Sheet) -> SheetOptions:
        owners = [(b, self.layout.owner(b)) for b in sheet.blocks]
        shaded = sorted({col for b, c in owners if b in c.color_scales for col in range(b.col, b.col + b.n_cols)})
        return SheetOptions(tab_color=TAB_COLORS.get(sheet.stage), freeze=(FIRST_ROW, FIRST_COL),
                            col_widths=[(1, 1, 16)] + [(col, col, SHADED_WIDTH) for col in shaded if col > 1],
                            hyperlinks=[_back_link()],
                            notes=[(b.row, b.col, c.notes[b.name]) for b, c in owners if b.name in c.notes],
                            color_scales=[b.box() for b, c in owners if b in c.color_scales],
                            signed_scales=[b.box() for b, c in owners if b in c.signed_scales])

    def _put_cells(self, rows: Rows, cells: Cells, si: int) -> int:
        w = cells.where
        if isinstance(cells, Formula):
            return self._put_formula(rows, cells, si)
        if isinstance(cells, CellFormulas):
            for i, texts in enumerate(cells.texts):
                _put(rows, w.row + i, w.col, b"".join(formula_cell(t, cells.style) for t in texts), len(texts))
            self.n_formulas += w.size if self._in_block(w) else 0
        elif isinstance(cells, ArrayFormula):
            _put(rows, w.row, w.col, array_formula_cell(cells.text, w.box(), cells.style)
                 + empty_cells(w.n_cols - 1, cells.style), w.n_cols)
            for i in range(1, w.n_rows):
                _put(rows, w.row + i, w.col, empty_cells(w.n_cols, cells.style), w.n_cols)
            self.n_formulas += w.size if self._in_block(w) else 0
        elif isinstance(cells, Constants):
            for i, values in enumerate(cells.values):
                _put(rows, w.row + i, w.col, _constants(values, cells.style), len(values))
        return si

    def _in_block(self, where: Block) -> bool:
        """Whether cells are (part of) a named block: a step's formulas, not a label's."""
        return bool(where.name) or any(b.contains(where.row, where.col)
                                       for b in self.layout.sheet(where.sheet).blocks)

    def _pins_rows(self, where: Block) -> bool:
        """Whether a formula over `where` is written row by row, each row's references pinned
        (pin_rows): in a book of array formulas that writes, for the forward pass's blocks
        whose rows are positions (or heads' positions), so that no formula group spans two
        positions. A group spanning them reaches itself through the generated tokens, and
        LibreOffice's threaded group calculation then falls back to slow recursive work
        (BENCHMARKS.md). The cells form keeps its groups: pinned, LibreOffice computes its
        next_logits column groups wrong (Err:522); the cells form is for IronCalc."""
        layout, options = self.layout, self.layout.options
        sheet = layout.sheet(where.sheet)
        return (layout.loops and options.arrays and 1 < where.n_rows <= layout.T * layout.cfg.n_head
                and sheet.stage in FORWARD_STAGES and not is_tokenizer(sheet.owner))

    def _put_formula(self, rows: Rows, f: Formula, si: int) -> int:
        """One shared formula over f.where, written for its top-left cell. Where the mask is
        False the cell holds f.fill (None: it stays empty)."""
        w = f.where
        mask = np.ones(w.shape, dtype=bool) if f.mask is None else f.mask
        if self._pins_rows(w):
            for i in range(w.n_rows):
                si = self._put_formula(rows, Formula(w.part(row0=i, n_rows=1), pin_rows(f.text, i), f.style,
                                                     mask[i:i + 1], f.fill), si)
            return si
        assert mask.shape == w.shape and mask[0, 0], "the master cell of a shared formula must hold it"
        self.n_formulas += int(mask.sum()) if self._in_block(w) else 0
        if w.size == 1:
            _put(rows, w.row, w.col, formula_cell(f.text, f.style))
            return si
        ref = box(w.row, w.col, w.n_rows, w.n_cols)
        for i, runs in enumerate(_row_runs(mask)):
            for j0, j1, on in runs:
                r, c = w.row + i, w.col + j0
                if on and i == 0 and j0 == 0:
                    xml = (shared_formula_master(f.text, ref, si, f.style, c, r)
                           + shared_formula_cells(c + 1, j1 - 1, r, si, f.style))
                elif on:
                    xml = shared_formula_cells(c, j1 - j0, r, si, f.style)
                elif f.fill is not None:
                    xml = number_cells(np.full(j1 - j0, f.fill), Style.MASKED)
                else:
                    continue
                _put(rows, r, c, xml, j1 - j0)
        return si + 1


def _write_weights(wb: WorkbookWriter, sheet: Sheet, rows: Rows, bar: Progress, formatter: WeightFormatter,
                   cell_refs: bool) -> None:
    """A parameter's sheet: its title rows, then its values streamed as worker processes
    format them."""
    blk = sheet.blocks[0]
    opt = SheetOptions(tab_color=TAB_COLORS["weights"], freeze=(FIRST_ROW, FIRST_COL), col_widths=[(1, 1, 16)],
                       hyperlinks=[_back_link()])
    with wb.sheet(sheet.name, opt, size_hint=blk.size * 20) as write:
        for r in sorted(rows):
            write(row_xml(r, rows[r], cell_refs))
        for xml, cells in formatter.chunks(sheet.name):
            write(xml)
            bar.update(cells)


def _back_link() -> tuple[str, str, str]:
    return ("A2", f"{quote_sheet(GUIDE_SHEET)}!A1", "back to the Guide")


def _constants(values: Sequence[object], style: int) -> bytes:
    """A row of constants: numbers in one go (the common case), else cell by cell."""
    if all(type(v) in (int, float) for v in values):
        return number_cells(values, style)
    return b"".join(_constant(v, style) for v in values)


def _constant(value: object, style: int) -> bytes:
    if value is None:  # an empty cell that shows its style (an input waiting for a value)
        return f'<c s="{style}"/>'.encode()
    return string_cell(value, style) if isinstance(value, str) else number_cells([value], style)


def _put(rows: Rows, row: int, col: int, xml: bytes, n: int = 1) -> None:
    rows.setdefault(row, []).append((col, n, xml))


def _row_runs(mask: np.ndarray) -> Iterator[list[tuple[int, int, bool]]]:
    """Per row of a boolean mask, its runs of equal values: (start, stop, value). The edges
    of all rows are found at once (NumPy per row costs more than the rows' few cells)."""
    n_rows, n_cols = mask.shape
    rows, cols = np.nonzero(mask[:, 1:] != mask[:, :-1])
    starts = np.searchsorted(rows, np.arange(n_rows + 1)).tolist()
    edges, first = (cols + 1).tolist(), mask[:, 0].tolist()
    for i in range(n_rows):
        bounds = [0, *edges[starts[i]:starts[i + 1]], n_cols]
        yield [(a, b, first[i] == (k % 2 == 0)) for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
