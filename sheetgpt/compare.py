"""What a workbook shows against what it must show: the numeric steps against the
reference, every other formula cell against what its component says it shows, every label
against what the builder writes, and any formula the builder did not write."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .a1 import cell_name
from .engines import EvaluatedBook
from .layout import Block
from .steps.base import FORMULAS, Cells, Chart, Constants, Values, Vocab
from .xlsx_chart import FoundChart


KINDS = ("input", "step", "shown", "labels", "foreign", "chart", "error", "lint")  # what a Failure can be


@dataclass(frozen=True)
class Failure:
    """One thing check found wrong: what kind of thing (KINDS), the step or part it belongs
    to, its cell (None: the part as a whole) and what is wrong there."""

    kind: str
    step: str
    sheet: str | None
    cell: str | None
    detail: str = ""

    @property
    def where(self) -> dict:
        """The place, as check --json's first_failure gives it."""
        return {"step": self.step, "sheet": self.sheet, "cell": self.cell}

    def to_json(self) -> dict:
        return {"kind": self.kind, **self.where, "detail": self.detail}


@dataclass
class StepResult:
    name: str
    sheet: str
    max_abs_err: float
    max_rel_err: float
    ok: bool
    cell: str | None = None  # first cell over tolerance
    detail: str | None = None

    def failure(self, kind: str) -> Failure | None:
        """What is wrong with it, if anything (kind: step, shown or labels)."""
        if self.ok:
            return None
        return Failure(kind, self.name, self.sheet, self.cell,
                       f"{self.detail} (max relative error {self.max_rel_err:.3g})")


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


def compare_shown(values: EvaluatedBook, cells: dict[str, list[Cells]], ref: Values, vocab: Vocab,
                  tol: float) -> list[StepResult]:
    """Every formula cell outside the numeric steps (text lookups, position labels, the
    Guide's mirrors) against what its component says it shows, worked out from the
    reference and the vocabulary."""
    results = []
    for sheet_cells in cells.values():
        for c in sheet_cells:
            if isinstance(c, FORMULAS) and c.shows is not None:
                blk = c.where
                want = c.shows.expected(ref, vocab)
                if all(isinstance(w, str) for w in want):
                    results.append(_compare_texts(values, blk, c.shows.name, want))
                else:
                    result = compare_block(values, blk, np.asarray(want, np.float64).reshape(blk.shape), tol)
                    result.name = c.shows.name
                    results.append(result)
    return results


