"""Other spreadsheet programs as engines: IronCalc (PyPI `ironcalc`) and Gnumeric
(`ssconvert`). Each recalculates the file in a subprocess and writes an .xlsx with the
values it computed; the formula sheets' values are read back from that file, the
constants and the formulas from the original by our own reader (as for LibreOffice).

Both need every cell to carry its address (r=): IronCalc refuses a file without, and
Gnumeric 1.12 silently misplaces such cells, so a compact book is refused up front.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import UserError
from .fast import FastBook, FileStructure
from .fast.reader import Sheet, read_workbook

DEFAULT_TIMEOUT = 1800.0
# IronCalc prints a line per formula cell without a cached value on stdout: run it silenced
_IRONCALC = """
import sys, ironcalc
model = ironcalc.load_from_xlsx(sys.argv[1], "en", "UTC")
model.evaluate()
model.save_to_xlsx(sys.argv[2])
"""


def evaluate_with_ironcalc(path: Path, progress: bool | None = None, timeout: float = DEFAULT_TIMEOUT) -> FastBook:
    if importlib.util.find_spec("ironcalc") is None:
        raise UserError("IronCalc is not installed; install it with: pip install ironcalc")
    return _recalculated(path, "IronCalc", lambda src, dst: [sys.executable, "-c", _IRONCALC, src, dst], timeout)


def evaluate_with_gnumeric(path: Path, progress: bool | None = None, timeout: float = DEFAULT_TIMEOUT) -> FastBook:
    ssconvert = shutil.which("ssconvert")
    if ssconvert is None:
        raise UserError("Gnumeric (ssconvert) is not installed; install it with: apt-get install -y gnumeric")
    return _recalculated(path, "Gnumeric",
                         lambda src, dst: [ssconvert, "--recalc", "-T", "Gnumeric_Excel:xlsx2", src, dst], timeout)


def _recalculated(path: Path, program: str, command, timeout: float) -> FastBook:
    if not every_cell_named(path):
        raise UserError(f"{path} has cells without their address (built with --compact): {program} cannot read "
                        "it correctly; build it without --compact")
    wb = read_workbook(path)  # the constants
    structure = FileStructure.of(wb)  # the formulas: the other program's file holds values only
    with tempfile.TemporaryDirectory(prefix="sheetgpt-peer-") as tmp:
        out = Path(tmp) / "values.xlsx"
        try:
            proc = subprocess.run(command(str(Path(path).resolve()), str(out)), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, timeout=timeout, env=_quiet_env())
        except subprocess.TimeoutExpired:
            raise UserError(f"{program} did not finish recalculating {path} within {timeout:.0f} s") from None
        if proc.returncode != 0 or not out.is_file():
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise UserError(f"{program} failed on {path}: {last[:300]}")
        formula_sheets = [name for name, s in structure.sheets.items() if s.single_cell or s.shared]
        for name, sheet in _cached_values(out, formula_sheets).items():
            wb.sheets[name] = sheet
    return FastBook(wb, structure)


def every_cell_named(path: Path, probe: int = 1 << 16) -> bool:
    """Whether the first sheet with data gives every cell its r= (sheetgpt writes all or
    only a few; other writers name every cell)."""
    with zipfile.ZipFile(path) as z:
        for name in sorted(n for n in z.namelist() if n.startswith("xl/worksheets/sheet")):
            with z.open(name) as f:
                head = f.read(probe)
            if b"<c" in head:
                return head.count(b"<c ") + head.count(b"<c>") == head.count(b'<c r="')
    return True


def _cached_values(path: Path, sheets: list[str]) -> dict[str, Sheet]:
    """The values another program stored for these sheets, as our reader's Sheets."""
    return read_workbook(path, cached=True, only=set(sheets)).sheets


def _quiet_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HOME", tempfile.gettempdir())  # Gnumeric writes its settings there
    return env
