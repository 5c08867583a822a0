"""Check a workbook: evaluate it from its formulas alone, recompute the NumPy reference from
the weights and token ids found in it, and compare every step."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .a1 import cell_name
from .engines import CellOverride, EvaluatedBook
from .builder import book_cells, book_charts
from .compare import (Failure, StepResult, compare_block, compare_charts, compare_labels, compare_shown,
                      foreign_formulas, shown_alike)
from .layout import Block
from .lint import Finding, lint_book, to_json
from .load import LoadedModel
from .readback import BookContents, load_book, prompt_cell, read_defined_names
from .reference import forward
from .steps.controls import TEMPERATURE_BAD, TEMPERATURE_OK, temperature_status
from .tokenizer import Tokenizer
from .xlsx_chart import read_charts

DEFAULT_TOL = 1e-9  # relative to the block's largest value: a few ulps of float64 accumulation


@dataclass
class CheckReport:
    steps: list[StepResult]
    failures: list[Failure] = field(default_factory=list)  # everything wrong, the one to fix first first
    inputs: list[str] = field(default_factory=list)  # what the book was checked against, and how it fared
    lint: list[Finding] = field(default_factory=list)  # portability problems
    errors: list[dict] = field(default_factory=list)  # error values anywhere (first per sheet)
    shown: list[StepResult] = field(default_factory=list)  # other formula cells against what they must show
    labels: list[StepResult] = field(default_factory=list)  # constants against what the builder writes, by sheet
    foreign: list[dict] = field(default_factory=list)  # formulas the builder did not write (first per sheet)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_failure(self) -> dict | None:
        return self.failures[0].where if self.failures else None

    def to_json(self) -> dict:
        return {"ok": self.ok, "steps": [asdict(s) for s in self.steps],
                "first_failure": self.first_failure, "failures": [f.to_json() for f in self.failures],
                "inputs": self.inputs, "lint": to_json(self.lint),
                "errors": self.errors, "shown": [asdict(t) for t in self.shown],
                "labels": [asdict(t) for t in self.labels if not t.ok], "foreign": self.foreign}


Found = tuple[str, "Failure | None"]  # what a comparison of the book's inputs says, and what is wrong


def check_workbook(path: str | Path, model: LoadedModel | None = None, prompt: str | None = None,
                   tol: float = DEFAULT_TOL, engine: str = "fast", progress: bool | None = None,
                   overrides: Sequence[CellOverride] = (),
                   values: EvaluatedBook | None = None, tokenizer: Tokenizer | None = None) -> CheckReport:
    """Everything a reader of the workbook sees against what it must show; `overrides`:
    as if those cells held those values (the file is not changed). `prompt`: the book's
    token ids must be this text's; in a typed-prompt book it is typed into the prompt cell
    first. `values`: the book already evaluated, with the prompt and overrides in place.
    `tokenizer`: the Python tokenizer the prompt's ids must agree with (default: the
    model's, else GPT-2's or the book's own; see book_tokenizer)."""
    if prompt is not None and values is None and "prompt" in read_defined_names(Path(path))[1]:
        overrides = [*overrides, prompt_cell(path, prompt)]
    book = load_book(path, engine, progress, overrides, values, lenient=True)
    inputs = [f"as if {o.sheet}!{cell_name(o.row, o.col)} held {o.shown}" for o in overrides]
    inputs += [f"{engine} engine: {p}; the cells show #VALUE!" for p in book.values.problems]
    found, late = _compare_inputs(book, model, prompt, tokenizer)
    ref, cells = _reference(book), book_cells(book.layout, book.inputs())
    steps = [compare_block(book.values, book.layout.blocks[name], ref[name], tol) for name in book.layout.steps]
    shown = compare_shown(book.values, cells, ref, book.token_text, tol)
    labels = compare_labels(book.values, cells, tol)
    foreign, errors, findings = _beyond_the_blocks(book, cells)
    missing, charts = compare_charts(read_charts(path), book_charts(book.layout))
    failures = ([f for _, f in found] + [r.failure("step") for r in steps] + [r.failure("shown") for r in shown]
                + [r.failure("labels") for r in labels] + late
                + [Failure("foreign", "foreign", e["sheet"], e["cell"], "=" + e["formula"]) for e in foreign] + charts
                + [Failure("error", "errors", e["sheet"], e["cell"], str(e["value"])) for e in errors]
                + [Failure("lint", "lint", f.sheet, f.cell, f.message) for f in findings])
    return CheckReport(steps, [f for f in failures if f], inputs + [msg for msg, _ in found] + missing, findings,
                       errors, shown, labels, foreign)


