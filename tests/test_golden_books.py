"""Refactoring guard: workbooks are byte-identical to the ones recorded here. The digests
were first recorded at commit 6e9d6a5 and reproduced by the step redesign (75b3bf6); a
digest changes only when the workbook's content does: update it in the same commit as a
deliberate change to what the builder writes, and say why there.

Changes since: r= on every cell by default and the vocabulary softmax as a SUM of per-cell
exps (issue #12: Gnumeric and IronCalc compute such books right). Since issue #14 the
digests are of the parts' uncompressed bytes, not of the file: ISA-L's deflate replaced
zlib's (the zlib-packed files still had the recorded file digests at that commit)."""
from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import pytest

from sheetgpt.builder import build_workbook
from sheetgpt.load import load_model

from helpers import SMALL_PROMPT, TINY_PROMPT

LONG_PROMPT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
               "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles "
               "and by opposing end them. 1234 + 5678 = 6912!\n\tDone.")

# (model fixture and options, prompt) -> SHA-256 of the book's parts (see digest)
DIGESTS = {
    ("tiny", "short"):
        "e1546d7048da1a301f8e16c922005e8f6b0b4137fc6a01763a9015d838ddc7f9",
    ("tiny", "long"):
        "07469e38d442010f71120d58411de375788c09322d35672569d8f6387be4d718",
    ("small_dir", "short"):
        "677f16b2a339081f82fb6c48c2f66a7e674a540899be4fe5af09ea2f4a2537d0",
    ("small_dir", "long"):
        "4297a7e2b07299af47edeb9411b056be177d64944c6a9b2cadf055d3a19a3822",
    ("hf_dir", "short"):
        "04b8477c66c830f74cdc22e3a24505d2a66a55f605ead755fefdb51e63555bae",
    ("tiny-compact", "short"):
        "3e4f94ce98e30955464d529529b487a6e839108a222f53122fc637da982d73b1",
    ("hf_dir", "long"):
        "fc3a612f72ff90da3c7af18cc572a63c331cbc76582d376740a423eef5a3caef",
    ("tiny-typed", "short"):
        "0ed2c38d37ba6efef231b1df78b37a788199d36a7a7488599ac8a3b401b59ca6",
}
SLOW_DIGESTS = {("small-random", "short"):
        "05d271fc149673919b2513baba27b710386ac33e63cfd59a8c0d1f9fabc88eab"}
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
    model, _, option = kind.rpartition("-") if kind.endswith(("-compact", "-typed")) else (kind, "", "")
    build_workbook(_model(model, request), PROMPTS[length][model], out, progress=False, compact=option == "compact",
                   typed_prompt=option == "typed")
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
