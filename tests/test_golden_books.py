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
        "f899f0d3da5271f25a2b377c5278d7c17fd8f09dc98624a72539b4e3aeecb666",
    ("tiny", "long"):
        "7e735e713534c1c65d08000f53749daaea04e5df499b66d3c4bce52f9897107b",
    ("small_dir", "short"):
        "320c03bde2ee497a973dee9d71582fd71245dd0b78bae06e2450ac54f84331c0",
    ("small_dir", "long"):
        "4f9e312303c883b5204f132a3b677924f1c35741c2c2141f84ed19ba4e6f81c3",
    ("hf_dir", "short"):
        "41b054a84593ca922a9b7474742b6a0a3e4d6dc5b85173f1693a35b27a144a2f",
    ("tiny-compact", "short"):
        "4a79db28f053726096372bb9c7488c6ae72991bb7ae5decaf0ad420a6f959d4f",
    ("hf_dir", "long"):
        "713f734322cc22cfd5fe28ff15134622d4094305b62c778ca7405885ad166785",
    ("tiny-typed", "short"):
        "f0e8a85e3b13251c43b4ed7a3c405db7b242e4f1c90956efbabddf2271e8fbeb",
    ("tiny-cells", "short"):
        "ae211832528ae256aac81b6a73177f11ac7bf68949fb3360243c4ebacaa2924a",
    ("tiny-probes", "short"):
        "21552bd89ebd2906ab4554187741e5b9e1420a595f87704e1b128141d1a1f2bc",
}
SLOW_DIGESTS = {("small-random", "short"):
        "2cfab14b76812629a423e45137f7cca87baf11b2a59157d73c99d841f28b23a0"}
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
    options = (BookOptions(generate=3, lens=True) if option == "probes" else BookOptions(form="cells")
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
