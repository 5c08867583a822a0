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
book, whose status line is on the Guide."""
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
        "c007a7ca687f916112840ac2f99cc736e1fd649d6f7ec2c654f67fdd03b15a54",
    ("tiny", "long"):
        "0bf6c7c64d94063222e6bed2a0556f7205a1a5206f25394a70fce5ad1616adf7",
    ("small_dir", "short"):
        "458bb389c36161087d81868e735e2e93a711ba4ef8084bf6a13482672a635d55",
    ("small_dir", "long"):
        "7c3bba8949d9fcf5ae24b754d2c45ae1ac8faa691adfa616f877c1cdf7979e3e",
    ("hf_dir", "short"):
        "f98b7480074468c751e7a582759284b3650d9982f593272e7e1c0fe3961c1ac4",
    ("tiny-compact", "short"):
        "5f57e586ddd39f26e9bf658b8368b0f9ebd5324f35f5c5b345c1f33bef653cd2",
    ("hf_dir", "long"):
        "eef6168cfc1b47792be6870187d8ba771c29fb9066714c45b9261fb35a19ec67",
    ("tiny-typed", "short"):
        "452d4585f043bb2151d21456ec33c8b71ce11d2d3b5b66bc5a237029d1d23535",
    ("tiny-probes", "short"):
        "0ece5e1e9e7f6fb36261d13379e4771d8ff82cdcf977a9e30837cbe9b8364e99",
}
SLOW_DIGESTS = {("small-random", "short"):
        "2062d93114deb0bc4624b221d3981cc2d382a04f8831cf4468a10181092be3ae"}
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
    model, _, option = kind.rpartition("-") if kind.endswith(("-compact", "-typed", "-probes")) else (kind, "", "")
    options = BookOptions(generate=3, lens=True) if option == "probes" else BookOptions()
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
