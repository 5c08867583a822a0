"""The portability lint on workbooks written by hand, one flagged construct each, and on
the builder's own workbooks (which must be clean)."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import openpyxl
import pytest
from openpyxl.workbook.defined_name import DefinedName

from sheetgpt.lint import lint_path


def write(path: Path, cells: dict[str, object], sheet: str = "S", names: dict[str, str] | None = None,
          more_sheets: tuple[str, ...] = ()) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    for address, value in cells.items():
        ws[address] = value
    for name in more_sheets:
        wb.create_sheet(name)
    for name, target in (names or {}).items():
        wb.defined_names[name] = DefinedName(name, attr_text=target)
    wb.save(path)
    return path


BASE = {"A1": 1, "A2": 2, "A3": 3}


@pytest.mark.parametrize("formula,rule", [
    ("=SUM(EXP(A1:A3-1))", "implicit-intersection"),  # LibreOffice's SUM of an array expression trap
    ("=A1:A3*2", "implicit-intersection"),
    ("=EXP(A1:A3)", "implicit-intersection"),
    ("=A1:A3", "implicit-intersection"),
    # Gnumeric 1.12 intersects a scalar function's range argument even inside SUMPRODUCT
    ("=SUMPRODUCT(EXP(A1:A3-1))", "elementwise-function"),
    ("=MMULT(TANH(A1:C1),A1:A3)", "elementwise-function"),
    ("=VAR.P(A1:A3)", "xlfn-prefix"),
    ("=STDEV.S(A1:A3)", "xlfn-prefix"),
    ('=WEBSERVICE("http://example.invalid")', "function"),
    ("=OFFSET(A1,1,1)", "function"),
    ('=LET(x,1,x+1)', "xlfn-prefix"),
    ("=" + "+".join(["A1"] * 2800), "formula-length"),
])
def test_flagged_formulas(tmp_path, formula, rule):
    findings = lint_path(write(tmp_path / "b.xlsx", dict(BASE, B5=formula)))
    assert rule in {f.rule for f in findings}, findings
    assert all(f.sheet == "S" and f.cell == "B5" for f in findings if f.rule == rule)


@pytest.mark.parametrize("formula", [
    "=SUMPRODUCT(EXP(A1-1)*A1:A3)",
    "=SUMPRODUCT((A1:A3-A2)^2)/3",
    "=MMULT(A1:C1,A1:A3)",
    "=SUM(A1:A3)+MAX(A1:A3)",
    "=INDEX(A1:A3,2)+MATCH(2,A1:A3,0)+LARGE(A1:A3,1)",
    "=_xlfn.VAR.P(A1:A3)",
    "=IF(A1>0,SQRT(A2),TANH(A3))*PI()",
])
def test_portable_formulas_are_clean(tmp_path, formula):
    assert lint_path(write(tmp_path / "b.xlsx", dict(BASE, B5=formula))) == []


def test_bad_sheet_and_defined_names(tmp_path):
    findings = lint_path(write(tmp_path / "b.xlsx", BASE, more_sheets=("History",),
                               names={"R1C1": "S!$A$1", "ok_name": "S!$A$1", "AB12": "S!$A$2"}))
    messages = " ".join(f.message for f in findings)
    assert {f.rule for f in findings} == {"sheet-name", "defined-name"}
    assert "'History'" in messages and "'R1C1'" in messages and "'AB12'" in messages
    assert "ok_name" not in messages


def test_sheet_name_too_long_and_columns_past_excel(tmp_path):
    """Written by hand: openpyxl refuses both."""
    path = write(tmp_path / "b.xlsx", BASE)
    with zipfile.ZipFile(path) as z:
        parts = {name: z.read(name) for name in z.namelist()}
    parts["xl/workbook.xml"] = parts["xl/workbook.xml"].replace(b'name="S"', b'name="' + b"x" * 40 + b'"')
    sheet = parts["xl/worksheets/sheet1.xml"]
    parts["xl/worksheets/sheet1.xml"] = sheet.replace(b"</sheetData>",
                                                      b'<row r="9"><c r="XFE9"><v>1</v></c></row></sheetData>')
    with zipfile.ZipFile(path, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    rules = {f.rule for f in lint_path(path)}
    assert rules == {"sheet-name", "sheet-size"}


def test_builder_books_are_clean(tmp_path):
    from sheetgpt.builder import build_workbook
    from sheetgpt.load import load_model

    path = tmp_path / "tiny.xlsx"
    build_workbook(load_model("tiny"), "Mike is quick. He moves", path, progress=False)
    assert lint_path(path) == []


def test_lint_command(tmp_path):
    bad = write(tmp_path / "bad.xlsx", dict(BASE, B5="=SUM(EXP(A1:A3))"))
    good = write(tmp_path / "good.xlsx", dict(BASE, B5="=SUMPRODUCT(A1:A3*A1:A3)"))
    run = lambda *a: subprocess.run([sys.executable, "-m", "sheetgpt", "lint", *a], capture_output=True, text=True)
    r = run(str(bad), "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["findings"][0]["cell"] == "B5"
    r = run(str(good))
    assert r.returncode == 0 and "clean" in r.stdout
    r = run(str(tmp_path / "missing.xlsx"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("formula, flagged", [
    ("INDEX($A$1:$E$1,3)", True),  # Gnumeric: row 3 of a one-row range, #REF!
    ("INDEX('s'!$A1:$E1,MATCH(2,$A2:$E2,0))", True),
    ("INDEX($A$1:$E$1,1,3)", False),  # what the book writes
    ("INDEX($A$1:$A$5,3)", False),  # a column: every program reads row 3
    ("INDEX($A$1:$B$2,2,1)", False),
])
def test_index_of_a_one_row_range_with_one_number_is_flagged(formula, flagged):
    from sheetgpt.lint import formula_problems

    rules = [rule for rule, _ in formula_problems(formula, {})]
    assert ("index-one-row" in rules) == flagged, rules


def test_a_range_in_an_array_formula_is_an_array_not_one_cell():
    """{=MMULT(x,W)+b} adds a whole bias row: no implicit intersection there; the same text as
    a normal formula takes one cell of the range (Excel 2010, LibreOffice)."""
    from sheetgpt.lint import formula_problems

    text = "MMULT(A1:B2,D1:E2)+G1:H1"
    assert formula_problems(text, {}, array=True) == []
    assert [rule for rule, _ in formula_problems(text, {}, array=False)] == ["implicit-intersection"]


@pytest.mark.parametrize("formula, offset, pinned", [
    ("('embed'!B3-$B3)/SQRT($C3+1E-05)*'w'!B$3", 2, "('embed'!B$5-$B$5)/SQRT($C$5+1E-05)*'w'!B$3"),
    ("MMULT('h0 ln_1'!$D3:$S3,W!B$3:B$18)", 1, "MMULT('h0 ln_1'!$D$4:$S$4,W!B$3:B$18)"),
    ('IF(D3="",LOG10(A1)&"B3",n_filled)', 3, 'IF(D$6="",LOG10(A$4)&"B3",n_filled)'),
    ("'B3 sheet'!C3+INDEX($A$1:$A$9,2)", 0, "'B3 sheet'!C$3+INDEX($A$1:$A$9,2)"),
])
def test_pin_rows_makes_every_relative_row_absolute_at_its_row(formula, offset, pinned):
    """Worked by hand: quoted sheet names, text and names stay; 1E-05 and LOG10 are not cells."""
    from sheetgpt.a1 import pin_rows

    assert pin_rows(formula, offset) == pinned
