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
             overrides: Sequence[CellOverride] = (), lenient: bool = False) -> EvaluatedBook:
    """Recalculate every formula of the workbook at `path` with the named engine, as if the
    cells of `overrides` held their values (LibreOffice and IronCalc: typed in after a
    fresh open, through the program; Gnumeric: written into the file it opens).
    `lenient`: a formula our engine cannot compute shows #VALUE! instead of raising (the
    other programs show their own error values anyway)."""
    if overrides and engine == "formulas":
        raise UserError("--set and --prompt do not work with --engine formulas: type the change into the book and "
                        "save it, or use another engine")
    if engine == "fast":
        from .fast import evaluate_fast
        return evaluate_fast(Path(path), progress, overrides, lenient)
    if engine == "libreoffice":
        from .libreoffice import evaluate_with_libreoffice
        return evaluate_with_libreoffice(Path(path), progress, overrides=overrides)
    if engine == "formulas":
        from .formulas_engine import evaluate_with_formulas
        return evaluate_with_formulas(Path(path), progress)
    if engine == "ironcalc":
        from .peers import evaluate_with_ironcalc
        return evaluate_with_ironcalc(Path(path), progress, overrides=overrides)
    if engine == "gnumeric":
        from .peers import evaluate_with_gnumeric
        return evaluate_with_gnumeric(Path(path), progress, overrides=overrides)
    raise ValueError(f"unknown engine {engine!r}: choose from {', '.join(ENGINES)}")


__all__ = ["CellOverride", "CellValueError", "EvaluatedBook", "ENGINES", "FormulaCell", "evaluate"]
