"""Refactoring guard: workbooks are byte-identical to the ones recorded here. The digests
were first recorded at commit 6e9d6a5 and reproduced by the step redesign (75b3bf6); a
digest changes only when the workbook's content does: update it in the same commit as a
deliberate change to what the builder writes, and say why there.

Changes since: r= on every cell by default and the vocabulary softmax as a SUM of per-cell
exps (issue #12: Gnumeric and IronCalc compute such books right). Since issue #14 the
digests are of the parts' uncompressed bytes, not of the file: ISA-L's deflate replaced
zlib's (the zlib-packed files still had the recorded file digests at that commit). Issue #15
put a controls sheet in every book (head switches scale each head's output, the steering
vector joins the residual sums, the temperature divides the prediction's logits), made
each attention output row read only its own and earlier positions, and added a book that
generates 3 tokens and has the logit lens ("tiny-probes"). Issue #21 put an empty row between
the merge rounds of tok_bpe and wrote INDEX(row, 1, n) there (typed books only: LibreOffice's
threaded calculation and Gnumeric computed the old forms wrong), and a selftest sheet to every
book, whose status line is on the Guide. Issue #22 wrote the matrix products (linear layers,
unembedding, lens, next_logits) as array formulas by default, pinned the rows of a writing
book's position blocks (no formula group spans two positions) and recorded the form in the
metadata; "tiny-cells" is the default book in the other form, one formula per cell."""
from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import pytest

from sheetgpt.builder import build_workbook
from sheetgpt.layout import BookOptions
from sheetgpt.load import load_model

from helpers import SMALL_PROMPT, TINY_PROMPT

LONG_PROMPT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
               "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles "
               "and by opposing end them. 1234 + 5678 = 6912!\n\tDone.")

# (model fixture and options, prompt) -> SHA-256 of the book's parts (see digest)
DIGESTS = {
    ("tiny", "short"):
        "8d39a418d4502d366dbfe298a5ace6fbcc2ebbb8e164669fa14f6dfdb2b79199",
    ("tiny", "long"):
        "4fa2d6063f51f33dc9b146aed6cb31826466548d11b23ac175a14c8e797c9de5",
    ("small_dir", "short"):
        "e1bc18471c122b3e0fb38df53023aec41588c7fa43fcc4baa0e69815328016f8",
    ("small_dir", "long"):
        "da90a14c24da2be975f1ce76e5bd4bc3d9f97516301a7c791e2edf1b793a3538",
    ("hf_dir", "short"):
        "620d49a651b598855710287c5d32d08f9d9962c5fdac57444ecf5534ddf37925",
    ("tiny-compact", "short"):
        "6259ada5a7d8f2a0d82e78b4a33694666db1f95c783182d4b22b9d155b3aec92",
    ("hf_dir", "long"):
        "9ad1de0f9097021d9b9500e71b92a9cf78de5e565a67118c3d872035438c9f53",
    ("tiny-typed", "short"):
        "cd7b6f1a4623d296b75c9e1eb74848345cbe35a4e920324a02c8e2e2c686737f",
    ("tiny-cells", "short"):
        "cdf06249847168e44f36fe7e72947cda11dd6be52872f4f46c8456d527ac033c",
    ("tiny-probes", "short"):
        "74d0e825f10286e2d09d500b9316b07ecf4d046ed212dc36a8fa2c9d95d979cd",
}
SLOW_DIGESTS = {("small-random", "short"):
        "73ecefb2e5fcf126068478cccb8d7e75a8f9f20e99d8d65ccc28ec423107ae36"}
PROMPTS = {"short": {"tiny": TINY_PROMPT, "small_dir": SMALL_PROMPT, "hf_dir": TINY_PROMPT,
                     "small-random": TINY_PROMPT},
           "long": {"tiny": LONG_PROMPT, "small_dir": "The sheet is the sheet is", "hf_dir": LONG_PROMPT[:90]}}


def digest(path: Path) -> str:
    """SHA-256 of what the book holds: every part's name and uncompressed bytes, in the
    file's order (the deflate that packs them is not the book: see test_deterministic)."""
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            h.update(info.filename.encode() + b"\0" + str(info.date_time).encode() + b"\0")
            h.update(z.read(info))
    return h.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _model(kind: str, request: pytest.FixtureRequest):
    if kind in ("tiny", "small-random"):
        return load_model(kind)
    directory = request.getfixturevalue({"small_dir": "small_model_dir", "hf_dir": "hf_model_dir"}[kind])
    # the name is the path given to --model; fix it so the digest does not depend on tmp paths
    return dataclasses.replace(load_model(str(directory)), name=f"{kind}-golden")


def _build(kind: str, length: str, request, out: Path) -> Path:
    model, _, option = (kind.rpartition("-") if kind.endswith(("-compact", "-typed", "-probes", "-cells"))
                        else (kind, "", ""))
    options = (BookOptions(probes={"generate": 3, "sample": 1, "lens": 1, "dla": 1}) if option == "probes"
               else BookOptions(form="cells")
               if option == "cells" else BookOptions())
    build_workbook(_model(model, request), PROMPTS[length][model], out, progress=False, compact=option == "compact",
                   typed_prompt=option in ("typed", "probes"), options=options)
    return out


def _build_digest(kind: str, length: str, request, tmp_path: Path) -> str:
    return digest(_build(kind, length, request, tmp_path / "book.xlsx"))


@pytest.mark.parametrize("fast_deflate", [True, False])
def test_deterministic(fast_deflate: bool, request, tmp_path: Path, monkeypatch) -> None:
    """The same model, prompt and options give a byte-identical file, whichever deflate packs it."""
    import sheetgpt.xlsx
    if not fast_deflate:
        monkeypatch.setattr(sheetgpt.xlsx, "_FAST_DEFLATE", None)
    a, b = (_build("tiny", "short", request, tmp_path / f"{k}.xlsx") for k in "ab")
    assert file_digest(a) == file_digest(b)
    assert digest(a) == DIGESTS["tiny", "short"]


@pytest.mark.parametrize("kind,length", list(DIGESTS))
def test_workbook_bytes_unchanged(kind: str, length: str, request, tmp_path: Path) -> None:
    assert _build_digest(kind, length, request, tmp_path) == DIGESTS[kind, length]


@pytest.mark.slow
@pytest.mark.parametrize("kind,length", list(SLOW_DIGESTS))
def test_small_random_bytes_unchanged(kind: str, length: str, request, tmp_path: Path) -> None:
    assert _build_digest(kind, length, request, tmp_path) == SLOW_DIGESTS[kind, length]
