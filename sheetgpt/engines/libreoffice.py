"""LibreOffice headless as an engine: a real spreadsheet program recalculates the workbook.

LibreOffice runs in a subprocess with a throw-away profile set to always recalculate, so
no cached value is ever used; `lo_uno.py` (run by the system Python, which has `uno`)
dumps every sheet that holds formulas at full precision. Sheets of constants (weights)
are read by our own reader: they are the same in any program. So are the formulas: the
book's formulas and structure are the file's, as our reader reads them.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserError
from .base import CellOverride, edits
from .fast import FastBook, FileStructure, type_into
from .fast.reader import EMPTY, ERR, NUM, STR, Sheet, read_workbook

INSTALL_HINT = ("install it with: apt-get install -y --no-install-recommends libreoffice-calc-nogui python3-uno "
                "(Debian/Ubuntu)")
UNO_PYTHONS = ("/usr/bin/python3", "/usr/lib/libreoffice/program/python")
DEFAULT_TIMEOUT = 1800.0


def find_libreoffice() -> tuple[str, str]:
    """soffice and a Python that can import uno, or a UserError saying how to install them."""
    soffice = shutil.which("soffice")
    if soffice is None:
        raise UserError(f"LibreOffice (soffice) is not installed; {INSTALL_HINT}")
    for python in UNO_PYTHONS:
        if os.path.exists(python) and subprocess.run([python, "-c", "import uno"], capture_output=True).returncode == 0:
            return soffice, python
    raise UserError(f"LibreOffice's Python bridge (uno) is missing; {INSTALL_HINT}")


def evaluate_with_libreoffice(path: Path, progress: bool | None = None, timeout: float = DEFAULT_TIMEOUT,
                              overrides: Sequence[CellOverride] = ()) -> FastBook:
    """The book as LibreOffice computes it on a fresh open; `overrides`: then typed into
    their cells (as a person types) and recalculated."""
    wb = read_workbook(path)  # the constants
    type_into(wb, overrides)
    structure = FileStructure.of(wb)  # the formulas, kept: LibreOffice's dumps hold values only
    names = [name for name, s in structure.sheets.items() if s.single_cell or s.shared]
    with tempfile.TemporaryDirectory(prefix="sheetgpt-lo-") as tmp:
        tmp_path = Path(tmp)
        if overrides:
            (tmp_path / "edits.json").write_text(json.dumps(edits(overrides)))
        _run_libreoffice(path, tmp_path, names, None, timeout)
        for i, name in enumerate(names):
            wb.sheets[name] = _load_dump(name, tmp_path / str(i))
    return FastBook(wb, structure)


Rect = tuple[str, int, int, int, int]  # sheet, first row, first col (1-based), n_rows, n_cols


def recalculate_with_libreoffice(path: Path, runs: list[list[CellOverride]], read: list[Rect],
                                 timeout: float = DEFAULT_TIMEOUT) -> list[list[list[list[object]]]]:
    """For each run, type its values into the book in LibreOffice (one after the other, as a
    person would), recalculate, and read the rectangles: values[run][rect][row][col]."""
    spec = {"runs": [edits(run) for run in runs],
            "read": [[s, r - 1, c - 1, h, w] for s, r, c, h, w in read]}
    with tempfile.TemporaryDirectory(prefix="sheetgpt-lo-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "runs.json").write_text(json.dumps(spec))
        _run_libreoffice(path, tmp_path, [], tmp_path / "runs.json", timeout)
        return [json.loads((tmp_path / f"run{i}.json").read_text()) for i in range(len(runs))]


def _run_libreoffice(path: Path, tmp_path: Path, names: list[str], runs: Path | None, timeout: float) -> None:
    _, python = find_libreoffice()
    tmp = str(tmp_path)
    (tmp_path / "sheets.json").write_text(json.dumps(names))
    script = Path(__file__).with_name("lo_uno.py")
    proc = subprocess.Popen([python, str(script), str(Path(path).resolve()), tmp, str(tmp_path / "profile"),
                             str(tmp_path / "sheets.json"), *([str(runs)] if runs else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise UserError(f"LibreOffice did not finish recalculating {path} within {timeout:.0f} s") from None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"LibreOffice failed on {path}: {last}")


def _load_dump(name: str, base: Path) -> Sheet:
    meta = json.loads(base.with_suffix(".json").read_text())
    shape = tuple(meta["shape"])
    num = np.fromfile(base.with_suffix(".bin"), dtype=np.float64).reshape(shape)
    kind = np.where(np.isnan(num), EMPTY, NUM).astype(np.uint8)
    text: dict[tuple[int, int], str] = {}
    for key, value in meta["texts"].items():
        r, c = map(int, key.split(","))
        kind[r, c], text[(r, c)] = STR, value
    for key, value in meta["errors"].items():
        r, c = map(int, key.split(","))
        kind[r, c], text[(r, c)] = ERR, value
        num[r, c] = np.nan
    return Sheet(name, num, kind, text, [], {})
