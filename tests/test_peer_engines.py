"""Other spreadsheet programs recompute sheetgpt's books of fixed ids right: IronCalc and
Gnumeric, each checked step by step against the NumPy reference (logits and probabilities
included), and a compact book is refused by both, never computed wrong. The default books
(a typed prompt) in every program: tests/test_programs.py."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from sheetgpt.builder import build_workbook
from sheetgpt.check import check_workbook
from sheetgpt.errors import UserError
from sheetgpt.readback import load_book
from sheetgpt.reference import forward

from helpers import SMALL_PROMPT, assert_close

HAVE_IRONCALC = importlib.util.find_spec("ironcalc") is not None

ENGINES = [
    pytest.param("ironcalc", marks=pytest.mark.skipif(not HAVE_IRONCALC, reason="pip install ironcalc")),
    pytest.param("gnumeric", marks=pytest.mark.skipif(shutil.which("ssconvert") is None,
                                                      reason="apt-get install gnumeric")),
]
TOL = 1e-9


def _book(engine: str, book: str, request) -> Path:
    """The book in the form the engine computes: IronCalc the cells form (it computes array
    formulas wrong and refuses them), Gnumeric the default, array formulas."""
    return request.getfixturevalue(book.replace("_book", "_cells_book") if engine == "ironcalc" else book)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("book", ["small_book", "tiny_book"])
def test_every_step_right(engine: str, book: str, request):
    path = _book(engine, book, request)
    report = check_workbook(path, engine=engine, progress=False)
    assert report.ok, (report.first_failure, [s for s in report.steps if not s.ok][:3])
    worst = max(s.max_rel_err for s in report.steps)
    assert worst <= TOL


@pytest.mark.parametrize("engine", ENGINES)
def test_logits_and_probabilities_equal_the_reference(engine: str, small_model, request):
    book = load_book(_book(engine, "small_book", request), engine, False)
    # the book computes with its weights as written (decimals within half a float32 ulp)
    ref = forward(book.weights, small_model.tokenizer.encode(SMALL_PROMPT))
    model_ref = forward(small_model.weights, small_model.tokenizer.encode(SMALL_PROMPT))
    for name in ("logits", "next_probs", "top_probs", "top_ids"):
        assert_close(book[name], ref[name], TOL, f"{engine}: {name}")
        assert_close(book[name], model_ref[name], 1e-7, f"{engine}: {name} against float32 weights")
    assert book.values.value("prediction", 8, 5) == small_model.tokenizer.token_text(int(ref["top_ids"][0, 0]))


@pytest.mark.parametrize("engine", ENGINES)
def test_compact_books_are_refused(engine: str, small_model, tmp_path: Path):
    path = tmp_path / "compact.xlsx"
    build_workbook(small_model, SMALL_PROMPT, path, progress=False, compact=True)
    with pytest.raises(UserError, match="without their address.*--compact"):
        load_book(path, engine, False)