def _reference(book: BookContents) -> dict[str, np.ndarray]:
    """The NumPy forward pass of the book's weights and inputs (a book of fixed ids: its ids
    are its inputs, not a step)."""
    ref = forward(book.weights, book.ids, layout=book.layout, given=book.given())
    if not book.layout.typed_prompt:
        ref[book.layout.blocks["tokens"].name] = np.array(book.ids, dtype=np.float64)[:, None]
    return ref


def _beyond_the_blocks(book: BookContents, cells: dict) -> tuple[list[dict], list[dict], list[Finding]]:
    """Formulas the builder did not write (nothing says what they must show), error values
    (the Guide only mirrors other cells: an error there comes from one elsewhere, named
    first) and what computes right here but may not in Excel or LibreOffice."""
    order = sorted(book.values.sheet_names(), key=lambda name: name == book.layout.sheets[0].name)
    return foreign_formulas(book.values, cells), cell_errors(book.values, order), lint_book(book.values)


def _compare_inputs(book: BookContents, model: LoadedModel | None, prompt: str | None,
                    tokenizer: Tokenizer | None) -> tuple[list[Found], list[Failure]]:
    """What the book was built from against the model and the prompt, and its temperature;
    second, what must be named only after the cells (a typed book's prompt ids: its
    tokenizer's steps, compared with the cells, come first)."""
    typed = book.layout.typed_prompt
    found: list[Found] = []
    if model is not None:
        found += [compare(book, model) for compare in (_compare_weights, _compare_vocabulary)
                  + ((_compare_merges,) if typed else ())]
    if typed:
        status = book.values.value(*_cell_of(book.layout.blocks["prompt_status"]))
        found.append((f"the prompt cell's tokenizer says: {status}", None))
    text = prompt if prompt is not None else (book.prompt or "") if typed else None
    late: list[Failure] = []
    if text is not None:  # the sheet's ids must be the Python tokenizer's for its text
        msg, failure = _compare_prompt(book, text, tokenizer or (model.tokenizer if model is not None else None))
        found.append((msg, None if typed else failure))
        late += [failure] if typed and failure else []
    blk = book.layout.blocks["temperature"]
    if temperature_status(book.given()[blk.name][0, 0]) != TEMPERATURE_OK:
        found.append((f"{blk.sheet}!{blk.cell(0, 0)}: {TEMPERATURE_BAD}",
                      Failure("input", "temperature", blk.sheet, blk.cell(0, 0), TEMPERATURE_BAD)))
    return found, late


def cell_errors(values: EvaluatedBook, sheets: list[str]) -> list[dict]:
    """The first cell holding an error value on each of these sheets that has one."""
    found = []
    for sheet in sheets:
        error = values.first_error(sheet)
        if error is not None:
            row, col, value = error
            found.append({"sheet": sheet, "cell": cell_name(row, col), "value": value})
    return found


def _compare_weights(book: BookContents, model: LoadedModel) -> Found:
    """The workbook's weights must read back as exactly the model's float32 values."""
    if model.weights.config != book.weights.config:
        return _wrong(f"model {model.name} has config {model.weights.config}, the workbook {book.weights.config}",
                      "weights", None, None)
    for param, expected in model.weights.params.items():
        got = book.weights[param].astype(np.float32)
        differs = got != expected.astype(np.float32)
        if differs.any():
            blk = book.layout.weight(param)
            i, j = np.argwhere(differs.reshape(blk.shape))[0]
            cell = blk.cell(int(i), int(j))
            return _wrong(f"weight {param} differs from model {model.name} at {blk.sheet}!{cell}: "
                          f"{float(got.reshape(blk.shape)[i, j]):.9g} instead of "
                          f"{float(expected.reshape(blk.shape)[i, j]):.9g}", "weights", blk.sheet, cell)
    return f"weights are exactly those of model {model.name}", None


def _compare_vocabulary(book: BookContents, model: LoadedModel) -> Found:
    """The vocabulary sheet, which every text lookup reads, must be the model's tokenizer's."""
    blk, tok = book.layout.blocks["vocab_text"], model.tokenizer
    if book.layout.cfg.vocab_size != model.weights.config.vocab_size:
        return _wrong("the vocabularies differ in size", "vocab", blk.sheet, None)
    for i in range(blk.n_rows):
        for j, (got, want) in enumerate(((book.token_text(i), tok.token_text(i)),
                                         (book.token_string(i), tok.token_string(i)))):
            if not shown_alike(got, want):
                cell = blk.cell(i, j)
                return _wrong(f"vocabulary entry {i} at {blk.sheet}!{cell} is {got!r}, model {model.name} has "
                              f"{want!r}", "vocab", blk.sheet, cell)
    return f"the vocabulary is exactly model {model.name}'s ({blk.n_rows:,} tokens)", None


