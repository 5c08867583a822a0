"""The `formulas` package (PyPI) as an engine: fine for small books, far too slow for big ones.

Known limits of formulas 1.3.4: MMULT(INDEX(rng,r,0),INDEX(rng,0,c)) evaluates wrongly and
a formula referring to its own cell fails; sheetgpt's workbooks use neither.
"""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from ..errors import UserError
from .base import EvaluatedBook

_CELL_KEY = re.compile(r"^'\[[^\]]*\](.*)'!([A-Z]+)([0-9]+)$")


def _col_number(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


class FormulasBook(EvaluatedBook):
    def __init__(self, values: dict[tuple[str, int, int], object]):
        self._values = values

    def value(self, sheet: str, row: int, col: int) -> object:
        return self._values.get((sheet.upper(), row, col))


def _check_functions(path: Path) -> None:
    """The formulas package turns an unknown function into #NAME? silently; name it instead,
    using the fast engine's parser (which knows which functions are supported)."""
    from .fast import FUNCTIONS, compile_groups, read_workbook
    from .fast.parser import FormulaError
    try:
        compile_groups(read_workbook(path, workers=0), FUNCTIONS)
    except FormulaError as e:
        raise UserError(str(e)) from None


def evaluate_with_formulas(path: Path, progress: bool | None = None) -> FormulasBook:
    _check_functions(path)
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
        values[(m.group(1), int(m.group(3)), _col_number(m.group(2)))] = v
    return FormulasBook(values)
