"""Every program a learner opens the book in computes it right, with the program's default
settings, every step and every cell: `check --engine E` on the books `sheetgpt build`
writes by default (a typed prompt, the controls, the lens), on a generating book and on
one with a head switched off and steering on; and after typing other prompts into the
opened book, through the program (LibreOffice and IronCalc; Gnumeric opens a copy that
holds them, as a saved book would).

Each program gets the form it computes: LibreOffice and Gnumeric the default, array
formulas for the matrix products; IronCalc, which computes those wrong, `--form cells`
(and refuses the other with one line). LibreOffice and Gnumeric compute the cells form
too.

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


FORM = {"libreoffice": "arrays", "gnumeric": "arrays", "ironcalc": "cells", "fast": "arrays"}  # what each computes


class Books:
    """The default (typed-prompt, lens) books of three models, a generating book and a book
    with a head switched off and steering on, in either form, each built when first asked
    for: books[name, form]; books[name] the default form, arrays."""

    def __init__(self, micro, tiny_model, directory: Path):
        from sheetgpt.load import load_model

        switches = np.ones((SHAPE["n_layer"], SHAPE["n_head"]))
        switches[1, 0] = 0.0
        probes = {"head_switches": switches, "steer_vector": np.linspace(-1, 1, SHAPE["n_embd"])[None, :],
                  "steer_coef": np.array([[1.5]]), "steer_layer": np.array([[1.0]])}
        self._recipes = {
            "micro": lambda: (micro, {}),
            "tiny": lambda: (tiny_model, {"prompt": "Mike is quick. He moves"}),
            "shakespeare": lambda: (load_model("shakespeare"), {"prompt": "O Romeo, Romeo, wherefore art"}),
            "generate3": lambda: (micro, {"positions": 12, "generate": 3}),
            "sample3": lambda: (micro, {"positions": 12, "generate": 3, "sample": 1,
                                        "controls": {"temperature": np.array([[2.0]])}}),
            "head_off_steered": lambda: (micro, {"controls": probes}),
        }
        self._dir, self._built = directory, {}

    def __getitem__(self, key) -> Path:
        name, form = key if isinstance(key, tuple) else (key, "arrays")
        if (name, form) not in self._built:
            model, kwargs = self._recipes[name]()
            probes = {"generate": kwargs.pop("generate", 0), "sample": kwargs.pop("sample", 0), "lens": 1, "dla": 1}
            options = BookOptions(form, probes=probes)
            self._built[name, form] = _build(model, self._dir / f"{name}-{form}.xlsx", options=options, **kwargs)
        return self._built[name, form]


@pytest.fixture(scope="module")
def books(micro, tiny_model, tmp_path_factory) -> Books:
    return Books(micro, tiny_model, tmp_path_factory.mktemp("program_books"))


def _assert_right(report, what: str) -> None:
    bad = [s for s in report.steps + report.shown + report.labels if not s.ok]
    assert report.ok, (what, report.first_failure, [(s.name, s.sheet, s.cell, s.detail) for s in bad[:3]],
                       report.errors[:3], report.inputs)


@pytest.mark.parametrize("book", ["micro", "tiny", "shakespeare", "generate3", "sample3", "head_off_steered"])
@pytest.mark.parametrize("program", PROGRAMS)
def test_a_fresh_open_computes_every_cell_right(program: str, book: str, books):
    report = check_workbook(books[book, FORM[program]], engine=program, progress=False)
    _assert_right(report, f"{book} in {program}")
    assert max(s.max_rel_err for s in report.steps) <= 1e-9
    assert any(s.name == "bpe_best" for s in report.steps)  # the tokenizer's steps were compared


@pytest.mark.parametrize("book", ["micro", "generate3"])
@pytest.mark.parametrize("program", [p for p in PROGRAMS if p.values[0] != "ironcalc"])
def test_the_cells_form_is_right_in_the_programs_that_compute_arrays(program: str, book: str, books):
    _assert_right(check_workbook(books[book, "cells"], engine=program, progress=False), f"{book} cells in {program}")


@pytest.mark.skipif(importlib.util.find_spec("ironcalc") is None, reason="pip install ironcalc")
def test_ironcalc_refuses_a_book_of_array_formulas_with_one_line(books):
    from sheetgpt.errors import UserError

    with pytest.raises(UserError, match=r"^IronCalc computes array formulas wrong, .* \('h0 qkv'!B3\): build the "
                                        r"book with --form cells for IronCalc$"):
        check_workbook(books["micro", "arrays"], engine="ironcalc", progress=False)


def _typed_cases():
    for program in PROGRAMS:
        for book in ("micro", "generate3"):
            for text in TYPED:
                yield pytest.param(program.values[0], book, text, marks=program.marks,
                                   id=f"{program.values[0]}-{book}-{text}")


@pytest.mark.parametrize("program, book, text", list(_typed_cases()))
def test_a_prompt_typed_in_the_program_computes_every_cell_right(program: str, book: str, text: str, books):
    """A writing book too: no formula group spans two positions (LibreOffice showed Err:522
    after such an edit while they did)."""
    report = check_workbook(books[book, FORM[program]], prompt=text, engine=program, progress=False)
    _assert_right(report, f"{text!r} typed in {program}")
    assert any("token ids are exactly those of the prompt" in line for line in report.inputs), report.inputs


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_wrong_cell_is_named_in_every_program(program: str, books, tmp_path):
    """The same changed tokenizer formula fails in each program, at the same cell."""
    from helpers import edit_formula, rewrite_part, sheet_parts

    book = books["micro", FORM[program]]
    path = tmp_path / "changed.xlsx"
    rewrite_part(book, path, sheet_parts(book)["tok_ids"],
                 lambda xml: edit_formula(xml, "H4", "H3+G3", "H3-G3"))
    report = check_workbook(path, engine=program, progress=False)
    assert not report.ok and report.first_failure["sheet"] == "tok_ids", report.first_failure


def _guide_status(path: Path, program: str) -> str:
    from sheetgpt.engines import evaluate

    return evaluate(path, program).value("Guide", 16, 2)


@pytest.mark.parametrize("program", ["fast", *PROGRAMS])
def test_the_guide_says_the_program_computes_the_book_right(program: str, books):
    assert _guide_status(books["micro", FORM[program]], program).startswith("OK: this program computed all ")


def test_a_form_computed_wrong_is_named_on_the_guide_and_by_check(books, tmp_path):
    """Gnumeric reads INDEX(row, n) of a one-row range as row n: the self-test written in
    that old form fails there, the Guide names the form and check names the cell; the other
    programs compute it right."""
    from helpers import edit_formula, rewrite_part, sheet_parts

    if shutil.which("ssconvert") is None:
        pytest.skip("apt-get install gnumeric")
    path = tmp_path / "old_index.xlsx"
    rewrite_part(books["micro", "cells"], path, sheet_parts(books["micro", "cells"])["selftest"],
                 lambda xml: edit_formula(xml, "B3", "INDEX($H$3:$L$3,1,3)", "INDEX($H$3:$L$3,3)"))
    status = _guide_status(path, "gnumeric")
    assert status.startswith("This program computes INDEX(row, 1, n) of a one-row range wrong"), status
    report = check_workbook(path, engine="gnumeric", progress=False)
    assert report.first_failure == {"step": "selftest_results", "sheet": "selftest", "cell": "B3"}
    for program in ("fast", "ironcalc"):
        assert _guide_status(path, program).startswith("OK: "), program
