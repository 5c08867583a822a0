"""The exported HTML lesson: links, order, formulas, values, figures, and a real browser.

Independent sides: openpyxl reads the formulas, `reference.forward` on the model's own
float32 weights gives the values, the expected page order is spelled out here, and
headless Chromium renders the pages.
"""
from __future__ import annotations

import re
import sys
import tomllib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from openpyxl.worksheet.formula import ArrayFormula

from sheetgpt.export import templates_dir
from sheetgpt.jobs import export
from sheetgpt.load import load_model
from sheetgpt.reference import forward

import chromium

PROMPT = "Mike is quick. He moves"
LAYER_STEPS = ["ln_1", "qkv", "kT", "scores", "softmax", "probs", "attn", "attn_proj", "resid_1",
               "ln_2", "fc", "gelu", "mlp_proj", "resid_2"]
REPO = Path(__file__).resolve().parent.parent


class Page(HTMLParser):
    """What the tests need from one page: title, links, images, formulas, value cells."""

    def __init__(self, path: Path):
        super().__init__()
        self.path, self.title, self.links, self.images = path, "", [], []
        self.rel: dict[str, str] = {}  # prev / next
        self.listed: list[str] = []  # links inside <div class="steps">: the index's table of contents
        self._steps_depth = 0
        self.formulas: list[dict] = []  # data-sheet, data-cell, text
        self.cells: list[dict] = []  # data-block, data-i, data-j, data-v, text
        self._open: dict | None = None
        self._in_title = False
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and (self._steps_depth or "steps" in a.get("class", "").split()):
            self._steps_depth += 1
        if tag == "title":
            self._in_title = True
        elif tag in ("a", "link") and "href" in a:
            self.links.append(a["href"])
            if self._steps_depth:
                self.listed.append(a["href"])
            if a.get("rel") in ("prev", "next"):
                self.rel[a["rel"]] = a["href"]
        elif tag in ("img", "script") and "src" in a:
            self.images.append(a["src"])
        elif tag == "code" and "data-cell" in a:
            self._open = {**a, "text": "", "into": self.formulas}
        elif tag == "td" and "data-block" in a:
            self._open = {**a, "text": "", "into": self.cells}

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag):
        if tag == "div" and self._steps_depth:
            self._steps_depth -= 1
        if tag == "title":
            self._in_title = False
        if tag in ("code", "td") and self._open is not None:
            self._open.pop("into").append(self._open)
            self._open = None


