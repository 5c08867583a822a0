"""`--set SHEET!CELL=VALUE` on eval and check: the book evaluated as if a cell held
something else, the file unchanged."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sheetgpt.check import check_workbook
from sheetgpt.errors import UserError
from sheetgpt.overrides import parse_override

from helpers import SMALL_PROMPT, gpt2_forward, run_cli


def _logits(book: Path, tmp_path: Path, *sets: str) -> np.ndarray:
    out = tmp_path / f"logits{len(sets)}.npy"
    args = [a for s in sets for a in ("--set", s)]
    r = run_cli("eval", str(book), "--logits", str(out), *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return np.load(out)


def test_a_token_id_set_on_the_command_line_is_computed_through(small_book, small_model, tmp_path):
    """Position 1's id replaced: the logits are those of an independent forward pass on the
    new ids (with the weights as the book holds them), and the file is unchanged."""
    from sheetgpt.readback import load_book

    before = small_book.read_bytes()
    params = load_book(small_book, progress=False).weights.params
    ids = small_model.tokenizer.encode(SMALL_PROMPT)
    new = (ids[1] + 17) % small_model.weights.config.vocab_size
    got = _logits(small_book, tmp_path, f"tokens!B4={new}")
    want = gpt2_forward(params, [ids[0], new, *ids[2:]], n_head=2)["logits"]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
    assert not np.allclose(got, _logits(small_book, tmp_path), atol=1e-9)
    assert small_book.read_bytes() == before


def test_check_with_a_set_token_passes_and_with_a_set_label_fails(small_book, tmp_path):
    ids_set = check_workbook(small_book, progress=False, overrides=[parse_override("tokens!B3=5")])
    assert ids_set.ok and ids_set.inputs == ["as if tokens!B3 held 5"]
    label_set = check_workbook(small_book, progress=False, overrides=[parse_override("'h0 ln_1'!B2=average")])
    assert not label_set.ok and label_set.first_failure == {"step": "labels", "sheet": "h0 ln_1", "cell": "B2"}


def test_a_formula_cell_set_to_a_number_replaces_its_formula(small_cells_book, tmp_path):
    """logits!C5 is token 2's logit (its own formula in the cells form): set far above the
    rest, token 2 becomes the prediction (the softmax and the top-k recompute from it), and
    check names the cell."""
    r = run_cli("eval", str(small_cells_book), "--json", "--set", "logits!C5=100", cwd=tmp_path)
    top = json.loads(r.stdout)["top"]
    assert top[0]["id"] == 2 and top[0]["logit"] == 100 and top[0]["prob"] > 0.99
    r = run_cli("check", str(small_cells_book), "--json", "--set", "logits!C5=100", cwd=tmp_path)
    assert r.returncode == 1
    assert json.loads(r.stdout)["first_failure"] == {"step": "logits", "sheet": "logits", "cell": "C5"}


def test_a_cell_inside_an_array_formula_is_not_set_alone(small_book, tmp_path):
    """In the arrays form logits!C5 is one cell of the unembedding's array (C3:C359, one
    column of logits): a spreadsheet refuses to change part of an array, and so does --set, in one line."""
    for command in ("eval", "check"):
        r = run_cli(command, str(small_book), "--set", "logits!C5=100", cwd=tmp_path)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "logits!C5" in r.stderr and "array formula at C3:C359" in r.stderr, r.stderr


@pytest.mark.parametrize("text,value", [("tokens!B3=464", 464.0), ("'h0 ln_1'!B2=mean", "mean"),
                                        ("Guide!C5=To be, or not to be", "To be, or not to be"),
                                        ("tokens!B3='42", "42"), ("x!A1=", ""), ("x!A1=1e3", 1000.0),
                                        ("x!A1=line one\nline two", "line one\nline two")])
def test_values_are_numbers_where_they_read_as_one_else_text(text, value):
    assert parse_override(text).value == value


@pytest.mark.parametrize("args,message", [
    (["--set", "tokens!B3"], "expected SHEET!CELL=VALUE"),
    (["--set", "tokens!B3==A1"], "a value, not a formula"),
    (["--set", "nosheet!B3=1"], "no sheet 'nosheet'"),
    (["--set", "tokens!B3=the"], "tokens!B3 holds 'the', not a number"),
    (["--set", "tokens!B3=1", "--engine", "formulas"], "do not work with --engine formulas"),
])
def test_bad_settings_are_one_line_errors(small_book, tmp_path, args, message):
    for command in ("eval", "check"):
        r = run_cli(command, str(small_book), *args, cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_bad_setting_is_refused_before_reading(tmp_path):
    with pytest.raises(UserError, match="expected SHEET!CELL=VALUE"):
        parse_override("B3=1")
