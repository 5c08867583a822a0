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
    result = next(s for s in report.shown if s.name == step)
    assert "expected" in result.detail


def test_a_text_formula_rewritten_to_the_same_text_passes(small_book: Path, tmp_path: Path):
    path = tmp_path / "same.xlsx"
    rewrite_part(small_book, path, sheet_parts(small_book)["prediction"],
                 lambda xml: edit_formula(xml, "E8", "+1)", "+2-1)"))
    assert check_workbook(path, progress=False).ok


# -- every formula cell is verified: labels, the Guide's mirrors, constants, foreign formulas ----

def _edited(small_book: Path, tmp_path: Path, sheet: str, edit) -> Path:
    path = tmp_path / "edited.xlsx"
    rewrite_part(small_book, path, sheet_parts(small_book)[sheet], edit)
    return path


@pytest.mark.parametrize("sheet,cell,old,new,step,value", [
    # a position label (column A) made to show the next position's token
    ("h0 ln_1", "A3", "$C$3", "$C$4", "position_labels", None),
    # ... or made to evaluate to an error: the contract says such a cell is named
    ("embed", "A4", "!$C$4", "!$C$4+1", "position_labels", "#VALUE!"),
    # the Guide's probability of the predicted token, and a top-5 token id
    ("Guide", "C8", "!D8", "!D9", "guide_top_probs", None),
    ("Guide", "D12", "!B9", "!B10", "guide_top_ids", None),
])
def test_a_label_or_guide_formula_showing_otherwise_fails(small_book, tmp_path, sheet, cell, old, new, step, value):
    path = _edited(small_book, tmp_path, sheet, lambda xml: edit_formula(xml, cell, old, new))
    report = check_workbook(path, progress=False)
    assert all(s.ok for s in report.steps), "no numeric step changed"
    assert not report.ok and report.first_failure == {"step": step, "sheet": sheet, "cell": cell}
    if value:
        assert {"sheet": sheet, "cell": cell, "value": value} in report.errors
    r = run_cli("check", str(path), cwd=tmp_path)
    assert r.returncode == 1 and f"DIFFERS at {cell}" in r.stdout, r.stdout


@pytest.mark.parametrize("sheet,cell,old,new", [
    ("h0 ln_1", "B2", "mean", "average"),  # a column header
    ("Guide", "A8", "Predicted next token", "Predicted token"),  # the Guide's own words
    ("prediction", "A8", ">1<", ">2<"),  # a rank LARGE reads: the step would change too
])
def test_a_changed_label_fails_naming_its_cell(small_book, tmp_path, sheet, cell, old, new):
    def edit(xml: str) -> str:
        assert xml.count(old) >= 1
        i = xml.index(f'r="{cell}"')
        j = xml.index(old, i)
        return xml[:j] + new + xml[j + len(old):]

    report = check_workbook(_edited(small_book, tmp_path, sheet, edit), progress=False)
    assert not report.ok and report.first_failure["sheet"] == sheet
    if sheet != "prediction":
        assert report.first_failure == {"step": "labels", "sheet": sheet, "cell": cell}
        result = next(s for s in report.labels if s.sheet == sheet)
        assert result.detail == f"holds {new if sheet == 'h0 ln_1' else 'Predicted token'!r}, expected " \
                                f"{'mean' if sheet == 'h0 ln_1' else 'Predicted next token'!r}"


@pytest.mark.parametrize("sheet,text", [("h0 ln_1", "1+1"), ("Guide", "0"), ("h.0.ln_1.weight", "1/0")])
def test_a_formula_sheetgpt_never_wrote_is_foreign(small_book, tmp_path, sheet, text):
    """Typed into an empty cell of row 3, far right: no step reads it, nothing says what it
    must show; check fails naming it (a weight sheet too)."""
    def edit(xml: str) -> str:
        i = xml.index('<row r="3"')
        j = xml.index("</row>", i)
        return xml[:j] + f'<c r="AZ3"><f>{text}</f></c>' + xml[j:]

    path = _edited(small_book, tmp_path, sheet, edit)
    report = check_workbook(path, progress=False)
    assert not report.ok and report.first_failure == {"step": "foreign", "sheet": sheet, "cell": "AZ3"}
    assert report.foreign == [{"sheet": sheet, "cell": "AZ3", "formula": text}]
    r = run_cli("check", str(path), "--json", cwd=tmp_path)
    assert r.returncode == 1 and '"foreign": [{"sheet": "%s", "cell": "AZ3"' % sheet in r.stdout


def test_every_formula_the_builder_writes_is_verified(small_model, tiny_model):
    """Each formula block lies in a numeric step (against the reference) or says what it shows."""
    from sheetgpt.builder import book_cells, plan_book
    from sheetgpt.steps.base import CellFormulas, Formula

    for model in (small_model, tiny_model):
        plan = plan_book(model, "Hello")
        steps = [plan.layout.blocks[name] for name in plan.layout.steps]

        def in_step(w) -> bool:
            return any(s.sheet == w.sheet and s.contains(w.row, w.col)
                       and s.contains(w.row + w.n_rows - 1, w.col + w.n_cols - 1) for s in steps)

        formulas = [c for cells in book_cells(plan.layout, plan.inputs).values() for c in cells
                    if isinstance(c, (Formula, CellFormulas))]
        assert len(formulas) > 20
        assert [(c.where.sheet, c.where.box()) for c in formulas if c.shows is None and not in_step(c.where)] == []


def test_a_changed_vocabulary_entry_passes_alone_but_not_with_the_model(small_book, small_model, tmp_path):
    """The vocabulary is an input like the weights: the text lookups follow it, so only
    --model can tell it is not the model's (and names the entry)."""
    token = small_model.tokenizer.token_text(40)
    path = _edited(small_book, tmp_path, "vocab",
                   lambda xml: edit_text(xml, "B43", token, token + "x"))
    assert check_workbook(path, progress=False).ok
    report = check_workbook(path, model=small_model, progress=False)
    assert not report.ok and report.first_failure == {"step": "vocab", "sheet": "vocab", "cell": "B43"}
    assert any(f"entry 40 at vocab!B43 is {token + 'x'!r}" in line for line in report.inputs), report.inputs
    assert check_workbook(small_book, model=small_model, progress=False).ok


def edit_text(xml: str, address: str, old: str, new: str) -> str:
    i = xml.index(f'r="{address}"')
    j = xml.index(f">{old}<", i) + 1
    return xml[:j] + new + xml[j + len(old):]


def test_a_book_from_another_sheetgpt_version_checks(small_book):
    """The metadata is the book's own input (as are the ids and the vocabulary): a book
    written by another version of sheetgpt is not a changed label."""
    from sheetgpt.overrides import parse_override

    assert check_workbook(small_book, progress=False, overrides=[parse_override("_meta!A3='sheetgpt_version"),
                                                                 parse_override("_meta!B3='0.0.1")]).ok
