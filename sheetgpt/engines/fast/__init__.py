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
from .compiler import CompileError, compile_groups, order_groups, shorten
from .evaluator import evaluate_group
from .functions import FUNCTIONS
from .parser import (MAX_FORMULA_CHARS, Binary, Bool, Call, Err, FormulaError, Missing, Name, Num, Ref, Str, Unary,
                     allow_deep_formulas, parse, parse_ref)
from .reader import FileError, Workbook, read_workbook
from .registry import REGISTRY, Function
from .values import EvalError


def evaluate_fast(path: str | Path, progress: bool | None = None, overrides: Sequence[CellOverride] = ()) -> FastBook:
    """Read the workbook and compute all its formulas from scratch, as if the cells of
    `overrides` held their values."""
    with Progress(total=0, desc="reading sheets", enabled=progress, unit="sheet") as bar:
        wb = read_workbook(path, progress=lambda name: bar.update(1))
    for o in overrides:
        if o.sheet not in wb.sheets:
            raise UserError(f"--set {o}: the workbook has no sheet {o.sheet!r}")
        wb.sheets[o.sheet].put(o.row - 1, o.col - 1, o.value)
    try:
        groups = order_groups(compile_groups(wb, FUNCTIONS))
    except FormulaError as e:
        raise UserError(str(e)) from None
    total = sum(len(g) for g in groups)
    with Progress(total=total, desc="evaluating formulas", enabled=progress) as bar:
        for g in groups:
            try:
                evaluate_group(wb.sheets, g)
            except EvalError as e:
                raise UserError(f"cannot evaluate cell {g.first_cell()} (formula ={shorten(g.source)}): {e}") from None
            bar.update(len(g))
    return FastBook(wb)


__all__ = ["Binary", "Bool", "Call", "CompileError", "Err", "EvalError", "FUNCTIONS", "FastBook", "FileBook",
           "FileError", "FileStructure", "FormulaError", "Function", "MAX_FORMULA_CHARS", "Missing", "Name", "Num",
           "REGISTRY", "Ref", "Str", "Unary", "Workbook", "allow_deep_formulas", "compile_groups", "evaluate_fast",
           "order_groups", "parse", "parse_ref", "read_workbook", "shorten"]