def _compare_merges(book: BookContents, model: LoadedModel) -> Found:
    """A typed-prompt book's tokenizer tables must be the model's tokenizer's."""
    blk, tok = book.layout.blocks["merge_keys"], model.tokenizer
    ours, theirs = book.merge_table(), tok.merge_table()
    if ours != theirs:
        k = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        return _wrong(f"the merge of rank {k} is {ours[k] if k < len(ours) else None} in the workbook, "
                      f"{theirs[k] if k < len(theirs) else None} in model {model.name} (left, right, merged id, rank)",
                      "merges", blk.sheet, None)
    bytes_blk = book.layout.blocks["byte_ids"]
    for b in range(bytes_blk.n_rows):
        if book.byte_id(b) != tok.byte_id(b):
            return _wrong(f"byte {b}'s token is {book.byte_id(b)} in the workbook, {tok.byte_id(b)} in model "
                          f"{model.name}", "merges", bytes_blk.sheet, bytes_blk.cell(b, 0))
    return f"the merge table is exactly model {model.name}'s ({len(theirs):,} merges)", None


def _compare_prompt(book: BookContents, prompt: str, tokenizer) -> Found:
    """The ids the book computes (a typed prompt: its tokenizer's) against the Python
    tokenizer's for `prompt` (the model's; else the book's own vocabulary and merges)."""
    tokenizer = tokenizer or book_tokenizer(book)
    want = tokenizer.encode(prompt)
    if book.layout.typed_prompt:  # computed: a cell holding no id is None here (its step names it)
        blk = book.layout.blocks["prompt_ids"]
        n = _whole(book, book.layout.blocks["n_tokens"])[0]
        got = _whole(book, blk)[:n if n is not None else blk.n_rows]
    else:
        blk, got = book.layout.blocks["tokens"], book.ids
    for t in range(max(len(want), len(got))):
        a = got[t] if t < len(got) else None
        b = want[t] if t < len(want) else None
        if a != b:
            cell = blk.cell(t, 0) if t < blk.n_rows else None
            return _wrong(f"token {t} is {a} in the workbook but {b} for the prompt {prompt!r} "
                          f"({len(got)} vs {len(want)} tokens)", blk.name, blk.sheet, cell)
    return f"token ids are exactly those of the prompt ({len(want)} tokens)", None


def _wrong(message: str, step: str, sheet: str | None, cell: str | None) -> Found:
    """An input of the book that is not what it must be: the message, and the failure."""
    return message, Failure("input", step, sheet, cell, message)


def _whole(book: BookContents, blk: Block) -> list[int | None]:
    """A column block's whole numbers, None where a cell holds anything else."""
    got, _ = book.values.numbers(blk.sheet, blk.row, blk.col, blk.n_rows, 1)
    return [int(x) if np.isfinite(x) and x == int(x) else None for x in got[:, 0]]


def book_tokenizer(book: BookContents) -> Tokenizer:
    """The tokenizer made of a typed-prompt book's own vocabulary sheet and merge table
    (a book of fixed ids has no merge table: GPT-2's)."""
    V = book.layout.cfg.vocab_size
    if not book.layout.typed_prompt:
        return Tokenizer.gpt2()
    strings = [book.token_string(i) for i in range(V)]
    merges = [(strings[a], strings[b]) for a, b, _, _ in book.merge_table()]
    return Tokenizer({s: i for i, s in enumerate(strings)}, merges)


def check_prompts(path: str | Path, prompts: Iterable[str], model: LoadedModel | None = None,
                  tol: float = DEFAULT_TOL) -> Iterator[CheckReport]:
    """check --prompt for each of many prompts on one typed-prompt book, read and compiled once."""
    from .engines.fast import Recalculation
    recalc = Recalculation(path)
    tokenizer = model.tokenizer if model is not None else None
    cell = prompt_cell(path, "")
    for text in prompts:
        values = recalc.run([dataclasses.replace(cell, value=text)])
        if tokenizer is None:
            tokenizer = book_tokenizer(load_book(path, values=values))
        yield check_workbook(path, model, text, tol, values=values, tokenizer=tokenizer)


def _cell_of(block: Block) -> tuple[str, int, int]:
    return block.sheet, block.row, block.col
