"""check covers cells outside the numeric steps too: an error value anywhere fails it,
naming the sheet and the cell (the contract: a cell that evaluates to an error is named)."""
from __future__ import annotations

from pathlib import Path

import pytest

from sheetgpt.check import check_workbook

from helpers import edit_formula, rewrite_part, run_cli, sheet_parts


@pytest.mark.parametrize("sheet,cell,old,new", [
    # the top token's text: a label, in no step block (the Guide mirrors it: named second)
    ("prediction", "E8", "+1)", "+\"x\")"),
    ("Guide", "B8", "!E8", "!E8/0"),  # the Guide's predicted token
])
def test_an_error_value_anywhere_fails_naming_the_cell(small_book: Path, tmp_path: Path, sheet, cell, old, new):
    path = tmp_path / "errors.xlsx"
    rewrite_part(small_book, path, sheet_parts(small_book)[sheet], lambda xml: edit_formula(xml, cell, old, new))
    report = check_workbook(path, progress=False)
    assert all(s.ok for s in report.steps), "no numeric step changed"
    assert not report.ok and report.first_failure == {"step": "errors", "sheet": sheet, "cell": cell}
    assert report.errors[0]["value"] in ("#VALUE!", "#DIV/0!")
    r = run_cli("check", str(path), cwd=tmp_path)
    assert r.returncode == 1 and f"{sheet}!{cell} holds #" in r.stdout


def test_a_clean_book_has_no_error_values(small_book: Path):
    report = check_workbook(small_book, progress=False)
    assert report.ok and report.errors == []
