"""The book's native charts: every part the writer emits is valid against the OOXML schemas
(ECMA-376, vendored in tests/ooxml-schemas/), LibreOffice draws each chart from live cells
(its chart objects, read through UNO, plot what an independent GPT-2 forward pass
computes, and plot the new numbers after another prompt is typed in), and check fails a
chart that draws other cells, naming it."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sheetgpt.builder import build_workbook
from sheetgpt.layout import BookOptions

from helpers import gpt2_forward, read_parts, run_cli, small_random_model, softmax, write_parts

SCHEMAS = Path(__file__).parent / "ooxml-schemas" / "patched"
SHAPE = dict(n_layer=2, n_head=2, n_embd=8, n_ctx=16)
PROMPT, TYPED = "The sheet is large", "isn't it?"
GUIDE_TOP, LENS, DLA, WRITTEN = ("The next token: the top 5", "Logit lens: how sure each layer is",
                                 "Each layer's push on the target's logit", "How sure it was of each written token")
needs_libreoffice = pytest.mark.skipif(shutil.which("soffice") is None or not Path("/usr/bin/python3").exists(),
                                       reason="apt-get install libreoffice-calc-nogui python3-uno")


@pytest.fixture(scope="module")
def micro(small_vocab_dir):
    return small_random_model(small_vocab_dir, seed=11, name="micro-test", **SHAPE)


@pytest.fixture(scope="module")
def books(micro, tmp_path_factory) -> dict[str, Path]:
    """The default book (typed prompt, lens, attribution) and one that writes 3 tokens."""
    out = tmp_path_factory.mktemp("chart_books")
    made = {}
    for name, probes in (("default", {"lens": 1, "dla": 1}), ("writes", {"generate": 3, "lens": 1, "dla": 1})):
        made[name] = out / f"{name}.xlsx"
        build_workbook(micro, PROMPT, made[name], progress=False, typed_prompt=True, positions=12,
                       options=BookOptions(probes=probes))
    return made


# --- the parts are valid OOXML ----------------------------------------------------------------

def _schema(name: str):
    from lxml import etree

    return etree.XMLSchema(etree.parse(str(SCHEMAS / name)))


PART_SCHEMAS = [(re.compile(r"xl/worksheets/sheet\d+\.xml"), "sml.xsd"), (re.compile(r"xl/workbook\.xml"), "sml.xsd"),
                (re.compile(r"xl/styles\.xml"), "sml.xsd"), (re.compile(r"xl/comments\d+\.xml"), "sml.xsd"),
                (re.compile(r"xl/drawings/drawing\d+\.xml"), "dml-spreadsheetDrawing.xsd"),
                (re.compile(r"xl/charts/chart\d+\.xml"), "dml-chart.xsd"),
                (re.compile(r"xl/drawings/vmlDrawing\d+\.vml"), "vml-wrapper.xsd"),
                (re.compile(r".*\.rels"), "opc-relationships.xsd"),
                (re.compile(r"\[Content_Types\]\.xml"), "opc-contentTypes.xsd")]


def _invalid_parts(book: Path, skip=lambda name: False) -> list[str]:
    from lxml import etree

    schemas, problems = {}, []
    with zipfile.ZipFile(book) as z:
        for name in z.namelist():
            if skip(name):
                continue
            schema = next((s for pattern, s in PART_SCHEMAS if pattern.fullmatch(name)), None)
            assert schema is not None, f"{name}: a part no schema here covers"
            validator = schemas.setdefault(schema, _schema(schema))
            if not validator.validate(etree.fromstring(z.read(name))):
                problems.append(f"{name}: {validator.error_log.last_error}")
    return problems


def test_every_part_of_a_book_that_writes_is_schema_valid(books):
    """Every part, weights too, of a book with every chart: the Guide's two, the lens's, the
    attribution's."""
    assert _invalid_parts(books["writes"]) == []
    with zipfile.ZipFile(books["writes"]) as z:
        assert len([n for n in z.namelist() if n.startswith("xl/charts/")]) == 4


