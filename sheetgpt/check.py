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
from .builder import book_cells
from .compare import StepResult, compare_block, compare_labels, compare_shown, foreign_formulas, shown_alike
from .layout import Block
from .lint import Finding, lint_book, to_json
from .load import LoadedModel
from .readback import BookContents, load_book, prompt_cell, read_defined_names
from .reference import forward
from .steps.controls import TEMPERATURE_BAD, TEMPERATURE_OK, temperature_status
from .tokenizer import Tokenizer

DEFAULT_TOL = 1e-9  # relative to the block's largest value: a few ulps of float64 accumulation


@dataclass
class CheckReport:
    ok: bool
    steps: list[StepResult]
    first_failure: dict | None
    inputs: list[str] = field(default_factory=list)  # --model / --prompt findings
    lint: list[Finding] = field(default_factory=list)  # portability problems
    errors: list[dict] = field(default_factory=list)  # error values anywhere (first per sheet)
    shown: list[StepResult] = field(default_factory=list)  # other formula cells against what they must show
    labels: list[StepResult] = field(default_factory=list)  # constants against what the builder writes, by sheet
    foreign: list[dict] = field(default_factory=list)  # formulas the builder did not write (first per sheet)

    def to_json(self) -> dict:
        return {"ok": self.ok, "steps": [asdict(s) for s in self.steps],
                "first_failure": self.first_failure, "inputs": self.inputs, "lint": to_json(self.lint),
                "errors": self.errors, "shown": [asdict(t) for t in self.shown],
                "labels": [asdict(t) for t in self.labels if not t.ok], "foreign": self.foreign}


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
    overrides = list(overrides)
    if prompt is not None and values is None and "prompt" in read_defined_names(Path(path))[1]:
        overrides.append(prompt_cell(path, prompt))
    book = load_book(path, engine, progress, overrides, values, lenient=True)
    inputs: list[str] = [f"as if {o.sheet}!{cell_name(o.row, o.col)} held {o.shown}" for o in overrides]
    inputs += [f"{engine} engine: {p}; the cells show #VALUE!" for p in book.values.problems]
    first: dict | None = None
    typed = book.layout.typed_prompt
    if model is not None:
        for compare in (_compare_weights, _compare_vocabulary) + ((_compare_merges,) if typed else ()):
            msg, where = compare(book, model)
            inputs.append(msg)
            first = first or where
    if typed:
        status = book.values.value(*_cell_of(book.layout.blocks["prompt_status"]))
        inputs.append(f"the prompt cell's tokenizer says: {status}")
    text = prompt if prompt is not None else (book.prompt or "") if typed else None
    prompt_failure = None  # in a typed book the tokenizer's own steps, compared below, come first
    if text is not None:  # the sheet's ids must be the Python tokenizer's for its text
        msg, prompt_failure = _compare_prompt(book, text, tokenizer or (model.tokenizer if model is not None else None))
        inputs.append(msg)
        if not typed:
            first = first or prompt_failure
    given = book.given()
    if temperature_status(given) != TEMPERATURE_OK:
        blk = book.layout.blocks["temperature"]
        inputs.append(f"{blk.sheet}!{blk.cell(0, 0)}: {TEMPERATURE_BAD}")
        first = first or {"step": "temperature", "sheet": blk.sheet, "cell": blk.cell(0, 0)}
    ref = forward(book.weights, book.ids, layout=book.layout, given=given)
    if not book.layout.typed_prompt:
        ref[book.layout.blocks["tokens"].name] = np.array(book.ids, dtype=np.float64)[:, None]
    cells = book_cells(book.layout, book.inputs())
    steps = [compare_block(book.values, book.layout.blocks[name], ref[name], tol) for name in book.layout.steps]
    shown = compare_shown(book.values, cells, ref, book.token_text, tol)
    labels = compare_labels(book.values, cells, tol)
    for result in steps + shown + labels:
        if not result.ok and first is None:
            first = {"step": result.name, "sheet": result.sheet, "cell": result.cell}
    first = first or prompt_failure
    foreign = foreign_formulas(book.values, cells)
    if foreign and first is None:  # nothing says what such a cell must show
        first = {"step": "foreign", "sheet": foreign[0]["sheet"], "cell": foreign[0]["cell"]}
    # the Guide only mirrors other cells: an error there comes from one elsewhere, named first
    order = sorted(book.values.sheet_names(), key=lambda name: name == book.layout.sheets[0].name)
    errors = cell_errors(book.values, order)
    if errors and first is None:
        first = {"step": "errors", "sheet": errors[0]["sheet"], "cell": errors[0]["cell"]}
    findings = lint_book(book.values)
    if findings and first is None:  # computes right here, but may not in Excel or LibreOffice
        first = {"step": "lint", "sheet": findings[0].sheet, "cell": findings[0].cell}
    return CheckReport(ok=first is None, steps=steps, first_failure=first, inputs=inputs, lint=findings,
                       errors=errors, shown=shown, labels=labels, foreign=foreign)


