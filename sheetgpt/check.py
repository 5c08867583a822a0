"""Check a workbook: evaluate it from its formulas alone, recompute the NumPy reference from
the weights and token ids found in it, and compare every step."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .a1 import cell_name
from .engines import EvaluatedBook
from .layout import Block
from .lint import Finding, lint_book, to_json
from .load import LoadedModel
from .readback import BookContents, load_book
from .reference import forward

DEFAULT_TOL = 1e-9  # relative to the block's largest value: a few ulps of float64 accumulation


@dataclass
class StepResult:
    name: str
    sheet: str
    max_abs_err: float
    max_rel_err: float
    ok: bool
    cell: str | None = None  # first cell over tolerance
    detail: str | None = None


@dataclass
class CheckReport:
    ok: bool
    steps: list[StepResult]
    first_failure: dict | None
    inputs: list[str] = field(default_factory=list)  # --model / --prompt findings
    lint: list[Finding] = field(default_factory=list)  # portability problems
    errors: list[dict] = field(default_factory=list)  # error values anywhere (first per sheet)
    texts: list[StepResult] = field(default_factory=list)  # text cells against what they must show

    def to_json(self) -> dict:
        return {"ok": self.ok, "steps": [asdict(s) for s in self.steps],
                "first_failure": self.first_failure, "inputs": self.inputs, "lint": to_json(self.lint),
                "errors": self.errors, "texts": [asdict(t) for t in self.texts]}


def check_workbook(path: str | Path, model: LoadedModel | None = None, prompt: str | None = None,
                   tol: float = DEFAULT_TOL, engine: str = "fast", progress: bool | None = None,
                   architecture: Callable | None = None) -> CheckReport:
    book = load_book(path, engine, progress, architecture)
    inputs: list[str] = []
    first: dict | None = None
    if model is not None:
        msg, where = _compare_weights(book, model)
        inputs.append(msg)
        first = first or where
    if prompt is not None:
        tokenizer = model.tokenizer if model is not None else None
        msg, where = _compare_prompt(book, prompt, tokenizer)
        inputs.append(msg)
        first = first or where
    ref = forward(book.weights, book.ids, layout=book.layout)
    steps = []
    for name in book.layout.steps:
        result = compare_block(book.values, book.layout.blocks[name], ref[name], tol)
        steps.append(result)
        if not result.ok and first is None:
            first = {"step": name, "sheet": result.sheet, "cell": result.cell}
    texts = compare_texts(book, ref)
    for result in texts:
        if not result.ok and first is None:
            first = {"step": result.name, "sheet": result.sheet, "cell": result.cell}
    # the Guide only mirrors other cells: an error there comes from one elsewhere, named first
    order = sorted(book.values.sheet_names(), key=lambda name: name == book.layout.sheets[0].name)
    errors = cell_errors(book.values, order)
    if errors and first is None:  # e.g. a label or a Guide cell: no step holds it
        first = {"step": "errors", "sheet": errors[0]["sheet"], "cell": errors[0]["cell"]}
    findings = lint_book(book.values)
    if findings and first is None:  # computes right here, but may not in Excel or LibreOffice
        first = {"step": "lint", "sheet": findings[0].sheet, "cell": findings[0].cell}
    return CheckReport(ok=first is None, steps=steps, first_failure=first, inputs=inputs, lint=findings,
                       errors=errors, texts=texts)


def compare_texts(book: BookContents, ref: dict[str, np.ndarray]) -> list[StepResult]:
    """Every text cell a component declares against the text it must show, worked out from
    the reference and the book's vocabulary (the constants on its vocab sheet)."""
    v = {**ref, book.layout.blocks["tokens"].name: np.array(book.ids, dtype=np.float64)[:, None]}
    results = []
    for component in book.layout.components:
        for name, blk, want in component.texts(v, book.token_text):
            got = [book.values.value(blk.sheet, blk.row + i, blk.col) for i in range(blk.n_rows)]
            bad = [i for i, (g, w) in enumerate(zip(got, want)) if not _shown_alike(g, w)]
            result = StepResult(name, blk.sheet, 0.0 if not bad else float("inf"), 0.0 if not bad else float("inf"),
                                not bad)
            if bad:
                result.cell = blk.cell(bad[0], 0)
                result.detail = f"holds {got[bad[0]]!r}, expected {want[bad[0]]!r}"
            results.append(result)
    return results


def _shown_alike(got: object, want: str) -> bool:
    """The same token text, allowing for how some programs show the few control bytes:
    IronCalc and Gnumeric show a control character as the _xHHHH_ escape the file stores
    it in, and Gnumeric drops DEL (\\x7f); escaping DEL instead would make LibreOffice
    show the escape."""
    if got == want or not isinstance(got, str):
        return got == want
    decoded = re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), got)
    return decoded in (want, want.replace("\x7f", ""))


def cell_errors(values: EvaluatedBook, sheets: list[str]) -> list[dict]:
    """The first cell holding an error value on each of these sheets that has one."""
    found = []
    for sheet in sheets:
        error = values.first_error(sheet)
        if error is not None:
            row, col, value = error
            found.append({"sheet": sheet, "cell": cell_name(row, col), "value": value})
    return found


def compare_block(values: EvaluatedBook, blk: Block, ref: np.ndarray, tol: float) -> StepResult:
    """Max absolute and relative error of one block; NaN in `ref` means the cell must be empty."""
    got, not_number = values.numbers(blk.sheet, blk.row, blk.col, blk.n_rows, blk.n_cols)
    ref_empty, got_empty = np.isnan(ref), np.isnan(got)
    err = np.where(ref_empty | got_empty, 0.0, np.abs(got - ref))
    err[ref_empty != got_empty] = np.inf
    err[not_number] = np.inf  # an error value or text where a number belongs
    scale = float(np.nanmax(np.abs(ref))) if not ref_empty.all() else 0.0
    max_abs = float(err.max())
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    bad = err > tol * scale
    if not bad.any():
        return StepResult(blk.name, blk.sheet, max_abs, max_rel, True)
    i, j = np.unravel_index(np.argmax(bad), bad.shape)  # first bad cell, row by row
    detail = (f"holds {values.value(blk.sheet, blk.row + int(i), blk.col + int(j))!r}, not a number"
              if not_number[i, j] else
              f"is empty, expected {ref[i, j]:.17g}" if got_empty[i, j] else
              f"holds {got[i, j]:.17g}, expected empty" if ref_empty[i, j] else
              f"holds {got[i, j]:.17g}, expected {ref[i, j]:.17g}")
    return StepResult(blk.name, blk.sheet, max_abs, max_rel, False, blk.cell(int(i), int(j)), detail)


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


def _compare_prompt(book: BookContents, prompt: str, tokenizer) -> tuple[str, dict | None]:
    if tokenizer is None:
        from .tokenizer import Tokenizer
        tokenizer = Tokenizer.gpt2()
    want = tokenizer.encode(prompt)
    blk = book.layout.blocks["tokens"]
    for t in range(max(len(want), len(book.ids))):
        a = book.ids[t] if t < len(book.ids) else None
        b = want[t] if t < len(want) else None
        if a != b:
            cell = blk.cell(t, 0) if t < blk.n_rows else None
            return (f"token {t} is {a} in the workbook but {b} for the prompt {prompt!r} "
                    f"({len(book.ids)} vs {len(want)} tokens)",
                    {"step": "tokens", "sheet": blk.sheet, "cell": cell})
    return f"token ids are exactly those of the prompt ({len(want)} tokens)", None
