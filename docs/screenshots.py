"""Regenerate the README's lesson screenshots with headless Chromium:

    python docs/screenshots.py

Exports the tiny model's lesson to a temporary directory, shoots the index and layer 0's
attention page, and writes docs/lesson-index.png and docs/lesson-attention.png.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image  # comes with matplotlib

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS.parent / "tests")]  # a source checkout, installed or not
from chromium import screenshot  # noqa: E402

from sheetgpt.jobs import export  # noqa: E402

SHOTS = {"lesson-index.png": ("index.html", 900), "lesson-attention.png": ("h0-probs.html", 1180)}
WIDTH = 1200  # browser window; the PNGs are scaled to 900 px wide to stay small


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        export(None, "tiny", "Mike is quick. He moves", Path(tmp) / "lesson", progress=False)
        for name, (page, height) in SHOTS.items():
            raw = screenshot(Path(tmp) / "lesson" / page, Path(tmp) / name, WIDTH, height)
            img = Image.open(raw).convert("RGB")
            img = img.resize((900, round(img.height * 900 / img.width)), Image.LANCZOS)
            img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(DOCS / name, optimize=True)
            print(f"{DOCS / name}: {(DOCS / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
