"""Books saved again by other programs (LibreOffice, openpyxl, Gnumeric), each with its own
XML: cached values, r= on every cell, shared strings, its own spelling of formulas and
sheet names. check reads them from their formulas alone: unchanged they pass, one edit
fails naming its place, and their cached values are never used."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import rewrite_part, run_cli, sheet_parts

WRITERS = ["libreoffice", "openpyxl", "gnumeric"]


def _resave(writer: str, book: Path, work: Path) -> Path:
    out = work / f"{writer}.xlsx"
    if writer == "openpyxl":
        import openpyxl

        openpyxl.load_workbook(book).save(out)
    elif writer == "gnumeric":
        if shutil.which("ssconvert") is None:
            pytest.skip("Gnumeric (ssconvert) is not installed: apt-get install gnumeric")
        subprocess.run(["ssconvert", str(book), str(out)], capture_output=True, timeout=240, check=True)
    else:
        soffice = shutil.which("soffice")
        if soffice is None:
            pytest.skip("LibreOffice (soffice) is not installed")
        cmd = [soffice, f"-env:UserInstallation={(work / 'profile').as_uri()}", "--headless", "--norestore",
               "--convert-to", "xlsx", "--outdir", str(work / "lo"), str(book)]
        subprocess.run(cmd, capture_output=True, timeout=240, check=True, env=dict(os.environ, HOME=str(work)))
        (work / "lo" / book.name).rename(out)
    assert out.read_bytes() != book.read_bytes()
    return out


@pytest.fixture(scope="module", params=WRITERS)
def resaved(request, small_book: Path, tmp_path_factory) -> Path:
    return _resave(request.param, small_book, tmp_path_factory.mktemp(request.param))


def _cell(xml: str, address: str) -> re.Match:
    m = re.search(rf'<c r="{address}"[^>]*?(?:/>|>.*?</c>)', xml, re.S)
    assert m, address
    return m


def _edit_formula(xml: str, address: str, old: str, new: str) -> str:
    m = _cell(xml, address)
    cell = m.group(0)
    assert old in cell, cell
    return xml[:m.start()] + cell.replace(old, new, 1) + xml[m.end():]


def _check(path: Path, tmp_path: Path) -> tuple[int, dict]:
    r = run_cli("check", str(path), "--json", cwd=tmp_path)
    return r.returncode, json.loads(r.stdout)


def test_a_book_saved_by_another_program_checks(resaved: Path, tmp_path: Path):
    code, report = _check(resaved, tmp_path)
    assert code == 0 and report["ok"], report["first_failure"]
    assert len(report["steps"]) > 20 and report["foreign"] == [] and report["labels"] == []
    # the Guide's chart came through, its series still reading the top 5 (check compared them)
    assert not [line for line in report["inputs"] if line.startswith("chart ")], report["inputs"]


@pytest.mark.parametrize("sheet,cell,old,new,step", [
    ("prediction", "E8", "B8+1", "B8-1", "top_text"),  # the top token's text: the Guide shows it too
    ("logits", "C3", "$D$5:", "$D$6:", "logits"),  # a column of logits (one array) reads the next position
    ("h0 ln_1", "A4", "$C$4", "$C$5", "position_labels"),
])
def test_one_edit_in_a_resaved_book_is_named(resaved: Path, tmp_path: Path, sheet, cell, old, new, step):
    """The edit leaves the copy's cached value for the cell as it was: check must not read it."""
    path = tmp_path / "edited.xlsx"
    rewrite_part(resaved, path, sheet_parts(resaved)[sheet], lambda xml: _edit_formula(xml, cell, old, new))
    code, report = _check(path, tmp_path)
    assert code == 1 and report["first_failure"] == {"step": step, "sheet": sheet, "cell": cell}


def test_cached_values_are_never_used(resaved: Path, tmp_path: Path):
    """Every formula's cached value on the logits and prediction sheets set to 7: the book
    still checks, and eval still predicts what the unchanged book predicts."""
    def poison_cell(m: re.Match) -> str:
        cell = m.group(0)
        if "<f" not in cell:
            return cell
        cell = re.sub(r"<v>[^<]*</v>|<v\s*/>", "", cell)
        cell = re.sub(r'^(<c\b[^>]*?) t="(?:s|str|e|b)"', r"\1", cell)  # the cached value is a number now
        return cell.replace("</c>", "<v>7</v></c>")

    def poison(xml: str) -> str:
        new = re.sub(r"<c\b[^>]*?(?:/>|>.*?</c>)", poison_cell, xml, flags=re.S)
        assert new.count("<v>7</v>") > 5
        return new

    parts = sheet_parts(resaved)
    step1, path = tmp_path / "poisoned1.xlsx", tmp_path / "poisoned.xlsx"
    rewrite_part(resaved, step1, parts["logits"], poison)
    rewrite_part(step1, path, parts["prediction"], poison)
    code, report = _check(path, tmp_path)
    assert code == 0, report["first_failure"]
    want = run_cli("eval", str(resaved), "--json", cwd=tmp_path)
    got = run_cli("eval", str(path), "--json", cwd=tmp_path)
    assert got.returncode == 0 and json.loads(got.stdout)["top"] == json.loads(want.stdout)["top"]
