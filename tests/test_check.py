"""`check` with the `formulas` engine on the small workbook: the evaluated book against an
independent NumPy forward pass, and edits that check must find (or must accept)."""
from __future__ import annotations

import json
import math

import numpy as np
import openpyxl
import pytest

from helpers import (CELLS_FORM_ENGINES, SMALL_PROMPT, block_values, bpe_encode, cell_address, check_cached, defined_names,
                     edit_formula, edit_number, evaluated, gpt2_forward, range_box, read_weight_sheets, rel_err,
                     rewrite_part, sheet_parts, softmax, token_text_of)

TOL = 1e-9
OTHER_PROMPT = "The sheet was"


def _engines() -> list[str]:
    from sheetgpt.engines import ENGINES

    return ["formulas"] + [e for e in ENGINES if e != "formulas"]


@pytest.fixture(scope="module", params=_engines())
def engine(request) -> str:
    """The `formulas` package (an outside engine), then sheetgpt's own engines."""
    return request.param


@pytest.fixture(scope="module")
def small_book(small_book, small_cells_book, engine):
    """The small book in the form the engine computes: the cells form for the two that
    compute array formulas wrong or not at all (they refuse the default form)."""
    return small_cells_book if engine in CELLS_FORM_ENGINES else small_book


@pytest.fixture(scope="module")
def n_head(small_model) -> int:
    return small_model.weights.config.n_head


@pytest.fixture(scope="module")
def ids(small_vocab_dir) -> list[int]:
    return bpe_encode(SMALL_PROMPT, small_vocab_dir)


@pytest.fixture(scope="module")
def cell_weights(small_book, small_model) -> dict[str, np.ndarray]:
    """The weights exactly as the cells hold them (the decimals the spreadsheet computes with)."""
    return read_weight_sheets(small_book, {k: v.shape for k, v in small_model.weights.params.items()})


@pytest.fixture(scope="module")
def expected(cell_weights, ids, n_head) -> dict[str, np.ndarray]:
    return gpt2_forward(cell_weights, ids, n_head)


@pytest.fixture(scope="module")
def report(small_book, engine):
    return check_cached(small_book, engine)


@pytest.fixture(scope="module")
def names(small_book):
    return defined_names(small_book)


@pytest.fixture(scope="module")
def token_texts(small_vocab_dir) -> dict[int, str]:
    vocab = json.loads((small_vocab_dir / "vocab.json").read_text(encoding="utf-8"))
    return {i: token_text_of(s) for s, i in vocab.items()}


def _copy_with(src, dst, sheet, edit):
    rewrite_part(src, dst, sheet_parts(src)[sheet], edit)
    return dst


def _top_left(names, step) -> tuple[str, int, int]:
    sheet, ref = names[step]
    r0, c0, _, _ = range_box(ref)
    return sheet, r0, c0


# --- the book as built --------------------------------------------------------------------------

def test_check_passes(report, small_book, small_model, ids, names):
    from sheetgpt.architectures import lay_out

    assert report.ok and report.first_failure is None and report.inputs == []
    assert [s.name for s in report.steps] == lay_out(small_model.weights.config, len(ids)).steps
    assert len(report.steps) > 25
    for s in report.steps:
        assert s.ok and s.cell is None, s
        assert 0 <= s.max_rel_err <= TOL and s.max_abs_err >= 0, s
        assert s.sheet == names[s.name][0]


def test_evaluated_logits_match_independent_forward(small_book, expected, engine):
    logits = block_values(small_book, "logits", engine)[:, 0]
    assert rel_err(logits, expected["logits"]) <= TOL
    probs = softmax(expected["logits"])
    assert rel_err(block_values(small_book, "next_probs", engine)[:, 0], probs) <= TOL
    top = np.argsort(-expected["logits"], kind="stable")[:5]
    assert block_values(small_book, "top_ids", engine)[:, 0].tolist() == top.tolist()
    assert rel_err(block_values(small_book, "top_probs", engine)[:, 0], probs[top]) <= TOL


def test_evaluated_intermediates_match_independent_forward(small_book, expected, n_head, engine):
    T = expected["h0.fc"].shape[0]
    scores = block_values(small_book, "h0_scores", engine).reshape(n_head, T, T)
    assert (np.isnan(scores) == np.isnan(expected["h0.scores"])).all(), "masked cells must be empty"
    assert rel_err(np.nan_to_num(scores), np.nan_to_num(expected["h0.scores"])) <= TOL
    for step in ("attn_proj", "resid_1", "fc", "gelu"):
        assert rel_err(block_values(small_book, f"h0_{step}", engine), expected[f"h0.{step}"]) <= TOL, step


