"""The default model's workbook: it predicts what the reference predicts, Shakespeare-like
text gets Shakespeare-like guesses, and the Guide says what the model is. The expected
tokens are the committed weights' (their reference forward pass and, for the sensible
guesses, what any reader of the plays expects after a speaker's name)."""
from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from sheetgpt.builder import build_workbook
from sheetgpt.load import DEFAULT_MODEL, load_model
from sheetgpt.readback import load_book
from sheetgpt.reference import forward
from sheetgpt.steps.prediction import top_k

PROMPTS = {"speaker": "ROMEO:", "line": "O Romeo, Romeo, wherefore art"}


@pytest.fixture(scope="module")
def shakespeare():
    assert DEFAULT_MODEL == "shakespeare"
    return load_model("shakespeare")


@pytest.fixture(scope="module")
def books(shakespeare, tmp_path_factory) -> dict[str, Path]:
    out = {}
    for key, prompt in PROMPTS.items():
        out[key] = tmp_path_factory.mktemp("shakespeare") / f"{key}.xlsx"
        build_workbook(shakespeare, prompt, out[key], progress=False)
    return out


@pytest.mark.parametrize("key", list(PROMPTS))
def test_book_predicts_what_the_reference_predicts(shakespeare, books, key):
    book = load_book(books[key], "fast", False)
    ids = shakespeare.tokenizer.encode(PROMPTS[key])
    want = top_k(forward(shakespeare.weights, ids)["logits"][:, 0], 5)
    assert [int(i) for i in book["top_ids"][:, 0]] == [int(i) for i in want]


def test_guesses_are_shakespearean(books):
    speaker = load_book(books["speaker"], "fast", False)
    texts = [speaker.token_text(int(i)) for i in speaker["top_ids"][:, 0]]
    assert "\n" in texts, texts  # after a speaker's name and a colon, the speech starts on a new line
    line = load_book(books["line"], "fast", False)
    assert line.token_text(int(line["top_ids"][0, 0])) == " thou"


def test_guide_says_what_the_model_is(books):
    guide = openpyxl.load_workbook(books["line"], read_only=True)["Guide"]
    model_row = next(row for row in guide.iter_rows(values_only=True) if row and row[0] == "Model")
    assert "trained on about 300k tokens of Shakespeare" in model_row[1]
    assert "not GPT-2's" in model_row[1]
