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
        "d5938d98c26132d9149ef18560b7ed10672e3ac40adcd6d4fe81fb855d725497",
    ("tiny", "long"):
        "e615cf475eff4dc726c43511c5d1297264fdf1bac8ee6ca9f49cfc6a27ceee25",
    ("small_dir", "short"):
        "9c798c5c1a1ea4b3565ee892d2d9b5e79780876c81f7c92ccdc6dfc0a01fedbb",
    ("small_dir", "long"):
        "5d69941087036b097a2416f4f81d34a598ce107939e5a711429e589dfa6015f5",
    ("hf_dir", "short"):
        "e522b4d42c16460464c53d5e8898797195f0dabff4545197ae22377aa4577280",
    ("tiny-compact", "short"):
        "502765fb5ee9f22fd1ae35459354ce183ce56a21c204fec55de0693b0a0abb77",
    ("hf_dir", "long"):
        "58e501a8a2ea6b84d290731a8671851e57860d633e5e94ed45cfc0fa16461c6c",
    ("tiny-typed", "short"):
        "e70781beff9355c42e1d27adcef60b6032a4e6238f767bff1a144aa74b0cf972",
    ("tiny-cells", "short"):
        "24affbc9304ab73f99520145cd61696c0f1c68ed37fd1a0470cd26ce1ff8e5be",
    ("tiny-probes", "short"):
        "04e80cb8c536edc84e9a2a0761f6d9d85a552ad7a8ac306997afc3caec86d57c",
}
SLOW_DIGESTS = {("small-random", "short"):
        "25f3e8339f0cfd1704b51134a35bc04f8544fca8092258e49360d60a8a4f111d"}
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
    options = (BookOptions(probes={"generate": 3, "lens": 1}) if option == "probes" else BookOptions(form="cells")
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
