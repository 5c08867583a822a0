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
    # the cell is a text cell too, so the text comparison names it first; the error is listed
    assert not report.ok and (report.first_failure["sheet"], report.first_failure["cell"]) == (sheet, cell)
    assert {"sheet": sheet, "cell": cell} in [{k: e[k] for k in ("sheet", "cell")} for e in report.errors]
    assert all(e["value"] in ("#VALUE!", "#DIV/0!") for e in report.errors)
    r = run_cli("check", str(path), cwd=tmp_path)
    assert r.returncode == 1 and f"{sheet}!{cell} holds #" in r.stdout


def test_a_clean_book_has_no_error_values(small_book: Path):
    report = check_workbook(small_book, progress=False)
    assert report.ok and report.errors == []


@pytest.mark.parametrize("sheet,cell,old,new,step", [
    ("prediction", "E8", "+1)", "-1)", "top_text"),  # the example: the Guide showed the wrong word
    ("Guide", "B8", "!E8", "!E9", "guide_prediction"),
    ("tokens", "C3", "+1)", "+2)", "tokens_text"),
])
def test_a_text_cell_showing_the_wrong_text_fails(small_book: Path, small_model, tmp_path: Path, sheet, cell, old,
                                                   new, step):
    path = tmp_path / "text.xlsx"
    rewrite_part(small_book, path, sheet_parts(small_book)[sheet], lambda xml: edit_formula(xml, cell, old, new))
    report = check_workbook(path, progress=False)
    assert not report.ok and report.first_failure == {"step": step, "sheet": sheet, "cell": cell}
    result = next(s for s in report.texts if s.name == step)
    assert "expected" in result.detail


def test_a_text_formula_rewritten_to_the_same_text_passes(small_book: Path, tmp_path: Path):
    path = tmp_path / "same.xlsx"
    rewrite_part(small_book, path, sheet_parts(small_book)["prediction"],
                 lambda xml: edit_formula(xml, "E8", "+1)", "+2-1)"))
    assert check_workbook(path, progress=False).ok