def _compare_texts(values: EvaluatedBook, blk: Block, name: str, want: list[str]) -> StepResult:
    got = [values.value(blk.sheet, blk.row + k // blk.n_cols, blk.col + k % blk.n_cols) for k in range(blk.size)]
    bad = [k for k, (g, w) in enumerate(zip(got, want)) if not shown_alike(g, w)]
    if not bad:
        return StepResult(name, blk.sheet, 0.0, 0.0, True)
    k = bad[0]
    return StepResult(name, blk.sheet, float("inf"), float("inf"), False, blk.cell(k // blk.n_cols, k % blk.n_cols),
                      f"holds {got[k]!r}, expected {want[k]!r}")


def shown_alike(got: object, want: object, tol: float = 0.0) -> bool:
    """The same value as shown: numbers within tol (relative, at least 1 absolute), text
    allowing for how some programs show it: IronCalc and Gnumeric show a control
    character as the _xHHHH_ escape the file stores it in, and Gnumeric drops DEL
    (\\x7f) (escaping DEL instead would make LibreOffice show the escape); an empty text
    cell may read back as empty."""
    if not isinstance(want, str):
        return (isinstance(got, (int, float)) and not isinstance(got, bool)
                and abs(got - want) <= tol * max(abs(want), 1))
    if want == "" and got is None:
        return True
    if got == want or not isinstance(got, str):
        return got == want
    decoded = re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), got)
    return decoded in (want, want.replace("\x7f", ""))


def compare_labels(values: EvaluatedBook, cells: dict[str, list[Cells]], tol: float) -> list[StepResult]:
    """Every constant the builder writes (titles, headers, row labels, the Guide's text)
    against what the workbook holds there, the book's own inputs aside: one result per
    sheet that has such constants, naming its first differing cell."""
    results = []
    for sheet, sheet_cells in cells.items():
        constants = [c for c in sheet_cells if isinstance(c, Constants) and not c.given]
        if not constants:
            continue
        bad = next(_differing_constants(values, constants, tol), None)
        if bad is None:
            results.append(StepResult("labels", sheet, 0.0, 0.0, True))
        else:
            row, col, got, want = bad
            results.append(StepResult("labels", sheet, float("inf"), float("inf"), False, cell_name(row, col),
                                      f"holds {got!r}, expected {want!r}"))
    return results


def _differing_constants(values: EvaluatedBook, constants: Iterable[Constants], tol: float):
    """(row, col, holds, expected) of each constant cell that shows otherwise, block by block."""
    for c in constants:
        w = c.where
        want = np.asarray(c.values, dtype=object)
        if not any(isinstance(v, str) for v in want.flat):  # numbers: compared at once
            expected = want.astype(np.float64)
            got, other = values.numbers(w.sheet, w.row, w.col, *expected.shape)
            bad = other | ~(np.abs(got - expected) <= tol * np.maximum(np.abs(expected), 1))
            for i, j in np.argwhere(bad).tolist():
                yield w.row + i, w.col + j, values.value(w.sheet, w.row + i, w.col + j), c.values[i][j]
            continue
        for i, row in enumerate(c.values):
            for j, expected in enumerate(row):
                got = values.value(w.sheet, w.row + i, w.col + j)
                if not shown_alike(got, expected, tol):
                    yield w.row + i, w.col + j, got, expected


def foreign_formulas(values: EvaluatedBook, cells: dict[str, list[Cells]]) -> list[dict]:
    """The first formula cell on each sheet that the builder did not write (so nothing says
    what it must show), row by row: sheet, cell and formula."""
    found = []
    for sheet in values.sheet_names():
        if not values.formulas(sheet):  # most sheets of a big book: weights
            continue
        mask = values.formula_mask(sheet)
        for c in cells.get(sheet, []):
            if isinstance(c, FORMULAS):
                w = c.where
                mask[w.row - 1:w.row - 1 + w.n_rows, w.col - 1:w.col - 1 + w.n_cols] = False
        if mask.any():
            r, c = (int(k) + 1 for k in np.argwhere(mask)[0])
            found.append({"sheet": sheet, "cell": cell_name(r, c), "formula": values.formula_at(sheet, r, c)})
    return found


def compare_charts(found: list[FoundChart], declared: dict[str, list[Chart]]) -> tuple[list[str], list[Failure]]:
    """Each chart the book must draw against the one of its title on its sheet: every series
    must read the block it plots and its labels. A chart that reads other cells shows
    something else under the same title: a failure, at the chart's top-left cell. A chart
    not there (a program that saved the book dropped it) is said, not failed: nothing
    shown is wrong."""
    notes, failures = [], []
    for sheet, charts in declared.items():
        for chart in charts:
            here = cell_name(chart.where.row, chart.where.col)
            match = next((f for f in found if f.sheet == sheet and f.title == chart.title), None)
            if match is None:
                notes.append(f"chart {chart.title!r} (sheet {sheet!r}, {here}) is not in the book")
                continue
            wrong = _chart_series(chart, match)
            if wrong:
                failures.append(Failure("chart", chart.title, sheet, here, wrong))
    return notes, failures


def _chart_series(chart: Chart, found: FoundChart) -> str | None:
    """What is wrong with a chart's series (None: each reads its block and labels)."""
    if len(found.series) != len(chart.series):
        return f"it has {len(found.series)} series, not {len(chart.series)}"
    for (name, block), (_, categories, values) in zip(chart.series, found.series):
        for what, want, got in (("values", block, values), ("labels", chart.categories, categories)):
            if not want.is_spelled(got):
                label = block.name or what
                return f"series {name!r} reads its {what} from {got or 'nowhere'}, not {label} ({want.ref()})"
    return None

