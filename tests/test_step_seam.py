"""The seam of the step design: a component defined here, and only here, joins a model and
shows up in the workbook, the reference, the check and the lesson, with no other module
touched. The expected numbers are worked out by hand in this file from the plain model."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Iterable

import numpy as np
import openpyxl
import pytest

from sheetgpt import gpt2
from sheetgpt.architectures import lay_out, register
from sheetgpt.builder import build_workbook
from sheetgpt.check import check_workbook
from sheetgpt.export import export_lesson
from sheetgpt.layout import Block, BookOptions, Layout
from sheetgpt.reference import forward
from sheetgpt.steps.base import BuildInputs, Cells, Component, Formula, Positions, Values, numbered_header

from helpers import SMALL_PROMPT, edit_formula, rewrite_part, sheet_parts

SCALE = 0.5


class ScaledStream(Component):
    """The residual stream times a constant, before the final layer norm."""

    stage, kind, short_title = "output", "scaled", "The stream, scaled"
    lesson = "<p id='scaled-lesson'>Every one of the {{ m.D }} numbers of each row is multiplied by {{ c.scale }}.</p>"

    def __init__(self, layout: Layout, positions: Positions, x: Block, scale: float):
        super().__init__(layout)
        self.positions, self.x, self.scale = positions, x, scale
        self.add_sheet("scaled", f"The stream times {scale} [{layout.T} x {x.n_cols}]")
        self.out = self.add_block("scaled", layout.T, x.n_cols, note="The cell of the stream, scaled.")
        self.read(x)

    def compute(self, v: Values) -> None:
        v[self.out.name] = self.scale * v[self.x.name]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        yield Formula(self.out, f"{self.scale}*{self.x.at(0, 0)}")
        yield self.positions.labels(self.out)
        yield numbered_header(self.out)


def scaled_gpt2(layout: Layout) -> list[Component]:
    """GPT-2 with ScaledStream between the last layer and the final layer norm."""
    inputs, parts = gpt2.embedding(layout)
    x = parts[-1].out
    for i in range(layout.cfg.n_layer):
        parts += gpt2.transformer_block(layout, i, x, inputs)
        x = parts[-1].out
    parts.append(ScaledStream(layout, inputs.positions, x, SCALE))  # the one new line
    return parts + gpt2.output(layout, parts[-1].out, inputs)


register("scaled-gpt2", scaled_gpt2)  # the one registration: the book names it, readback finds it
SCALED = BookOptions(architecture="scaled-gpt2")


def by_hand(model, ids: list[int]) -> np.ndarray:
    """The scaled model's logits from the plain model's last stream, in NumPy written here."""
    w = {k: np.asarray(v, np.float64) for k, v in model.weights.params.items()}
    n_layer = model.weights.config.n_layer
    x = SCALE * forward(model.weights, ids)[f"h{n_layer - 1}_resid_2"][-1]  # [D]
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-5) * w["ln_f.weight"] + w["ln_f.bias"]
    return w["wte.weight"] @ x  # [V]


@pytest.fixture(scope="module")
def scaled_book(small_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("seam") / "scaled.xlsx"
    build_workbook(small_model, SMALL_PROMPT, path, progress=False, options=SCALED)
    return path


def test_reference_composes_the_new_step(small_model):
    ids = small_model.tokenizer.encode(SMALL_PROMPT)
    ref = forward(small_model.weights, ids, layout=lay_out(small_model.weights.config, len(ids), SCALED))
    plain = forward(small_model.weights, ids)
    assert list(ref).index("scaled") == list(ref).index("ln_f_mean") - 1
    np.testing.assert_allclose(ref["logits"][:, 0], by_hand(small_model, ids), rtol=1e-12, atol=1e-12)
    assert not np.allclose(ref["logits"], plain["logits"], rtol=1e-9, atol=0), "layer norm's eps makes scale matter"


def test_workbook_has_the_new_sheet_name_and_formula(scaled_book: Path):
    wb = openpyxl.load_workbook(scaled_book)
    names = wb.sheetnames
    assert names.index("scaled") == names.index("ln_f") - 1
    assert "scaled" in wb.defined_names
    sheet = wb["scaled"]
    assert sheet["B3"].value == f"={SCALE}*'h0 resid_2'!B3"
    assert sheet["A1"].value.startswith("The stream times 0.5")
    assert sheet["B3"].comment is not None and "scaled" in sheet["B3"].comment.text
    assert "=" + "'h0 resid_2'" not in str(wb["ln_f"]["B3"].value)  # ln_f now reads the scaled stream
    guide_map = [c.value for c in wb["Guide"]["A"] if c.value]
    assert "scaled" in guide_map


def test_check_compares_the_new_step_and_catches_a_change_to_it(scaled_book: Path, tmp_path: Path):
    report = check_workbook(scaled_book, progress=False)  # the book says which architecture it is
    assert report.ok, report.first_failure
    step = next(s for s in report.steps if s.name == "scaled")
    assert step.ok and step.max_rel_err < 1e-12
    tampered = tmp_path / "tampered.xlsx"
    rewrite_part(scaled_book, tampered, sheet_parts(scaled_book)["scaled"],
                 lambda xml: edit_formula(xml, "B3", f"{SCALE}*", "0.25*"))
    bad = check_workbook(tampered, progress=False)
    assert not bad.ok and bad.first_failure == {"step": "scaled", "sheet": "scaled", "cell": "B3"}


def test_lesson_has_a_page_for_the_new_step(scaled_book: Path, tmp_path: Path):
    export_lesson(scaled_book, tmp_path / "lesson", progress=False)
    page = (tmp_path / "lesson" / "scaled.html").read_text(encoding="utf-8")
    text = _text(page)
    assert "The stream, scaled" in text
    assert "Every one of the 8 numbers of each row is multiplied by 0.5." in text
    assert f"={SCALE}*&#39;h0 resid_2&#39;!B3" in page or f"={SCALE}*'h0 resid_2'!B3" in text
    ln_f = (tmp_path / "lesson" / "ln_f.html").read_text(encoding="utf-8")
    assert 'href="scaled.html"' in ln_f  # the next page links back to it


def _text(html: str) -> str:
    parts: list[str] = []

    class P(HTMLParser):
        def handle_data(self, data):
            parts.append(data)

    P().feed(html)
    return " ".join(" ".join(parts).split())


def test_a_book_of_an_architecture_this_sheetgpt_does_not_know_is_one_line(scaled_book: Path, tmp_path: Path):
    from helpers import run_cli

    renamed = tmp_path / "renamed.xlsx"
    rewrite_part(scaled_book, renamed, sheet_parts(scaled_book)["_meta"],
                 lambda xml: xml.replace("scaled-gpt2", "gpt2-with-extras"))
    r = run_cli("check", str(renamed), cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "architecture 'gpt2-with-extras' is not one this sheetgpt knows (gpt2" in r.stderr
