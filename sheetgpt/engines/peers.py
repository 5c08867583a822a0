"""Other spreadsheet programs as engines: IronCalc (PyPI `ironcalc`) and Gnumeric
(`ssconvert`). Each recalculates the file in a subprocess and writes an .xlsx with the
values it computed; the formula sheets' values are read back from that file, the
constants and the formulas from the original by our own reader (as for LibreOffice).

Both need every cell to carry its address (r=): IronCalc refuses a file without, and
Gnumeric 1.12 silently misplaces such cells, so a compact book is refused up front.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence
from xml.etree import ElementTree

from ..a1 import cell_name
from ..errors import UserError
from .base import CellOverride, edits, refuse_array_formulas
from .fast import FastBook, FileStructure, type_into
from .fast.reader import Sheet, read_workbook

DEFAULT_TIMEOUT = 1800.0
# IronCalc prints a line per formula cell without a cached value on stdout: run it silenced.
# Typed values (JSON [[sheet, row, col, value], ...], 0-based) go in after the first
# evaluation, through IronCalc's own API, as a person types into the opened book.
_IRONCALC = """
import json, sys, ironcalc
model = ironcalc.load_from_xlsx(sys.argv[1], "en", "UTC")
model.evaluate()
edits = json.loads(sys.argv[3])
if edits:
    sheets = [p["name"] for p in model.get_worksheets_properties()]
    for sheet, row, col, value in edits:
        at = (sheets.index(sheet), row + 1, col + 1)
        model.update_cell_with_text(*at, value) if isinstance(value, str) else model.update_cell_with_number(*at, value)
    model.evaluate()
model.save_to_xlsx(sys.argv[2])
"""


def evaluate_with_ironcalc(path: Path, progress: bool | None = None, timeout: float = DEFAULT_TIMEOUT,
                           overrides: Sequence[CellOverride] = ()) -> FastBook:
    if importlib.util.find_spec("ironcalc") is None:
        raise UserError("IronCalc is not installed; install it with: pip install ironcalc")
    typed = json.dumps(edits(overrides))
    return _recalculated(path, "IronCalc", lambda src, dst: [sys.executable, "-c", _IRONCALC, src, dst, typed],
                         timeout, overrides, array_formulas=False)


def evaluate_with_gnumeric(path: Path, progress: bool | None = None, timeout: float = DEFAULT_TIMEOUT,
                           overrides: Sequence[CellOverride] = ()) -> FastBook:
    """Gnumeric's ssconvert cannot be typed into: the values are written into the copy of
    the file it opens, as a book saved after typing them."""
    ssconvert = shutil.which("ssconvert")
    if ssconvert is None:
        raise UserError("Gnumeric (ssconvert) is not installed; install it with: apt-get install -y gnumeric")
    return _recalculated(path, "Gnumeric",
                         lambda src, dst: [ssconvert, "--recalc", "-T", "Gnumeric_Excel:xlsx2", src, dst], timeout,
                         overrides, typed_into_file=True)


def _recalculated(path: Path, program: str, command, timeout: float, overrides: Sequence[CellOverride] = (),
                  typed_into_file: bool = False, array_formulas: bool = True) -> FastBook:
    """array_formulas: whether the program computes array formulas over ranges right
    (IronCalc 0.9.1 does not: #VALUE!, or numbers off)."""
    if not every_cell_named(path):
        raise UserError(f"{path} has cells without their address (built with --compact): {program} cannot read "
                        "it correctly; build it without --compact")
    wb = read_workbook(path)  # the constants
    type_into(wb, overrides)
    structure = FileStructure.of(wb)  # the formulas: the other program's file holds values only
    if not array_formulas:
        refuse_array_formulas(structure, program, path)
    with tempfile.TemporaryDirectory(prefix="sheetgpt-peer-") as tmp:
        out = Path(tmp) / "values.xlsx"
        if overrides and typed_into_file:
            path = with_values(path, overrides, Path(tmp) / "typed.xlsx")
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


def with_values(path: Path, overrides: Sequence[CellOverride], out: Path) -> Path:
    """A copy of the book with these cells holding these values (each must be in the file)."""
    parts = sheet_parts(path)
    with zipfile.ZipFile(path) as src:
        edited: dict[str, str] = {}
        for o in overrides:
            part = parts[o.sheet]
            xml = edited[part] if part in edited else src.read(part).decode("utf-8")
            ref = cell_name(o.row, o.col)
            cell = re.search(rf'<c r="{ref}"(?: [^>]*?)?(?:/>|>.*?</c>)', xml, re.S)
            if cell is None:
                raise UserError(f"--set {o}: {ref} is not a cell of the file's sheet {o.sheet!r}")
            value = (f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{_escape_text(o.value)}</t></is></c>'
                     if isinstance(o.value, str) else f'<c r="{ref}"><v>{o.value!r}</v></c>')
            edited[part] = xml[:cell.start()] + value + xml[cell.end():]
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
            for info in src.infolist():
                dst.writestr(info, edited[info.filename].encode("utf-8") if info.filename in edited else src.read(info))
    return out


def _escape_text(text: str) -> str:
    """Text for an XML text node, control characters as OOXML's _xHHHH_ (XML turns a CR into LF)."""
    text = re.sub(r"[\x00-\x08\x0b-\x1f]|_(?=x[0-9A-Fa-f]{4}_)", lambda m: "_x%04X_" % ord(m.group()), text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sheet_parts(path: Path) -> dict[str, str]:
    """Sheet name -> its part in the zip (xl/worksheets/...)."""
    ns = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    rel = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
    with zipfile.ZipFile(path) as z:
        book = ElementTree.fromstring(z.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(z.read("xl/_rels/workbook.xml.rels"))
    targets = {r.get("Id"): r.get("Target", "") for r in rels}
    return {s.get("name"): "xl/" + targets[s.get(rel)].lstrip("/").removeprefix("xl/")
            for s in book.iter(ns + "sheet")}


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
