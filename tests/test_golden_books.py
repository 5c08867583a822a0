"""Refactoring guard: workbooks are byte-identical to the ones recorded here. The digests
were first recorded at commit 6e9d6a5 and reproduced by the step redesign (75b3bf6); a
digest changes only when the workbook's content does: update it in the same commit as a
deliberate change to what the builder writes, and say why there.

Changes since: r= on every cell by default and the vocabulary softmax as a SUM of per-cell
exps (issue #12: Gnumeric and IronCalc compute such books right)."""
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
        "091444eededcec7ba2a49e0a4a64c8c949e8880c1cf21a4142ce0fae75d0a959",
    ("tiny", "long"):
        "7fc482bfe6d7f13ef0c57c6c94955e25ba6efa97aa0d0900fa6c3714dd7ddaa1",
    ("small_dir", "short"):
        "89a3217b111a10a83df9274c18a626d69233f0f951bc0b52ddd8aa5465eeec6b",
    ("small_dir", "long"):
        "86f3e3f913313cb185494ba65bcee0f273a3196e1ff2727926fd1c249e759772",
    ("hf_dir", "short"):
        "1c72697449701b88e4d6a8847b6247bb89a255b69818963dcca30b27ab0c580d",
    ("tiny-compact", "short"):
        "2a32c4678438840e2a8f30c2ce0a79cedf7edecbbb8bff4de55b45e77ff1d3d5",
    ("hf_dir", "long"):
        "36eed5a3c8af14047c3bdeaada12753e1452b3e8b25402adb1f3e649e870fdc8",
}
SLOW_DIGESTS = {("small-random", "short"):
        "09d0c866198aa0e9bb138bbf23db36cd81c9c57c59d71d525ea970a2ab00ea60"}
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
