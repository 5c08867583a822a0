"""sheetgpt's own formula engine: reads an .xlsx and computes every formula with NumPy.

It knows nothing of the builder: its input is a file, its output the value of every
cell. Cells computed the same way are evaluated together as one array operation.

This package's names below are its public surface (for the other engines and the lint);
its modules are internals.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ...errors import UserError
from ..base import CellOverride
from ...progress import Progress
from .book import FastBook, FileBook, FileStructure
from .compiler import CompileError, compile_groups, error_group, order_groups, shorten
from .evaluator import evaluate_group
from .functions import FUNCTIONS
from .parser import (MAX_FORMULA_CHARS, Binary, Bool, Call, Err, FormulaError, Missing, Name, Num, Ref, Str, Unary,
                     allow_deep_formulas, parse, parse_ref)
from .reader import FileError, Sheet, Workbook, read_workbook
from .registry import REGISTRY, Function
from .values import EvalError


def evaluate_fast(path: str | Path, progress: bool | None = None, overrides: Sequence[CellOverride] = (),
                  lenient: bool = False) -> FastBook:
    """Read the workbook and compute all its formulas from scratch, as if the cells of
    `overrides` held their values. A formula this engine cannot compute (unknown function,
    circular reference, unsupported arguments) is a one-line UserError, or with `lenient`
    shows #VALUE! in its cells, as a spreadsheet shows an error, and is listed in the
    book's `problems`."""
    with Progress(total=0, desc="reading sheets", enabled=progress, unit="sheet") as bar:
        wb = read_workbook(path, progress=lambda name: bar.update(1))
    type_into(wb, overrides)
    problems: list[str] | None = [] if lenient else None
    _evaluate_all(wb, _compile(wb, problems), progress, problems)
    return FastBook(wb, problems=problems or [])


def type_into(wb: Workbook, overrides: Sequence[CellOverride]) -> None:
    """The cells hold these values, formulas replaced (as typing into them does)."""
    for o in overrides:
        if o.sheet not in wb.sheets:
            raise UserError(f"--set {o}: the workbook has no sheet {o.sheet!r}")
        try:
            wb.sheets[o.sheet].put(o.row - 1, o.col - 1, o.value)
        except ValueError as e:
            raise UserError(f"--set {o}: {e}") from None


class Recalculation:
    """A workbook read and compiled once, then recalculated as often as asked, each time as
    if some of its constant cells held other values (a prompt typed again and again)."""

    def __init__(self, path: str | Path, progress: bool | None = None):
        self._wb = read_workbook(path)
        self._groups = _compile(self._wb)
        self._formulas = {(g.sheet, int(r), int(c)) for g in self._groups for r, c in zip(*g.covered())}
        self._saved: list[tuple[Sheet, int, int, float, int, str | None]] = []
        self._progress = progress

    def run(self, overrides: Sequence[CellOverride] = ()) -> FastBook:
        """Every formula computed with these values; the book it returns is valid until the next run."""
        for sheet, r, c, num, kind, text in reversed(self._saved):
            sheet.num[r, c], sheet.kind[r, c] = num, kind
            sheet.text.pop((r, c), None)
            if text is not None:
                sheet.text[(r, c)] = text
        self._saved = []
        for o in overrides:
            sheet = self._wb.sheets.get(o.sheet)
            r, c = o.row - 1, o.col - 1
            if sheet is None or (o.sheet, r, c) in self._formulas or r >= sheet.shape[0] or c >= sheet.shape[1]:
                raise UserError(f"--set {o}: a recalculation changes cells that hold a value, not formulas")
            self._saved.append((sheet, r, c, sheet.num[r, c], sheet.kind[r, c], sheet.text.get((r, c))))
            sheet.put(r, c, o.value)
        _evaluate_all(self._wb, self._groups, self._progress)
        return FastBook(self._wb)


def _compile(wb: Workbook, problems: list[str] | None = None) -> list:
    tell = None if problems is None else problems.append
    try:
        return order_groups(compile_groups(wb, FUNCTIONS, tell), tell)
    except FormulaError as e:
        raise UserError(str(e)) from None


def _evaluate_all(wb: Workbook, groups: list, progress: bool | None, problems: list[str] | None = None) -> None:
    total = sum(len(g) for g in groups)
    with Progress(total=total, desc="evaluating formulas", enabled=progress) as bar:
        for g in groups:
            try:
                evaluate_group(wb.sheets, g)
            except EvalError as e:
                message = f"cannot evaluate cell {g.first_cell()} (formula ={shorten(g.source)}): {e}"
                if problems is None:
                    raise UserError(message) from None
                problems.append(message)
                evaluate_group(wb.sheets, error_group(g.sheet, g.rows, g.cols, g.source, g.extent))
            bar.update(len(g))


__all__ = ["Binary", "Bool", "Call", "CompileError", "Err", "EvalError", "FUNCTIONS", "FastBook", "FileBook",
           "FileError", "FileStructure", "FormulaError", "Function", "MAX_FORMULA_CHARS", "Missing", "Name", "Num",
           "REGISTRY", "Recalculation", "Ref", "Str", "Unary", "Workbook", "allow_deep_formulas", "compile_groups",
           "error_group", "evaluate_fast", "order_groups", "parse", "parse_ref", "read_workbook", "shorten", "type_into"]