def test_the_default_book_is_schema_valid_with_its_charts(tmp_path):
    """`sheetgpt build`'s own book (the bundled model): every part but the weight sheets,
    which the micro books above validate written by the same code."""
    book = tmp_path / "default.xlsx"
    assert run_cli("build", "O Romeo, Romeo, wherefore art", "-o", str(book), "--quiet", cwd=tmp_path).returncode == 0
    with zipfile.ZipFile(book) as z:
        workbook = z.read("xl/workbook.xml").decode()
    names = re.findall(r'<sheet name="([^"]+)" sheetId="(\d+)"', workbook)
    weights = {f"xl/worksheets/sheet{i}.xml" for name, i in names if name.startswith(("h.", "wte", "wpe", "ln_f"))}
    assert len(weights) >= 50
    assert _invalid_parts(book, skip=lambda part: part in weights) == []


# --- LibreOffice draws them from live cells ---------------------------------------------------

def _lo_charts(book: Path, tmp: Path, *edits: str) -> list[list[dict]]:
    """The charts as LibreOffice reports them: on the fresh open, then after each edit."""
    out = tmp / "charts.json"
    script = Path(__file__).with_name("lo_charts.py")
    subprocess.run(["/usr/bin/python3", str(script), str(book), str(tmp / "profile"), str(out), *edits],
                   check=True, timeout=300, capture_output=True)
    return json.loads(out.read_text())


def _by_title(charts: list[dict]) -> dict[str, dict]:
    return {c["title"]: c for c in charts}


def _expected_top(micro, text: str, k: int = 5) -> tuple[list[str], np.ndarray]:
    """The top k next tokens' text and probabilities after `text`, from a plain NumPy GPT-2."""
    probs = softmax(gpt2_forward(micro.weights.params, micro.tokenizer.encode(text), SHAPE["n_head"])["logits"])
    top = np.argsort(-probs, kind="stable")[:k]
    return [micro.tokenizer.decode([int(i)]) for i in top], probs[top]


@pytest.mark.libreoffice
@needs_libreoffice
def test_libreoffice_draws_the_charts_from_live_cells_and_redraws_them_for_a_typed_prompt(micro, books, tmp_path):
    before, after = _lo_charts(books["default"], tmp_path, "Guide", "4", "1", TYPED)
    for charts, text in ((before, PROMPT), (after, TYPED)):
        charts = _by_title(charts)
        assert set(charts) == {GUIDE_TOP, LENS, DLA}
        top = charts[GUIDE_TOP]
        assert (top["sheet"], top["labels_range"], top["series"][0]["values_range"]) == (
            "Guide", "$prediction.$E$8:$E$12", "$prediction.$D$8:$D$12")
        labels, probs = _expected_top(micro, text)
        assert top["labels"] == labels
        np.testing.assert_allclose(top["series"][0]["values"], probs, rtol=1e-7)  # LibreOffice's own sums
        lens = charts[LENS]  # after the last layer the lens is the prediction itself
        assert [s["values"][-1] for s in lens["series"]] == pytest.approx([probs[0]] * 2, rel=1e-7)
        assert lens["labels"] == ["after layer 0", "after layer 1"]
        assert [s["values_range"] for s in lens["series"]] == ["$lens.$D$3:$D$4", "$lens.$H$3:$H$4"]
        dla = charts[DLA]  # the grid of 2 layers x 2 heads from B10, then the bias, MLP and attention columns
        assert [s["values_range"] for s in dla["series"]] == ["$dla.$G$10:$G$11", "$dla.$F$10:$F$11"]
        assert (dla["labels_range"], dla["labels"]) == ("$dla.$A$10:$A$11", ["layer 0", "layer 1"])
    values = lambda charts, title: _by_title(charts)[title]["series"][0]["values"]
    changed = lambda title: values(before, title) != values(after, title)
    assert changed(GUIDE_TOP) and changed(LENS) and changed(DLA)


@pytest.mark.libreoffice
@needs_libreoffice
def test_the_written_tokens_chart_plots_how_sure_the_model_was(micro, books, tmp_path):
    """Each written token's probability: the softmax of the logits after the position before
    it, from a plain NumPy GPT-2 writing greedily on its own."""
    for charts, text in zip(_lo_charts(books["writes"], tmp_path, "Guide", "4", "1", TYPED), (PROMPT, TYPED)):
        ids, want_text, want_probs = micro.tokenizer.encode(text), [], []
        for _ in range(3):
            probs = softmax(gpt2_forward(micro.weights.params, ids, SHAPE["n_head"])["logits"])
            ids.append(int(np.argmax(probs)))
            want_text.append(micro.tokenizer.decode([ids[-1]]))
            want_probs.append(probs[ids[-1]])
        written = _by_title(charts)[WRITTEN]
        assert (written["sheet"], written["labels"]) == ("Guide", want_text)
        np.testing.assert_allclose(written["series"][0]["values"], want_probs, rtol=1e-7)