def test_evaluated_logits_match_the_models_float32_weights_to_float32_precision(small_book, small_model, ids,
                                                                                n_head, engine):
    """Weights are written as the shortest decimal (8 or 9 digits) that reads back as the same
    float32; the spreadsheet computes with that decimal, within half a float32 ulp (6e-8
    relative) of the float32 value. `check` recomputes its reference from the book's own
    values (1e-9); against the model's float32 values the logits agree to float32 precision."""
    logits = block_values(small_book, "logits", engine)[:, 0]
    expected = gpt2_forward(small_model.weights.params, ids, n_head)["logits"]
    assert 0 < rel_err(logits, expected) <= 1e-7


def test_guide_and_token_texts_evaluate(small_book, expected, token_texts, names, ids, engine):
    values = evaluated(small_book, engine).values
    wb = openpyxl.load_workbook(small_book)
    try:
        guide = [(c.row, c.column) for row in wb["Guide"].iter_rows() for c in row if c.data_type == "f"]
    finally:
        wb.close()
    got = [values.value("Guide", r, c) for r, c in guide]
    top = np.argsort(-expected["logits"], kind="stable")[:5]
    probs = softmax(expected["logits"])
    for rank, i in enumerate(top):
        assert token_texts[int(i)] in got, f"top-{rank + 1} token {token_texts[int(i)]!r} not in the Guide"
        assert any(isinstance(v, float) and abs(v - probs[i]) <= TOL * probs.max() for v in got), \
            f"top-{rank + 1} probability {probs[i]} not in the Guide"
    sheet, r0, c0 = _top_left(names, "tokens")
    assert [values.value(sheet, r0 + t, c0 + 1) for t in range(len(ids))] == [token_texts[i] for i in ids]


# --- formulas edited: check must name the first step that differs -------------------------------

MUTATIONS = {  # step -> text in its top-left formula, and what replaces it
    "h0_scores": ("/SQRT(", "/SQRT(2*"),
    "h0_resid_1": ("+", "-"),
    "h0_gelu": ("0.044715", "0.44715"),
}


def _tampered_blocks(step: str, expected: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(right values, values after the mutation) of the step's block, computed here."""
    if step == "h0_scores":  # only head 0's formula group (the top-left one) is changed
        right = expected["h0.scores"]
        wrong = right.copy()
        wrong[0] /= math.sqrt(2)
        H, T, _ = right.shape
        return right.reshape(H * T, T), wrong.reshape(H * T, T)
    if step == "h0_resid_1":
        right = expected["h0.resid_1"]
        return right, right - 2 * expected["h0.attn_proj"]
    x = expected["h0.fc"]
    wrong = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.44715 * x ** 3)))
    return expected["h0.gelu"], wrong


@pytest.fixture(scope="module")
def tampered_books(small_book, names, tmp_path_factory):
    books = {}
    for step in MUTATIONS:
        old, new = MUTATIONS[step]
        sheet, r0, c0 = _top_left(names, step)
        books[step] = _copy_with(small_book, tmp_path_factory.mktemp("tampered") / f"{step}.xlsx", sheet,
                                 lambda xml: edit_formula(xml, cell_address(r0, c0), old, new))
    return books


@pytest.mark.parametrize("step", list(MUTATIONS))
def test_edited_formula_is_reported(step, tampered_books, names, expected, engine):
    rep = check_cached(tampered_books[step], engine)
    right, wrong = _tampered_blocks(step, expected)
    err = np.nan_to_num(np.abs(wrong - right))
    i, j = np.argwhere(err > TOL * np.nanmax(np.abs(right)))[0]
    sheet, r0, c0 = _top_left(names, step)
    assert not rep.ok
    assert rep.first_failure == {"step": step, "sheet": sheet, "cell": cell_address(r0 + i, c0 + j)}
    k = [s.name for s in rep.steps].index(step)
    assert all(s.ok for s in rep.steps[:k]), [s.name for s in rep.steps[:k] if not s.ok]
    bad = rep.steps[k]
    assert not bad.ok and bad.cell == cell_address(r0 + i, c0 + j)
    assert bad.max_abs_err == pytest.approx(err.max(), rel=1e-6)


