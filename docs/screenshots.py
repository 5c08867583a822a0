"""Regenerate the README's screenshots from the bundled Shakespeare model:

    python docs/screenshots.py

Exports the lesson of PROMPT's book and shoots its index and layer 0's attention page with
headless Chromium: docs/lesson-index.png, docs/lesson-attention.png and
docs/lesson-tokenizer.png (the typed prompt's merges, round by round). Then builds the same
prompt with --generate 6, renders its Guide as LibreOffice prints it, charts and all
(soffice to PDF, first page only, then pdftoppm: needs libreoffice-calc-nogui and
poppler-utils): docs/workbook-guide.png; and keeps four of its lesson's figures:
docs/lesson-generate.png, docs/lesson-lens.png, docs/lesson-intervention.png and
docs/lesson-dla.png; and one of a book that draws its tokens: docs/lesson-sample.png.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image  # comes with matplotlib

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS.parent / "tests")]  # a source checkout, installed or not
from chromium import screenshot  # noqa: E402

from sheetgpt.engines.lo_uno import RECALC_ALWAYS  # noqa: E402
from sheetgpt.export import export_lesson  # noqa: E402
from sheetgpt.jobs import build, export  # noqa: E402

PROMPT = "O Romeo, Romeo, wherefore art"
SHOTS = {"lesson-index.png": ("index.html", 900), "lesson-attention.png": ("h0-probs.html", 1180),
         "lesson-tokenizer.png": ("tok_bpe.html", 1400)}
FIGURES = {"lesson-generate.png": "generate-steps.png", "lesson-lens.png": "lens-layers.png",
           "lesson-intervention.png": "controls-before-after.png", "lesson-dla.png": "dla-grid.png"}
SAMPLED = {"lesson-sample.png": "sample-seeds.png"}  # of a book that draws its tokens
WIDTH = 1200  # browser window; the PNGs are scaled to 900 px wide to stay small


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lesson = Path(tmp) / "lesson"
        export(None, "shakespeare", PROMPT, lesson, progress=False)
        for name, (page, height) in SHOTS.items():
            save(Image.open(screenshot(lesson / page, Path(tmp) / name, WIDTH, height)), name)
        probes(Path(tmp))


def probes(tmp: Path) -> None:
    """The figures of a book that writes on: its continuation, its lens, its attribution, one
    head off, and its Guide with both charts; and of one that draws: the prompt under five seeds."""
    for kind, probes_on, figures in (("writes", {"generate": 6, "lens": 1, "dla": 1}, FIGURES),
                                     ("draws", {"generate": 6, "sample": 1}, SAMPLED)):
        book = tmp / f"{kind}.xlsx"
        build("shakespeare", PROMPT, book, progress=False, probes=probes_on)
        export_lesson(book, tmp / kind, progress=False)
        for name, figure in figures.items():
            save(Image.open(tmp / kind / "img" / figure), name)
        if kind == "writes":
            guide(book, tmp / kind)


def guide(book: Path, tmp: Path) -> None:
    """The Guide sheet's top, its charts beside the prediction, recalculated and printed by
    LibreOffice (the charts are drawn from the cells, as a learner sees them)."""
    profile = tmp / "profile"
    (profile / "user").mkdir(parents=True)
    (profile / "user" / "registrymodifications.xcu").write_text(RECALC_ALWAYS)
    first_page = json.dumps({"PageRange": {"type": "string", "value": "1"}})
    subprocess.run(["soffice", "--headless", f"-env:UserInstallation={profile.as_uri()}", "--convert-to",
                    f"pdf:calc_pdf_Export:{first_page}", "--outdir", str(tmp), str(book)], check=True,
                   capture_output=True)
    subprocess.run(["pdftoppm", "-png", "-r", "220", "-f", "1", "-l", "1", str(tmp / f"{book.stem}.pdf"),
                    str(tmp / "guide")], check=True)
    page = Image.open(next(tmp.glob("guide*.png")))
    w, h = page.size
    save(page.crop((int(w * 0.03), int(h * 0.1), int(w * 0.97), int(h * 0.25))), "workbook-guide.png", width=1600)


def save(img: Image.Image, name: str, width: int = 900) -> None:
    img = img.convert("RGB")
    img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(DOCS / name, optimize=True)
    print(f"{DOCS / name}: {(DOCS / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
