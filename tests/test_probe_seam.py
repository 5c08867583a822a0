"""The probe seam: a probe defined here, and only here, with one registration, is an option
of `sheetgpt build`, adds its sheet, its Guide line and its metadata row to the book, its
step to the reference and to check, and its page and picture to the lesson. The expected
number is worked out in this file, from a plain NumPy GPT-2 (helpers.gpt2_forward)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import openpyxl
import pytest

from sheetgpt import probes
from sheetgpt.check import check_workbook
from sheetgpt.cli import main
from sheetgpt.export import export_lesson
from sheetgpt.layout import Block, Layout
from sheetgpt.probes import PROBES, Forward, Probe
from sheetgpt.readback import load_book
from sheetgpt.reference import forward
from sheetgpt.steps.base import BuildInputs, Cells, Component, Formula, Values

from helpers import SMALL_PROMPT, edit_formula, gpt2_forward, rewrite_part, sheet_parts


class LogitMargin(Component):
    """How far the favourite leads: its logit minus the runner-up's."""

    stage, kind, short_title = "output", "margin", "How sure: the favourite's lead"
    lesson = "<p id='margin-lesson'>The top logit minus the second, after all {{ m.n_layer }} layers.</p>"

    def __init__(self, layout: Layout, top_logits: Block):
        super().__init__(layout)
        self.top = top_logits
        self.add_sheet("margin", "The favourite's logit minus the runner-up's [1]")
        self.out = self.add_block("logit_margin", 1, 1, note="The largest logit minus the second largest.")
        self.read(top_logits)

    def compute(self, v: Values) -> None:
        v[self.out.name] = v[self.top.name][:1] - v[self.top.name][1:2]  # [1, 1]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        yield Formula(self.out, f"{self.top.at(0, 0)}-{self.top.at(1, 0)}")


def margin_picture(book, step: LogitMargin, facts: dict, out: Path):
    from sheetgpt.lesson import IMG_DIR, Figure

    src = f"{IMG_DIR}/margin.png"
    (out / src).write_bytes(b"\x89PNG\r\n\x1a\n")  # a picture's place is all this test needs
    return [(step.sheet.name, Figure(src, "The margin", f"{float(book[step.out.name][0, 0]):.3f}"))]


def compose(layout: Layout, model: Forward, on: int) -> list[Component]:
    return [LogitMargin(layout, model.prediction.top_logits)]


MARGIN = Probe("margin", "how far the favourite leads (a test's probe)", compose,
               guide=lambda layout, on: ["Sheet 'margin': how far the favourite leads."],
               figures={LogitMargin.kind: margin_picture})


@pytest.fixture(scope="module")
def registered():
    probes.register(MARGIN)  # the one registration
    yield MARGIN
    del PROBES[MARGIN.name]  # the other tests' books must not record it


@pytest.fixture(scope="module")
def margin_book(registered, small_model_dir: Path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("probe") / "margin.xlsx"
    code = main(["build", SMALL_PROMPT, "--model", str(small_model_dir), "--fixed", "--margin", "--no-lens",
                 "--form", "cells", "-o", str(path), "--quiet"])
    assert code == 0
    return path


def by_hand(weights, ids: list[int]) -> float:
    """The top two logits' difference, from the weights as the book holds them."""
    logits = gpt2_forward(weights.params, ids, weights.config.n_head)["logits"]
    first, second = np.sort(logits)[::-1][:2]
    return float(first - second)


def test_the_probe_is_a_sheet_a_guide_line_and_a_metadata_row(margin_book: Path):
    wb = openpyxl.load_workbook(margin_book)
    assert "margin" in wb.sheetnames and "logit_margin" in wb.defined_names
    assert wb["margin"]["B3"].value == "='prediction'!C8-'prediction'!C9"
    assert "Sheet 'margin': how far the favourite leads." in [c.value for c in wb["Guide"]["A"]]
    meta = {row[0].value: row[1].value for row in wb["_meta"].iter_rows()}
    assert meta["margin"] == 1 and meta["lens"] == 0
    assert load_book(margin_book, progress=False).layout.options.probe("margin") == 1


def test_the_reference_and_check_compute_it(registered, margin_book: Path, small_model, tmp_path: Path):
    book = load_book(margin_book, progress=False)
    ref = forward(book.weights, book.ids, layout=book.layout, given=book.given())
    assert book.ids == small_model.tokenizer.encode(SMALL_PROMPT)
    assert abs(ref["logit_margin"][0, 0] - by_hand(book.weights, book.ids)) < 1e-12
    report = check_workbook(margin_book, small_model, progress=False)
    step = next(s for s in report.steps if s.name == "logit_margin")
    assert report.ok and step.ok and step.max_rel_err < 1e-12
    tampered = tmp_path / "tampered.xlsx"
    rewrite_part(margin_book, tampered, sheet_parts(margin_book)["margin"],
                 lambda xml: edit_formula(xml, "B3", "C9", "C10"))
    bad = check_workbook(tampered, progress=False)
    assert bad.first_failure == {"step": "logit_margin", "sheet": "margin", "cell": "B3"}
    assert [f.kind for f in bad.failures][:1] == ["step"]


def test_the_lesson_has_its_page_and_picture(registered, margin_book: Path, tmp_path: Path):
    export_lesson(margin_book, tmp_path / "lesson", progress=False)
    page = (tmp_path / "lesson" / "margin.html").read_text(encoding="utf-8")
    assert "margin-lesson" in page and "How sure: the favourite" in page
    assert 'src="img/margin.png"' in page and (tmp_path / "lesson" / "img" / "margin.png").is_file()