@pytest.fixture(scope="module")
def lesson(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's lesson, built from scratch (workbook included) by jobs.export."""
    out = tmp_path_factory.mktemp("lesson")
    index = export(None, "tiny", PROMPT, out, progress=False)
    assert index == out / "index.html"
    return out


@pytest.fixture(scope="module")
def pages(lesson: Path) -> dict[str, Page]:
    return {p.name: Page(p) for p in sorted(lesson.glob("*.html"))}


@pytest.fixture(scope="module")
def model():
    return load_model("tiny")


def expected_sheets(n_layer: int) -> list[str]:
    """The lesson's pages of a typed-prompt book: the controls, the tokenizer, the model,
    then the logit lens and attribution (on by default)."""
    return (["controls", "tok_chars", "tok_words", "tok_bpe", "tok_ids", "tokens", "embed_tok", "embed"]
            + [f"h{i} {s}" for i in range(n_layer) for s in LAYER_STEPS]
            + ["ln_f", "logits", "prediction", "lens_stream", "lens_norm", "lens_logits", "lens",
               "dla_pieces", "dla_dir", "dla"])


def sheet_of(page: Page) -> str:
    """The workbook sheet a page explains, from its formulas' addresses."""
    sheets = {f["data-sheet"] for f in page.formulas}
    if not sheets and page.path.name == "controls.html":  # inputs only: no step formulas to show
        return "controls"
    assert len(sheets) == 1, (page.path.name, sheets)
    return sheets.pop()


def chain(pages: dict[str, Page]) -> list[Page]:
    """Step pages in the order the index lists them, checked against their prev/next links."""
    order = pages["index.html"].listed
    for a, b in zip(order, order[1:]):
        assert pages[a].rel.get("next") == b and pages[b].rel.get("prev") == a, (a, b)
    assert "prev" not in pages[order[0]].rel and "next" not in pages[order[-1]].rel
    return [pages[h] for h in order]


# -- structure ----------------------------------------------------------------------------
def test_every_local_link_and_image_resolves(lesson: Path, pages: dict[str, Page]):
    checked = 0
    for page in pages.values():
        for ref in page.links + page.images:
            url = urlsplit(ref)
            assert not url.scheme and not url.netloc, f"{page.path.name} points outside the lesson: {ref}"
            if not url.path:  # a bare #fragment
                continue
            assert not url.path.startswith("/"), f"{page.path.name}: absolute path {ref}"
            target = (page.path.parent / unquote(url.path)).resolve()
            assert target.is_file(), f"{page.path.name}: {ref} does not exist"
            assert lesson.resolve() in target.parents, f"{page.path.name}: {ref} leaves the lesson directory"
            checked += 1
        if page.path.name != "index.html":
            assert "index.html" in page.links, f"{page.path.name} has no link back to the index"
    assert checked > 4 * len(pages)


def test_pages_follow_the_forward_pass(pages: dict[str, Page], model):
    steps = chain(pages)
    sheets = expected_sheets(model.weights.config.n_layer)
    assert [sheet_of(p) for p in steps] == sheets
    assert len(pages) == len(sheets) + 1  # no page the index does not list
    assert all(p.title.strip() for p in pages.values())
    assert "Layer 1: Attention weights" in pages["h1-probs.html"].title


def test_index_says_the_weights_are_random(pages: dict[str, Page], lesson: Path):
    html = (lesson / "index.html").read_text(encoding="utf-8")
    assert "random weights" in html and PROMPT in html
    assert "book.xlsx" in pages["index.html"].links  # the workbook built beside the lesson


def test_formulas_are_the_workbooks(lesson: Path, pages: dict[str, Page]):
    from openpyxl import load_workbook

    wb = load_workbook(lesson / "book.xlsx", read_only=True)
    try:
        n = 0
        for page in pages.values():
            for f in page.formulas:
                value = wb[f["data-sheet"]][f["data-cell"]].value
                text = "{" + value.text + "}" if isinstance(value, ArrayFormula) else value  # shown as {=...}
                assert text == f["text"], (page.path.name, f["data-cell"])
                n += 1
    finally:
        wb.close()
    assert n >= len(pages) - 1  # every step page shows at least one


def test_formulas_are_shown_from_each_blocks_first_cell(pages: dict[str, Page]):
    qkv = pages["h0-qkv.html"].formulas
    assert qkv[0]["data-cell"] == "B3"  # the whole product, one array formula:
    assert qkv[0]["text"].startswith("{=MMULT('h0 ln_1'!$D$3:$S$18,'h.0.attn.c_attn.weight'!$B$3:$AW$18)")
    ln = [f["data-cell"] for f in pages["h1-ln_2.html"].formulas]
    assert ln == ["B3", "C3", "D3"]  # mean, variance, normalised row


def test_values_shown_match_the_reference(pages: dict[str, Page], model, lesson: Path):
    from sheetgpt.readback import load_book

    ids = model.tokenizer.encode(PROMPT)
    book = load_book(lesson / "book.xlsx")  # its layout, and its inputs: the prompt and the merge table
    ref = forward(model.weights, ids, layout=book.layout, given=book.given())
    ref = {name: ref[name] for name in book.layout.steps}
    assert [int(i) for i in ref["prompt_ids"][:len(ids), 0]] == ids
    checked = set()
    for page in pages.values():
        for c in page.cells:
            if c["data-block"] not in ref:  # text: the prompt's characters and words
                continue
            want = ref[c["data-block"]][int(c["data-i"]), int(c["data-j"])]
            if c["data-v"] == "":  # an empty (masked) cell
                assert np.isnan(want) and c["text"] == "", (page.path.name, c)
                continue
            got = float(c["data-v"])
            # the workbook computes from the weights' 9-digit decimals, the reference from
            # their float32 values: they agree to ~1e-8 of the block's scale
            scale = np.nanmax(np.abs(ref[c["data-block"]]))
            assert abs(got - want) <= 1e-6 * scale, (page.path.name, c)
            assert float(c["text"]) == pytest.approx(got, rel=1e-3, abs=1e-12), (page.path.name, c)
            checked.add(c["data-block"])
    # the tokenizer's sheets are wide: their previews show the first columns only
    from sheetgpt.steps.prompt import is_tokenizer
    missing = [name for name in ref if name not in checked and not is_tokenizer(book.layout.owner(
        book.layout.blocks[name]))]
    assert {"char_codes", "prompt_ids", "bpe_symbols"} <= checked  # but their first columns are shown
    assert not missing, f"steps never previewed: {missing}"


def test_index_shows_the_workbooks_top_5(lesson: Path, model):
    ids = model.tokenizer.encode(PROMPT)
    top = forward(model.weights, ids)["top_ids"][:, 0].astype(int)
    html = (lesson / "index.html").read_text(encoding="utf-8")
    shown = [int(x) for x in re.findall(r"</code></td><td>(\d+)</td>", html)]
    assert shown == top.tolist()


def test_figures_exist(lesson: Path, pages: dict[str, Page], model):
    from matplotlib.image import imread

    cfg = model.weights.config
    for layer in range(cfg.n_layer):
        heads = [s for s in pages[f"h{layer}-probs.html"].images if s.endswith(".png")]
        assert len(heads) == cfg.n_head
    pca = [s for s in pages["embed.html"].images if "pca" in s]
    top = [s for s in pages["prediction.html"].images if s.endswith(".png")]
    assert pca and top
    for src in heads + pca + top:
        path = lesson / src
        assert path.stat().st_size > 5000, src
        h, w = imread(path).shape[:2]
        assert h > 200 and w > 200, src


def test_attention_pictures_show_the_filled_positions_only(lesson: Path, model, tmp_path: Path, monkeypatch):
    """The book holds 16 positions and the prompt fills 6: each head's picture is 6 x 6, the
    prompt's tokens (tiktoken's count), and each row still sums to 1 (padding only ever
    comes after, so it takes no weight)."""
    from sheetgpt import figures
    from sheetgpt.export import export_lesson

    from helpers import offline_tiktoken_gpt2

    seen = []
    monkeypatch.setattr(figures, "attention_heatmap", lambda probs, labels, title, path: seen.append((probs, labels)))
    export_lesson(lesson / "book.xlsx", tmp_path / "again", progress=False)
    n, cfg = len(offline_tiktoken_gpt2().encode(PROMPT)), model.weights.config
    assert n == 6 and len(seen) == cfg.n_layer * cfg.n_head
    for probs, labels in seen:
        assert probs.shape == (n, n) and len(labels) == n
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    assert seen[0][1][0] == "Mike" and seen[0][1][-1] == "␣moves"


# -- packaging ------------------------------------------------------------------------------
def test_templates_are_packaged():
    """A non-editable install copies templates/ to sheetgpt/templates (pyproject package-dir);
    the explicit package list must name every package of the source tree."""
    conf = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert conf["package-dir"]["sheetgpt.templates"] == "templates"
    assert "*.html" in conf["package-data"]["sheetgpt.templates"]
    packages = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "sheetgpt").rglob("__init__.py")}
    assert packages | {"sheetgpt.templates"} == set(conf["packages"])
    assert {"index.html", "step.html", "style.css"} <= {p.name for p in templates_dir().iterdir()}