def cell_errors(values: EvaluatedBook, sheets: list[str]) -> list[dict]:
    """The first cell holding an error value on each of these sheets that has one."""
    found = []
    for sheet in sheets:
        error = values.first_error(sheet)
        if error is not None:
            row, col, value = error
            found.append({"sheet": sheet, "cell": cell_name(row, col), "value": value})
    return found


def _compare_weights(book: BookContents, model: LoadedModel) -> tuple[str, dict | None]:
    """The workbook's weights must read back as exactly the model's float32 values."""
    if model.weights.config != book.weights.config:
        return (f"model {model.name} has config {model.weights.config}, the workbook "
                f"{book.weights.config}", {"step": "weights", "sheet": None, "cell": None})
    for param, expected in model.weights.params.items():
        got = book.weights[param].astype(np.float32)
        differs = got != expected.astype(np.float32)
        if differs.any():
            blk = book.layout.weight(param)
            i, j = np.argwhere(differs.reshape(blk.shape))[0]
            cell = blk.cell(int(i), int(j))
            return (f"weight {param} differs from model {model.name} at {blk.sheet}!{cell}: "
                    f"{float(got.reshape(blk.shape)[i, j]):.9g} instead of "
                    f"{float(expected.reshape(blk.shape)[i, j]):.9g}",
                    {"step": "weights", "sheet": blk.sheet, "cell": cell})
    return f"weights are exactly those of model {model.name}", None


def _compare_vocabulary(book: BookContents, model: LoadedModel) -> tuple[str, dict | None]:
    """The vocabulary sheet, which every text lookup reads, must be the model's tokenizer's."""
    blk, tok = book.layout.blocks["vocab_text"], model.tokenizer
    if book.layout.cfg.vocab_size != model.weights.config.vocab_size:
        return "the vocabularies differ in size", {"step": "vocab", "sheet": blk.sheet, "cell": None}
    for i in range(blk.n_rows):
        for j, (got, want) in enumerate(((book.token_text(i), tok.token_text(i)),
                                         (book.token_string(i), tok.token_string(i)))):
            if not shown_alike(got, want):
                cell = blk.cell(i, j)
                return (f"vocabulary entry {i} at {blk.sheet}!{cell} is {got!r}, model {model.name} has {want!r}",
                        {"step": "vocab", "sheet": blk.sheet, "cell": cell})
    return f"the vocabulary is exactly model {model.name}'s ({blk.n_rows:,} tokens)", None


def _compare_merges(book: BookContents, model: LoadedModel) -> tuple[str, dict | None]:
    """A typed-prompt book's tokenizer tables must be the model's tokenizer's."""
    blk, tok = book.layout.blocks["merge_keys"], model.tokenizer
    ours, theirs = book.merge_table(), tok.merge_table()
    if ours != theirs:
        k = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        return (f"the merge of rank {k} is {ours[k] if k < len(ours) else None} in the workbook, "
                f"{theirs[k] if k < len(theirs) else None} in model {model.name} (left, right, merged id, rank)",
                {"step": "merges", "sheet": blk.sheet, "cell": None})
    bytes_blk = book.layout.blocks["byte_ids"]
    for b in range(bytes_blk.n_rows):
        if book.byte_id(b) != tok.byte_id(b):
            return (f"byte {b}'s token is {book.byte_id(b)} in the workbook, {tok.byte_id(b)} in model {model.name}",
                    {"step": "merges", "sheet": bytes_blk.sheet, "cell": bytes_blk.cell(b, 0)})
    return f"the merge table is exactly model {model.name}'s ({len(theirs):,} merges)", None


def _compare_prompt(book: BookContents, prompt: str, tokenizer) -> tuple[str, dict | None]:
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
            return (f"token {t} is {a} in the workbook but {b} for the prompt {prompt!r} "
                    f"({len(got)} vs {len(want)} tokens)",
                    {"step": blk.name, "sheet": blk.sheet, "cell": cell})
    return f"token ids are exactly those of the prompt ({len(want)} tokens)", None


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
