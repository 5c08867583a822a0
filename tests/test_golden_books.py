"""Refactoring guard: workbooks are byte-identical to the ones recorded here. The digests
were first recorded at commit 6e9d6a5 and reproduced by the step redesign (75b3bf6); a
digest changes only when the workbook's content does: update it in the same commit as a
deliberate change to what the builder writes, and say why there.

Changes since: r= on every cell by default and the vocabulary softmax as a SUM of per-cell
exps (issue #12: Gnumeric and IronCalc compute such books right); DEL (\\x7f) written as
_x007F_ (Gnumeric dropped it from the vocabulary)."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from sheetgpt.builder import build_workbook
from sheetgpt.load import load_model

from helpers import SMALL_PROMPT, TINY_PROMPT

LONG_PROMPT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
               "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles "
               "and by opposing end them. 1234 + 5678 = 6912!\n\tDone.")

# (model fixture, prompt) -> SHA-256 of the .xlsx
DIGESTS = {
    ("tiny", "short"):
        "196c6d35c069520e99b9fa8db22f42207f6f0eb9de4d537b553335768469cc93",
    ("tiny", "long"):
        "7e78765c7bfeaf6321e36849b572dc9a461f34147b2de862b0e1f0963881c441",
    ("small_dir", "short"):
        "10387216d97524dcb03f49775f0e6ae823501eae47622a7d7e8ec9eeeab74717",
    ("small_dir", "long"):
        "e12631143f4f704941668c60185c044a16442c780589cd0a194d655d8c4b47c5",
    ("hf_dir", "short"):
        "ff37ac0b5be983787d31be2fc33c58dabd00db97f9a04b92a499a17bd972b0ea",
    ("tiny-compact", "short"):
        "202c61c0091d2c21423b319f3955b8813962cde0519ace56032b4dbdea1c3905",
    ("hf_dir", "long"):
        "c8c30498a1a9948539558c04ba921af3599e0234ee5f7540bc03dfce1550ee7e",
}
SLOW_DIGESTS = {("small-random", "short"):
        "d8a891f6ba9b19c8e7dd891d05d83f33f31085e4c72495aa2c3787297e9ec9b5"}
PROMPTS = {"short": {"tiny": TINY_PROMPT, "small_dir": SMALL_PROMPT, "hf_dir": TINY_PROMPT,
                     "small-random": TINY_PROMPT},
           "long": {"tiny": LONG_PROMPT, "small_dir": "The sheet is the sheet is", "hf_dir": LONG_PROMPT[:90]}}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _model(kind: str, request: pytest.FixtureRequest):
    if kind in ("tiny", "small-random"):
        return load_model(kind)
    directory = request.getfixturevalue({"small_dir": "small_model_dir", "hf_dir": "hf_model_dir"}[kind])
    # the name is the path given to --model; fix it so the digest does not depend on tmp paths
    return dataclasses.replace(load_model(str(directory)), name=f"{kind}-golden")


def _build_digest(kind: str, length: str, request, tmp_path: Path) -> str:
    out = tmp_path / "book.xlsx"
    model, compact = kind.removesuffix("-compact"), kind.endswith("-compact")
    build_workbook(_model(model, request), PROMPTS[length][model], out, progress=False, compact=compact)
    return digest(out)


@pytest.mark.parametrize("kind,length", list(DIGESTS))
def test_workbook_bytes_unchanged(kind: str, length: str, request, tmp_path: Path) -> None:
    assert _build_digest(kind, length, request, tmp_path) == DIGESTS[kind, length]


@pytest.mark.slow
@pytest.mark.parametrize("kind,length", list(SLOW_DIGESTS))
def test_small_random_bytes_unchanged(kind: str, length: str, request, tmp_path: Path) -> None:
    assert _build_digest(kind, length, request, tmp_path) == SLOW_DIGESTS[kind, length]