# --- check vouches for them -------------------------------------------------------------------

def _edit_chart(book: Path, out: Path, title: str, old: str, new: str) -> Path:
    parts = read_parts(book)
    chart = next(name for name, xml in parts.items() if name.startswith("xl/charts/") and title.encode() in xml)
    assert parts[chart].count(old.encode()) == 1
    parts[chart] = parts[chart].replace(old.encode(), new.encode())
    return write_parts(out, parts)


def test_a_chart_drawing_other_cells_fails_check_naming_it(books, tmp_path):
    moved = _edit_chart(books["default"], tmp_path / "moved.xlsx", GUIDE_TOP, "$D$8:$D$12", "$D$9:$D$13")
    result = run_cli("check", str(moved), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("chart 'The next token: the top 5' (sheet 'Guide', I3) draws other cells: series 'probability' reads its "
            "values from 'prediction'!$D$9:$D$13, not top_probs ('prediction'!$D$8:$D$12)") in result.stdout
    assert result.stdout.strip().splitlines()[-1] == ("FAIL: the chart 'The next token: the top 5' at sheet 'Guide' "
                                                      "cell I3 draws cells other than its own")
    report = json.loads(run_cli("check", str(moved), "--json", cwd=tmp_path).stdout)
    assert report["first_failure"] == {"step": GUIDE_TOP, "sheet": "Guide", "cell": "I3"}


def test_a_chart_whose_labels_moved_fails_check(books, tmp_path):
    moved = _edit_chart(books["default"], tmp_path / "labels.xlsx", LENS, "'lens'!$A$3:$A$4</c:f></c:strRef></c:cat>"
                        "<c:val><c:numRef><c:f>'lens'!$H$3", "'lens'!$B$3:$B$4</c:f></c:strRef></c:cat><c:val><c:numRef>"
                        "<c:f>'lens'!$H$3")
    result = run_cli("check", str(moved), cwd=tmp_path)
    assert result.returncode == 1
    assert "series 'the final prediction' reads its labels from 'lens'!$B$3:$B$4" in result.stdout


def test_a_book_without_its_charts_still_checks_and_says_so(books, tmp_path):
    """A program that saves the book again may drop its charts: nothing shown is wrong."""
    parts = {name: xml for name, xml in read_parts(books["default"]).items() if "drawings/drawing" not in name
             and "charts/" not in name}
    for name in [n for n in parts if n.startswith("xl/worksheets/sheet")]:
        parts[name] = re.sub(rb'<drawing r:id="rId1"/>', b"", parts[name])
    bare = write_parts(tmp_path / "bare.xlsx", parts)
    result = run_cli("check", str(bare), cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "chart 'The next token: the top 5' (sheet 'Guide', I3) is not in the book" in result.stdout


def test_a_moved_defined_name_is_refused_and_another_spelling_is_not(books, tmp_path):
    """Defined names and chart series are matched to their blocks by one rule: the same cells,
    however a program spells the sheet (LibreOffice drops the quotes)."""
    parts = read_parts(books["default"])
    workbook = parts["xl/workbook.xml"]
    assert b"<definedName name=\"top_probs\">'prediction'!$D$8:$D$12</definedName>" in workbook
    parts["xl/workbook.xml"] = workbook.replace(b"'prediction'!$D$8:$D$12<", b"prediction!$D$8:$D$12<")
    respelled = run_cli("check", str(write_parts(tmp_path / "respelled.xlsx", parts)), cwd=tmp_path)
    assert respelled.returncode == 0, respelled.stdout + respelled.stderr
    parts["xl/workbook.xml"] = workbook.replace(b"'prediction'!$D$8:$D$12<", b"'prediction'!$D$9:$D$13<")
    moved = run_cli("check", str(write_parts(tmp_path / "moved.xlsx", parts)), cwd=tmp_path)
    assert moved.returncode != 0
    assert "defined name 'top_probs' should be 'prediction'!$D$8:$D$12" in moved.stderr + moved.stdout
