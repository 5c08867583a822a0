"""The commands' work, from inputs to results, in one place: the command line parses and
prints; this module loads, plans, writes, evaluates. Progress goes to stderr."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .builder import (BuildResult, plan_book, typed_positions, why_the_sheet_cannot_read, write_book,
                      written_after_prompt)
from .engines import CellOverride
from .errors import UserError
from .layout import BookOptions
from .load import DEFAULT_MODEL, LoadedModel, load_model
from .probes import PROBES
from .readback import load_book
from .steering import read_vector, steering_vector
from .steps.prediction import top_k

BIG_BOOK_CELLS = 10_000_000  # say up front how big the file will be
BYTES_PER_CELL = 6  # measured: a weight cell's XML, compressed


@dataclass
class Built:
    result: BuildResult
    model: LoadedModel
    size: int  # bytes on disk


@dataclass(frozen=True)
class Steering:
    """What build puts on the controls sheet's steering cells."""

    texts: tuple[str, str] | None = None  # --steer "TOWARDS" "AWAY FROM"
    vector_file: Path | None = None  # --steer-vector FILE.npy
    layer: int = 0
    coef: float = 0.0

    def controls(self, model: LoadedModel) -> dict[str, np.ndarray]:
        if self.texts and self.vector_file:
            raise UserError("give --steer TEXT_A TEXT_B or --steer-vector FILE.npy, not both")
        cfg = model.weights.config
        if not 0 <= self.layer <= cfg.n_layer:
            raise UserError(f"--steer-layer {self.layer}: give 0 to {cfg.n_layer} (the stream entering that layer; "
                            f"{cfg.n_layer}: after the last)")
        if not np.isfinite(self.coef):
            raise UserError("--steer-coef must be a finite number")
        out = {"steer_layer": np.array([[self.layer]], float), "steer_coef": np.array([[self.coef]], float)}
        if self.texts:
            out["steer_vector"] = steering_vector(model, *self.texts, self.layer)[None, :]
        elif self.vector_file:
            out["steer_vector"] = read_vector(self.vector_file, cfg.n_embd)[None, :]
        return out


def build(model_spec: str, prompt: str, out: Path | None = None, progress: bool | None = None,
          compact: bool = False, typed_prompt: bool = True, positions: int | None = None,
          probes: Mapping[str, int] | None = None, steering: Steering = Steering(), form: str = "arrays") -> Built:
    """Load the model, tokenize and lay out once, then write the workbook atomically.

    typed_prompt: the prompt is a cell the sheet tokenizes; a prompt the sheet cannot read
    (beyond ASCII, a word too long) gets a book of fixed token ids instead, with a notice
    (with generation, an error). probes: each probe's value (sheetgpt.probes; None: their
    defaults, the logit lens on: on GPT-2 small it keeps check at 44 s and LibreOffice's
    recalculation as it was, see BENCHMARKS.md); form: "arrays" (matrix products as array
    formulas) or "cells" (for IronCalc)."""
    model = load_model(model_spec)
    options = BookOptions(form, probes=probe_defaults() if probes is None else probes)
    controls = steering.controls(model)
    typed = typed_prompt and _sheet_reads(model, prompt, positions, options)
    plan = plan_book(model, prompt, compact=compact, typed_prompt=typed, positions=positions,
                     options=options, controls=controls)
    out = out or Path("out") / f"sheetgpt-{_slug(model.name)}.xlsx"
    if out.suffix.lower() != ".xlsx":
        raise UserError(f"the output file must end in .xlsx, got {out}")
    if out.is_dir():
        raise UserError(f"{out} is a directory; give a file name ending in .xlsx")
    cells = plan.layout.n_cells()
    if cells > BIG_BOOK_CELLS and progress is not False:
        print(f"building {cells:,} cells for {len(plan.ids)} tokens: expect a file of about "
              f"{cells * BYTES_PER_CELL / 1e6:,.0f} MB and a minute or so", file=sys.stderr)
    try:
        result = write_book(plan, out, progress=progress)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    return Built(result, model, out.stat().st_size)


def probe_defaults() -> dict[str, int]:
    """Each probe's value when the command line does not say."""
    return {p.name: p.default for p in PROBES.values() if p.option}


def _sheet_reads(model: LoadedModel, prompt: str, positions: int | None, options: BookOptions) -> bool:
    """Whether the book's formulas can tokenize the prompt; if not, a book of fixed ids is
    written instead (with a note), unless the options need a typed prompt."""
    if not prompt:
        return True  # plan_book says what is wrong, in the order it checks the inputs
    try:
        generate = written_after_prompt(options)
        T = typed_positions(model, prompt, positions, generate)
    except UserError:
        return True  # the same
    reason = why_the_sheet_cannot_read(model, prompt, T)
    if reason is None:
        return True
    if positions is not None or generate:
        raise UserError(f"the sheet's tokenizer cannot read this prompt: {reason} (build without "
                        "--positions and --generate for a book of fixed token ids)")
    print(f"sheetgpt: note: the sheet's tokenizer cannot read this prompt ({reason}); writing a book of "
          "fixed token ids instead, as with --fixed", file=sys.stderr)
    return False


@dataclass
class Ranked:
    id: int
    token: str
    prob: float
    logit: float


def evaluate_top(book: Path, k: int, engine: str = "fast", progress: bool | None = None,
                 overrides: Sequence[CellOverride] = ()
                 ) -> tuple[list[Ranked], np.ndarray, str, list[tuple[int, str]] | None]:
    """The workbook's own top-k next tokens, its last-position logits, what its model is,
    and the tokens it writes after the prompt, (id, text) each (None: it does not write);
    `overrides`: as if those cells held those values."""
    if k < 1:
        raise UserError("--top must be at least 1")
    contents = load_book(book, engine, progress, overrides=overrides)
    logits = contents.numbers(contents.layout.blocks["logits"], "logit")[:, 0]
    probs = contents.numbers(contents.layout.blocks["next_probs"], "probability")[:, 0]  # at the book's temperature
    top = [Ranked(int(i), contents.token_text(int(i)), float(probs[i]), float(logits[i])) for i in top_k(logits, k)]
    writers = [p for p in PROBES.values() if p.written and contents.layout.options.probe(p.name)]
    written = [(i, contents.token_text(i)) for p in writers for i in p.written(contents)] if writers else None
    return top, logits, f"model {contents.model_name}: {contents.model_about}", written


def export(book: Path | None, model_spec: str | None, prompt: str | None, out_dir: Path,
           progress: bool | None = None) -> Path:
    """A lesson from a workbook, or from a model and prompt (built into OUT/book.xlsx first)."""
    from .export import check_out_dir, export_lesson, make_dir

    if model_spec or prompt:
        if book is not None:
            raise UserError("give either a workbook or --model with --prompt, not both")
        if not prompt:
            raise UserError("--model needs --prompt TEXT to build the workbook first")
        out = check_out_dir(out_dir)  # fail before a long build, not after
        book = out / "book.xlsx"
        new_dir = not out.exists()
        try:
            make_dir(out)
            build(model_spec or DEFAULT_MODEL, prompt, book, progress)
        except BaseException:
            if new_dir and out.exists() and not any(out.iterdir()):  # e.g. an empty prompt: leave nothing
                out.rmdir()
            raise
    elif book is None:
        raise UserError("give a workbook to export, or --model M --prompt TEXT")
    return export_lesson(book, out_dir, progress)



def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name).name or name).strip("-") or "model"
