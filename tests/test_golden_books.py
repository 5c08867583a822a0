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
        "ec18870619415d0a78760297ceab0535f29b4b2608a6ee4998150bd316a1b6eb",
    ("tiny", "long"):
        "16ecf31faf23a94bf51e47be4535702dcb1c95e87d05c923414965a231abb147",
    ("small_dir", "short"):
        "cabf657bbe47cc5e0b0a58cbcfba36aaec212b31665d41aa2f4a6a3856703196",
    ("small_dir", "long"):
        "a38f002783ed267876b06e4c76f91c8a7ed5ee7fa25b60948d12bd8161d46c31",
    ("hf_dir", "short"):
        "8d212ed62fd0917b56839f64ce4cfe1790ab03e72b21ff052561f446c264be83",
    ("tiny-compact", "short"):
        "5fe06806a91093289f53963ba147726767d6dfe9bb28fa39554340bdb531af53",
    ("hf_dir", "long"):
        "adf65169b745646d583119dfb7d987a4b9753c3e8dfe25a9663da112eca886dc",
    ("tiny-typed", "short"):
        "16712072f676160c95299dc46203c5996d81cacf15540f2bd5091d5e36c957c2",
    ("tiny-cells", "short"):
        "3e9ff60c8d58a0c6bfe30233409e491ae0b57da102452e7ce4c31bd6febb7d05",
    ("tiny-probes", "short"):
        "263abee5df4e81d00859dc73b6685b92c6ce4d2d794ffb1cf86bd036ea2f56e1",
}
SLOW_DIGESTS = {("small-random", "short"):
        "50bfbff17cef569f9b278387dc0fdd4142952c33c7fc73369341b30283f7aef8"}
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
