"""How long a learner waits in LibreOffice, per book and form, with our engine beside it.

For each model and each book (the default: a typed prompt and the lens; with --generate K
also one that writes K tokens) in each form (arrays, the default, and cells), builds the
book with `sheetgpt build`, then times LibreOffice through UNO with its default
calculation settings (lo_latency.py): load, full recalculation, typing another prompt and
recalculating, switching a head off and recalculating, peak memory; and our engine's
`sheetgpt check` (every step against the NumPy reference) on the same book, and whether
LibreOffice's prediction after typing is the one our engine computes for the same edit.

    python benchmarks/bench_libreoffice.py [--models shakespeare DIR small-random] [--generate 4]
                                           [--forms arrays cells] [--timeout 1800]

A model is a name `sheetgpt build --model` takes or a checkpoint directory (e.g. one that
../shared/lo-study/mkmodel.py wrote: 12 layers, width 192). One LibreOffice at a time;
prints a Markdown table (seconds, wall clock) that BENCHMARKS.md records. A phase that
does not finish within --timeout seconds shows as "> T".
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "bench-libreoffice"
PROMPT = "Hello, my name is"
TYPED = "The cat sat on the mat and"  # typed into the open book


def build(model: str, generate: int, form: str) -> Path:
    path = OUT / f"{Path(model).name}-g{generate}-{form}.xlsx"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "sheetgpt", "build", PROMPT, "--model", model, "-o", str(path),
                        "--generate", str(generate), "--form", form, "--quiet"], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
    return path


def libreoffice(book: Path, timeout: float) -> dict:
    out = book.with_suffix(".lo.json")
    subprocess.run(["/usr/bin/python3", str(ROOT / "benchmarks" / "lo_latency.py"), str(book), str(out), TYPED,
                    str(timeout)], cwd=ROOT)
    return json.loads(out.read_text())


def ours(book: Path) -> float:
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "sheetgpt", "check", str(book), "--quiet"], cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return time.time() - t0


def agrees(book: Path, lo: dict) -> str:
    """Whether LibreOffice's prediction after typing TYPED is our engine's for the same edit."""
    if "prediction_after_prompt" not in lo:
        return ""
    r = subprocess.run([sys.executable, "-m", "sheetgpt", "eval", str(book), "--json", "--set", f"Guide!B5={TYPED}"],
                       cwd=ROOT, capture_output=True, text=True)
    ours = json.loads(r.stdout)["top"][0]["token"] if r.returncode == 0 else None
    return "yes" if ours == lo["prediction_after_prompt"] else f"no: {lo['prediction_after_prompt']!r} vs {ours!r}"


def _seconds(lo: dict, *names: str, timeout: float) -> str:
    phases = lo["phases"]
    if any(phases.get(n, 0) is None for n in names):
        return "LibreOffice crashed" if "error" in lo else f"> {timeout:.0f}"
    if any(n not in phases for n in names):
        return ""
    return f"{sum(phases[n] for n in names):.1f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["shakespeare", "small-random"])
    p.add_argument("--generate", type=int, default=4)
    p.add_argument("--forms", nargs="+", default=["arrays", "cells"])
    p.add_argument("--timeout", type=float, default=1800.0)
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(["soffice", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"LibreOffice: {version}\n")
    print("| model | book | form | load | full recalculation | type a prompt + recalculate | switch a head off + "
          "recalculate | peak GiB | our check | same prediction |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model in args.models:
        for generate in sorted({0, args.generate}):
            for form in args.forms:
                book = build(model, generate, form)
                lo = libreoffice(book, args.timeout)
                t = args.timeout
                print(f"| {Path(model).name} | {'writes ' + str(generate) if generate else 'default'} | {form} | "
                      f"{_seconds(lo, 'load', timeout=t)} | {_seconds(lo, 'recalc', timeout=t)} | "
                      f"{_seconds(lo, 'prompt_type', 'prompt_recalc', timeout=t)} | "
                      f"{_seconds(lo, 'head_set', 'head_recalc', timeout=t)} | {lo.get('peak_gib', '')} | "
                      f"{ours(book):.1f} | {agrees(book, lo)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
