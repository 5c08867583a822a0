"""Formula engines: evaluate an .xlsx from its formulas alone (never cached values).

An engine knows nothing of the builder or the reference: its input is a file, its output
an `EvaluatedBook`: the value of every cell (`value`, `numbers`, `block`), and the file's
sheets, defined names and formulas, read the same way whichever engine computed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import UserError

from .base import CellOverride, CellValueError, EvaluatedBook, FormulaCell

ENGINES = ("fast", "formulas", "libreoffice", "ironcalc", "gnumeric")


def evaluate(path: str | Path, engine: str = "fast", progress: bool | None = None,
             overrides: Sequence[CellOverride] = ()) -> EvaluatedBook:
    """Recalculate every formula of the workbook at `path` with the named engine, as if the
    cells of `overrides` held their values (our own engine only: the others read files)."""
    if overrides and engine != "fast":
        raise UserError(f"--set and --prompt work with the fast engine (the default), not with --engine {engine}: "
                        "to try a change there, type it into the book and save it")
    if engine == "fast":
        from .fast import evaluate_fast
        return evaluate_fast(Path(path), progress, overrides)
    if engine == "libreoffice":
        from .libreoffice import evaluate_with_libreoffice
        return evaluate_with_libreoffice(Path(path), progress)
    if engine == "formulas":
        from .formulas_engine import evaluate_with_formulas
        return evaluate_with_formulas(Path(path), progress)
    if engine == "ironcalc":
        from .peers import evaluate_with_ironcalc
        return evaluate_with_ironcalc(Path(path), progress)
    if engine == "gnumeric":
        from .peers import evaluate_with_gnumeric
        return evaluate_with_gnumeric(Path(path), progress)
    raise ValueError(f"unknown engine {engine!r}: choose from {', '.join(ENGINES)}")


__all__ = ["CellOverride", "CellValueError", "EvaluatedBook", "ENGINES", "FormulaCell", "evaluate"]
