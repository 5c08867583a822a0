"""LibreOffice headless as an engine: a real spreadsheet program recalculates sheetgpt's
workbooks to the reference, and a broken formula is named through it too.

CI installs LibreOffice (.ci/run); elsewhere these tests are skipped with a reason."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.libreoffice,
              pytest.mark.skipif(shutil.which("soffice") is None,
                                 reason="LibreOffice is not installed (apt-get install libreoffice-calc-nogui "
                                        "python3-uno)")]


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory) -> Path:
    from sheetgpt.builder import build_workbook
    from sheetgpt.load import load_model

    path = tmp_path_factory.mktemp("lo") / "tiny.xlsx"
    build_workbook(load_model("tiny"), "Mike is quick. He moves", path, progress=False)
    return path


@pytest.fixture(scope="module")
def tiny_report(tiny_book):
    from sheetgpt.check import check_workbook
    return check_workbook(tiny_book, engine="libreoffice")


def test_libreoffice_recalculates_tiny_to_the_reference(tiny_report):
    assert tiny_report.ok, tiny_report.first_failure
    assert len(tiny_report.steps) > 40
    assert max(s.max_rel_err for s in tiny_report.steps) <= 1e-9


def test_libreoffice_logits_match_an_independent_forward(tiny_book):
    """LibreOffice's logits against the float64 forward pass written in the tests (helpers)."""
    from helpers import gpt2_forward
    from sheetgpt.readback import load_book
    from sheetgpt.load import load_model

    book = load_book(tiny_book, engine="libreoffice")
    blk = book.layout.blocks["logits"]
    logits = book.values.block(blk.sheet, blk.row, blk.col, blk.n_rows, 1)[:, 0]
    # the reference from the values the book holds (8-9 digit decimals of the float32 weights)
    expected = gpt2_forward(book.weights.params, book.ids, book.layout.cfg.n_head)["logits"]
    assert np.abs(logits - expected).max() / np.abs(expected).max() <= 1e-9
    model = load_model("tiny")
    assert book.ids == model.tokenizer.encode("Mike is quick. He moves")


def test_broken_formula_is_named_through_libreoffice(tiny_book, tmp_path):
    """Change the GELU constant of layer 0 in its shared formula: the failure names h0_gelu."""
    from sheetgpt.check import check_workbook
    from sheetgpt.readback import read_defined_names

    sheets, _ = read_defined_names(tiny_book)
    part = f"xl/worksheets/sheet{sheets.index('h0 gelu') + 1}.xml"
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(tiny_book) as src, zipfile.ZipFile(broken, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == part:
                assert b"0.044715" in data
                data = data.replace(b"0.044715", b"0.0447", 1)
            dst.writestr(info, data)
    report = check_workbook(broken, engine="libreoffice")
    assert not report.ok
    assert report.first_failure["step"] == "h0_gelu" and report.first_failure["sheet"] == "h0 gelu"


def test_cli_engine_libreoffice(tiny_book):
    r = subprocess.run([sys.executable, "-m", "sheetgpt", "eval", str(tiny_book), "--engine", "libreoffice",
                        "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '"top"' in r.stdout


def test_missing_libreoffice_is_one_clear_line(tiny_book, tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}  # no soffice on PATH
    r = subprocess.run([sys.executable, "-m", "sheetgpt", "check", str(tiny_book), "--engine", "libreoffice"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "apt-get install" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_lint_runs_on_the_formulas_with_libreoffice(small_book, tmp_path):
    """A residual that reads the embedding through a two-row range: an implicit intersection
    that Excel 2010 and LibreOffice compute as before (each cell takes its own row), but that
    Excel 365 spills. The values still match, so only the lint can fail the book, and it must
    with LibreOffice as the engine too (whose book once had no formulas left to lint)."""
    from helpers import cell_address, defined_names, edit_formula, range_box, rewrite_part, sheet_parts
    from sheetgpt.check import check_workbook

    sheet, ref = defined_names(small_book)["h0_resid_1"]
    r0, c0, _, _ = range_box(ref)
    path = tmp_path / "intersection.xlsx"
    rewrite_part(small_book, path, sheet_parts(small_book)[sheet],
                 lambda xml: edit_formula(xml, cell_address(r0, c0), "'embed'!B3+", "'embed'!B3:B4+"))
    report = check_workbook(path, engine="libreoffice")
    assert all(step.ok for step in report.steps), [s for s in report.steps if not s.ok]
    assert [(f.rule, f.sheet, f.cell) for f in report.lint] == [("implicit-intersection", sheet,
                                                                 cell_address(r0, c0))]
    assert not report.ok and report.first_failure == {"step": "lint", "sheet": sheet, "cell": cell_address(r0, c0)}
    assert report.lint == check_workbook(path, engine="fast").lint


def test_libreoffice_book_gives_the_files_formulas(small_book):
    """Its values come from LibreOffice, its formulas and extents from the file: the same as
    the fast engine's book, though LibreOffice's dumps of the formula sheets hold values only."""
    from sheetgpt.engines import evaluate

    lo, fast = evaluate(small_book, engine="libreoffice"), evaluate(small_book, engine="fast")
    assert lo.sheet_names() == fast.sheet_names() and lo.defined_names() == fast.defined_names()
    for sheet in fast.sheet_names():
        n_rows, n_cols = fast.shape(sheet)
        assert lo.shape(sheet) == (n_rows, n_cols)
        assert lo.formulas(sheet) == fast.formulas(sheet)
        assert lo.formula_cells(sheet, n_rows, n_cols) == fast.formula_cells(sheet, n_rows, n_cols)
    assert sum(len(lo.formulas(sheet)) for sheet in lo.sheet_names()) > 50


def test_a_sheet_of_array_formulas_only_is_recalculated(tmp_path):
    """A sheet whose only formulas are (single-cell) array formulas is dumped too."""
    import openpyxl
    from openpyxl.worksheet.formula import ArrayFormula

    from sheetgpt.engines import evaluate

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "data"
    for r, v in enumerate((1.0, 2.0, 3.0), start=1):
        ws.cell(r, 1, v)
    wb.create_sheet("arrays")["B2"] = ArrayFormula("B2", "=SUM(data!A1:A3*data!A1:A3)")
    path = tmp_path / "arrays.xlsx"
    wb.save(path)
    book = evaluate(path, engine="libreoffice")
    assert book.value("arrays", 2, 2) == 14.0 == evaluate(path, engine="fast").value("arrays", 2, 2)
    assert [(f.row, f.col, f.text, f.n_cells, f.shared) for f in book.formulas("arrays")] == \
        [(2, 2, "SUM(data!A1:A3*data!A1:A3)", 1, False)]