# --- inputs edited ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weight_edited(small_book, small_model, tmp_path_factory):
    """small_book with one weight of h.0.mlp.c_fc.weight changed: (path, param, cell address)."""
    param, (i, j) = "h.0.mlp.c_fc.weight", (1, 5)
    wb = openpyxl.load_workbook(small_book, read_only=True)
    try:
        # the weight's block: the defined name that points into the parameter's sheet
        (ref,) = [r for s, r in defined_names(small_book, wb).values() if s == param]
    finally:
        wb.close()
    r0, c0, n, m = range_box(ref)
    assert (n, m) == small_model.weights[param].shape
    address = cell_address(r0 + i, c0 + j)
    value = float(small_model.weights[param][i, j]) + 0.25
    path = _copy_with(small_book, tmp_path_factory.mktemp("edited") / "weight.xlsx", param,
                      lambda xml: edit_number(xml, address, repr(value)))
    return path, param, address


def test_edited_weight_still_passes_check(weight_edited, engine):
    rep = check_cached(weight_edited[0], engine)
    assert rep.ok and all(s.ok for s in rep.steps)


def test_model_option_names_the_edited_weight(weight_edited, small_model, engine):
    path, param, address = weight_edited
    rep = check_cached(path, engine, model=small_model)
    assert not rep.ok
    assert rep.first_failure == {"step": "weights", "sheet": param, "cell": address}
    assert all(s.ok for s in rep.steps), "the reference is recomputed from the book: every step agrees"
    assert any(param in line and address in line for line in rep.inputs), rep.inputs


def test_model_option_accepts_the_models_own_book(small_book, small_model, engine):
    rep = check_cached(small_book, engine, model=small_model)
    assert rep.ok and rep.first_failure is None
    assert [line.split(" ")[1] for line in rep.inputs] == ["are", "vocabulary"]  # weights, vocabulary: exact


def test_prompt_option(small_book, small_model, small_vocab_dir, names, ids, engine):
    assert check_cached(small_book, engine, model=small_model, prompt=SMALL_PROMPT).ok
    other = bpe_encode(OTHER_PROMPT, small_vocab_dir)
    t = next(t for t, (a, b) in enumerate(zip(ids, other)) if a != b)
    assert t > 0
    rep = check_cached(small_book, engine, model=small_model, prompt=OTHER_PROMPT)
    sheet, r0, c0 = _top_left(names, "tokens")
    assert not rep.ok
    assert rep.first_failure == {"step": "tokens", "sheet": sheet, "cell": cell_address(r0 + t, c0)}
    assert all(s.ok for s in rep.steps)


@pytest.fixture(scope="module")
def token_edited(small_book, small_vocab_dir, names, ids, tmp_path_factory):
    """small_book with its second token id (" sheet") changed to " model": (path, new ids)."""
    vocab = json.loads((small_vocab_dir / "vocab.json").read_text(encoding="utf-8"))
    new = list(ids)
    assert new[1] == vocab["Ġsheet"]
    new[1] = vocab["Ġmodel"]
    sheet, r0, c0 = _top_left(names, "tokens")
    path = _copy_with(small_book, tmp_path_factory.mktemp("edited") / "token.xlsx", sheet,
                      lambda xml: edit_number(xml, cell_address(r0 + 1, c0), str(new[1])))
    return path, new


def test_edited_token_id_is_computed_through(token_edited, small_book, cell_weights, n_head, names, token_texts, engine):
    path, new_ids = token_edited
    rep = check_cached(path, engine)
    assert rep.ok and all(s.ok for s in rep.steps)
    logits = block_values(path, "logits", engine)[:, 0]
    original = block_values(small_book, "logits", engine)[:, 0]
    assert np.abs(logits - original).max() > 1e-6 * np.abs(original).max()
    assert rel_err(logits, gpt2_forward(cell_weights, new_ids, n_head)["logits"]) <= TOL
    sheet, r0, c0 = _top_left(names, "tokens")
    assert evaluated(path, engine).values.value(sheet, r0 + 1, c0 + 1) == token_texts[new_ids[1]] == " model"


def test_prompt_option_names_the_edited_token(token_edited, small_model, names, engine):
    rep = check_cached(token_edited[0], engine, model=small_model, prompt=SMALL_PROMPT)
    sheet, r0, c0 = _top_left(names, "tokens")
    assert rep.first_failure == {"step": "tokens", "sheet": sheet, "cell": cell_address(r0 + 1, c0)}
    assert not rep.ok and all(s.ok for s in rep.steps)