@pytest.mark.slow
def test_non_editable_install_finds_templates(tmp_path: Path):
    import shutil
    import subprocess

    src, target = tmp_path / "src", tmp_path / "site"  # a copy: pip's in-tree build leaves build/ behind
    for name in ("sheetgpt", "templates"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, timeout=300)
    code = "from sheetgpt.export import templates_dir; print(templates_dir())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)},
                         capture_output=True, text=True, check=True).stdout.strip()
    assert Path(out) == target / "sheetgpt" / "templates"
    assert {"index.html", "step.html", "style.css"} <= {p.name for p in Path(out).iterdir()}


# -- in a browser ---------------------------------------------------------------------------
@pytest.mark.chromium
@pytest.mark.skipif(not chromium.CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                    "(apt-get install -y --no-install-recommends chromium)")
@pytest.mark.parametrize("page, title", [("index.html", "GPT-2, one step at a time"),
                                         ("h0-probs.html", "Layer 0: Attention weights")])
def test_chromium_renders_the_page(lesson: Path, pages: dict[str, Page], tmp_path: Path, page: str, title: str):
    from matplotlib.image import imread

    png = chromium.screenshot(lesson / page, tmp_path / "shot.png")
    assert png.stat().st_size > 20_000
    pixels = imread(png)
    assert pixels.shape[:2] == (900, 1200)
    assert pixels[..., :3].std() > 0.05, "the screenshot is blank"

    dom = chromium.dump_dom(lesson / page)
    assert re.search(r"<title>[^<]*" + re.escape(title), dom)
    assert f"<h1>{title}</h1>" in dom
    n = len([s for s in pages[page].images if s.endswith(".png")])
    assert n > 0
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-images="ok"' in body and f'data-images-loaded="{n}/{n}"' in body, body
