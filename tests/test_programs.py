"""Every program a learner opens the book in computes it right, with the program's default
settings, every step and every cell: `check --engine E` on the books `sheetgpt build`
writes by default (a typed prompt, the controls, the lens), on a generating book and on
one with a head switched off and steering on; and after typing other prompts into the
opened book, through the program (LibreOffice and IronCalc; Gnumeric opens a copy that
holds them, as a saved book would).

The forms that went wrong are tested on their own too: Gnumeric's INDEX of a one-row
range, and LibreOffice's threaded calculation of a formula group that reads itself."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from sheetgpt.builder import build_workbook
from sheetgpt.check import check_workbook
from sheetgpt.layout import BookOptions

from helpers import small_random_model

PROGRAMS = [
    pytest.param("libreoffice", marks=[pytest.mark.libreoffice, pytest.mark.skipif(
        shutil.which("soffice") is None, reason="apt-get install libreoffice-calc-nogui python3-uno")]),
    pytest.param("ironcalc", marks=pytest.mark.skipif(importlib.util.find_spec("ironcalc") is None,
                                                      reason="pip install ironcalc")),
    pytest.param("gnumeric", marks=pytest.mark.skipif(shutil.which("ssconvert") is None,
                                                      reason="apt-get install gnumeric")),
]
SHAPE = dict(n_layer=2, n_head=2, n_embd=8, n_ctx=16)
PROMPT = "The sheet is large"
TYPED = ["Attention compares", "isn't it?"]  # typed in after the book is open: 5 and 8 tokens, room left to write 3


@pytest.fixture(scope="module")
def micro(small_vocab_dir):
    """A micro GPT-2 with its own 300-token vocabulary and merges."""
    return small_random_model(small_vocab_dir, seed=11, name="micro-test", **SHAPE)


def _build(model, path: Path, **kwargs) -> Path:
    build_workbook(model, kwargs.pop("prompt", PROMPT), path, progress=False, typed_prompt=True, **kwargs)
    return path


@pytest.fixture(scope="module")
def books(micro, tiny_model, tmp_path_factory) -> dict[str, Path]:
    """The default (typed-prompt, lens) books of three models, a generating book and a book
    with a head switched off and steering on."""
    from sheetgpt.load import load_model

    d = tmp_path_factory.mktemp("program_books")
    switches = np.ones((SHAPE["n_layer"], SHAPE["n_head"]))
    switches[1, 0] = 0.0
    probes = {"head_switches": switches, "steer_vector": np.linspace(-1, 1, SHAPE["n_embd"])[None, :],
              "steer_coef": np.array([[1.5]]), "steer_layer": np.array([[1.0]])}
    return {
        "micro": _build(micro, d / "micro.xlsx", options=BookOptions(lens=True)),
        "tiny": _build(tiny_model, d / "tiny.xlsx", prompt="Mike is quick. He moves", options=BookOptions(lens=True)),
        "shakespeare": _build(load_model("shakespeare"), d / "shakespeare.xlsx", prompt="O Romeo, Romeo, wherefore art",
                              options=BookOptions(lens=True)),
        "generate3": _build(micro, d / "generate.xlsx", positions=12, options=BookOptions(generate=3, lens=True)),
        "head_off_steered": _build(micro, d / "probes.xlsx", options=BookOptions(lens=True), controls=probes),
    }


def _assert_right(report, what: str) -> None:
    bad = [s for s in report.steps + report.shown + report.labels if not s.ok]
    assert report.ok, (what, report.first_failure, [(s.name, s.sheet, s.cell, s.detail) for s in bad[:3]],
                       report.errors[:3], report.inputs)


@pytest.mark.parametrize("book", ["micro", "tiny", "shakespeare", "generate3", "head_off_steered"])
@pytest.mark.parametrize("program", PROGRAMS)
def test_a_fresh_open_computes_every_cell_right(program: str, book: str, books):
    report = check_workbook(books[book], engine=program, progress=False)
    _assert_right(report, f"{book} in {program}")
    assert max(s.max_rel_err for s in report.steps) <= 1e-9
    assert any(s.name == "bpe_best" for s in report.steps)  # the tokenizer's steps were compared


# LibreOffice recalculating a writing book after an edit that moves the written positions
# (calculate(), as its automatic recalculation does) shows Err:522 (circular) from the first
# of them: at the level of formula groups the book reads itself through the generated tokens
# (tokens -> ... -> next ids -> tokens), though no cell does. A fresh open or a hard
# recalculation (calculateAll, Ctrl+Shift+F9; the Guide says so) computes it right. The form
# without that loop belongs to the issue about LibreOffice's speed, which restructures it.
LOOP_AFTER_EDIT = "LibreOffice: Err:522 after typing into a writing book (group-level loop through generation)"


def _typed_cases():
    for program in PROGRAMS:
        for book in ("micro", "generate3"):
            marks = [*program.marks]
            if program.values[0] == "libreoffice" and book == "generate3":
                marks.append(pytest.mark.xfail(strict=True, reason=LOOP_AFTER_EDIT))
            for text in TYPED:
                yield pytest.param(program.values[0], book, text, marks=marks, id=f"{program.values[0]}-{book}-{text}")


@pytest.mark.parametrize("program, book, text", list(_typed_cases()))
def test_a_prompt_typed_in_the_program_computes_every_cell_right(program: str, book: str, text: str, books):
    report = check_workbook(books[book], prompt=text, engine=program, progress=False)
    _assert_right(report, f"{text!r} typed in {program}")
    assert any("token ids are exactly those of the prompt" in line for line in report.inputs), report.inputs


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_wrong_cell_is_named_in_every_program(program: str, books, tmp_path):
    """The same changed tokenizer formula fails in each program, at the same cell."""
    from helpers import edit_formula, rewrite_part, sheet_parts

    path = tmp_path / "changed.xlsx"
    rewrite_part(books["micro"], path, sheet_parts(books["micro"])["tok_ids"],
                 lambda xml: edit_formula(xml, "H4", "H3+G3", "H3-G3"))
    report = check_workbook(path, engine=program, progress=False)
    assert not report.ok and report.first_failure["sheet"] == "tok_ids", report.first_failure


def _guide_status(path: Path, program: str) -> str:
    from sheetgpt.engines import evaluate

    return evaluate(path, program).value("Guide", 16, 2)


@pytest.mark.parametrize("program", ["fast", *PROGRAMS])
def test_the_guide_says_the_program_computes_the_book_right(program: str, books):
    assert _guide_status(books["micro"], program).startswith("OK: this program computed all ")


def test_a_form_computed_wrong_is_named_on_the_guide_and_by_check(books, tmp_path):
    """Gnumeric reads INDEX(row, n) of a one-row range as row n: the self-test written in
    that old form fails there, the Guide names the form and check names the cell; the other
    programs compute it right."""
    from helpers import edit_formula, rewrite_part, sheet_parts

    if shutil.which("ssconvert") is None:
        pytest.skip("apt-get install gnumeric")
    path = tmp_path / "old_index.xlsx"
    rewrite_part(books["micro"], path, sheet_parts(books["micro"])["selftest"],
                 lambda xml: edit_formula(xml, "B3", "INDEX($H$3:$L$3,1,3)", "INDEX($H$3:$L$3,3)"))
    status = _guide_status(path, "gnumeric")
    assert status.startswith("This program computes INDEX(row, 1, n) of a one-row range wrong"), status
    report = check_workbook(path, engine="gnumeric", progress=False)
    assert report.first_failure == {"step": "selftest_results", "sheet": "selftest", "cell": "B3"}
    for program in ("fast", "ironcalc"):
        assert _guide_status(path, program).startswith("OK: "), program
