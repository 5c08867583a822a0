"""Refactoring guard: workbooks built now are byte-identical to those built before the
forward pass was split into components (digests recorded at commit 6e9d6a5, the last one
before that change). A digest changes only when the workbook's content does: update it
in the same commit as a deliberate change to what the builder writes, and say why."""
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
        "695e1ad487ecbc1ad53b72ea57b52f83904db59e4b230b93b472c4b1a45df3f1",
    ("tiny", "long"):
        "25b4ee3923bf39fc22ecc55d6326196307c6f05643eb4a64c470ff8f98170649",
    ("small_dir", "short"):
        "6c81cbafab12406443ee7ac0940943852fd4fcae2caecf07db5d10c47fa9d479",
    ("small_dir", "long"):
        "812f76e90221c474852a87301319721b271c324d878da03ffa79766c6cf99982",
    ("hf_dir", "short"):
        "645363b0fff0e28f603d9562c388fed3248b310e64a0886d1666d4729c9e7fc6",
    ("hf_dir", "long"):
        "5b860c90c19f38c95f568c04b52b4d82b3359aafb241fd05a81557e1795063ce",
}
SLOW_DIGESTS = {("small-random", "short"):
        "ce02806922fcfe4f11a4478ced3ac130e6c586114e5514957c8068ea663393bb"}
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
    build_workbook(_model(kind, request), PROMPTS[length][kind], out, progress=False)
    return digest(out)


@pytest.mark.parametrize("kind,length", list(DIGESTS))
def test_workbook_bytes_unchanged(kind: str, length: str, request, tmp_path: Path) -> None:
    assert _build_digest(kind, length, request, tmp_path) == DIGESTS[kind, length]


@pytest.mark.slow
@pytest.mark.parametrize("kind,length", list(SLOW_DIGESTS))
def test_small_random_bytes_unchanged(kind: str, length: str, request, tmp_path: Path) -> None:
    assert _build_digest(kind, length, request, tmp_path) == SLOW_DIGESTS[kind, length]
