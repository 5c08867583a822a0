"""The `formulas` package (PyPI) as an engine: fine for small books, far too slow for big ones.

Known limits of formulas 1.3.4: MMULT(INDEX(rng,r,0),INDEX(rng,0,c)) evaluates wrongly, a
formula referring to its own cell fails, and array formulas over ranges stay empty: a book
of them (the default form) is refused, the cells form is computed.
"""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from ..a1 import col_number
from ..errors import UserError
from .base import refuse_array_formulas
from .fast import FUNCTIONS, FileBook, FileStructure, FormulaError, compile_groups, read_workbook

_CELL_KEY = re.compile(r"^'\[[^\]]*\](.*)'!([A-Z]+)([0-9]+)$")


class FormulasBook(FileBook):
    def __init__(self, values: dict[tuple[str, int, int], object], structure: FileStructure):
        super().__init__(structure)
        self._values = values

    def value(self, sheet: str, row: int, col: int) -> object:
        return self._values.get((sheet.upper(), row, col))


def _read_formulas(path: Path) -> FileStructure:
    """The file's formulas, read by the fast engine's reader. The formulas package turns an
    unknown function into #NAME? silently; name it instead, with the fast engine's compiler
    (which knows which functions are supported)."""
    wb = read_workbook(path, workers=0)
    try:
        compile_groups(wb, FUNCTIONS)
    except FormulaError as e:
        raise UserError(str(e)) from None
    return FileStructure.of(wb)


def evaluate_with_formulas(path: Path, progress: bool | None = None) -> FormulasBook:
    structure = _read_formulas(path)
    refuse_array_formulas(structure, "the formulas engine", path)
    import formulas
    import schedula as sh
    from formulas.tokens.operand import XlError

    noise = io.StringIO()  # formulas prints tqdm bars of its own; keep stderr for ours
    try:
        with contextlib.redirect_stderr(noise):
            model = formulas.ExcelModel().loads(str(path)).finish()
            solution = model.calculate()
    except Exception as e:  # the package raises many kinds; all mean "cannot evaluate this file"
        raise UserError(f"the formulas engine cannot evaluate {path}: {type(e).__name__}: {e}") from None
    values: dict[tuple[str, int, int], object] = {}
    for key, rng in solution.items():
        m = _CELL_KEY.match(str(key))
        if not m:
            continue  # ranges and defined names; their cells are listed on their own too
        v = rng.value[0, 0] if hasattr(rng, "value") else rng
        if v is sh.EMPTY:
            v = None
        elif isinstance(v, XlError):
            v = str(v)
        elif hasattr(v, "item"):  # numpy scalar
            v = v.item()
        values[(m.group(1), int(m.group(3)), col_number(m.group(2)))] = v
    return FormulasBook(values, structure)
