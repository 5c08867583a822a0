"""Other spreadsheet engines side by side with sheetgpt's own, on the same books.

For each book (micro: the tests' 1-layer model with a 357-token vocabulary; tiny; the
bundled shakespeare model; with --big also GPT-2 small shapes) and each engine, runs
`sheetgpt check BOOK --engine E --json` in a subprocess: every step of the book as that
engine computed it, against the NumPy reference from the book's own weights. Reports wall
time, peak memory, whether every step agreed, the logits' max |difference| and the ratio
of the wall time to our engine's.

    python benchmarks/bench_peers.py [--big] [--engines fast libreoffice ironcalc gnumeric formulas]

Peak memory: the largest sum of resident memory over the process tree, sampled every
0.2 s, and the largest single process's own peak (VmHWM), which is what LibreOffice
(soffice.bin) or IronCalc itself needed. Prints a Markdown table; BENCHMARKS.md records a run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]
from bench_scale import prompt_of, sampled, tree_rss  # noqa: E402

OUT = ROOT / "out" / "bench-peers"
SMALL_ONLY = {"formulas"}  # too slow beyond the micro book
NOT_BIG = {"formulas", "gnumeric"}  # hours, or more memory than this machine has, on GPT-2 small


def peak_hwm(pid: int) -> int:
    """The largest VmHWM (own peak resident bytes) among a process and its descendants."""
    best, todo, children = 0, [pid], {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                best = max(best, next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")))
        except (OSError, StopIteration):
            pass
    return best


def run(cmd: list[str]) -> tuple[float, int, int, subprocess.CompletedProcess]:
    """Wall seconds, peak tree RSS and largest process peak of a command."""
    wall, (tree, own), result = sampled(cmd, (tree_rss, peak_hwm), cwd=ROOT)
    return wall, tree, own, result


def books(big: bool) -> dict[str, Path]:
    """Build the books (default options: every cell named, as every engine needs)."""
    from helpers import SMALL_SHAPE, save_model_dir, write_bpe_vocab

    from sheetgpt.load import random_weights
    from sheetgpt.model import GPT2Config

    OUT.mkdir(parents=True, exist_ok=True)
    vocab = OUT / "micro-vocab"
    vocab.mkdir(exist_ok=True)
    micro = save_model_dir(OUT / "micro-model", params=random_weights(
        GPT2Config(**SMALL_SHAPE, vocab_size=write_bpe_vocab(vocab)), 7).params, vocab_dir=vocab, **SMALL_SHAPE)
    specs = {"micro": (str(micro), "The sheet is"), "tiny": ("tiny", prompt_of(10)),
             "shakespeare": ("shakespeare", "O Romeo, Romeo, wherefore art")}
    if big:
        specs["GPT-2 small shapes"] = ("small-random", prompt_of(10))
    out = {}
    for name, (model, prompt) in specs.items():
        out[name] = OUT / f"{name.split()[0]}.xlsx"
        subprocess.run([sys.executable, "-m", "sheetgpt", "build", prompt, "--model", model, "-o", str(out[name]),
                        "--quiet"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big", action="store_true", help="also GPT-2 small shapes (about 15 minutes more)")
    ap.add_argument("--engines", nargs="+", default=["fast", "libreoffice", "ironcalc", "gnumeric", "formulas"])
    args = ap.parse_args()
    rows = []
    for name, book in books(args.big).items():
        fast_wall = None
        for engine in args.engines:
            if (engine in SMALL_ONLY and name != "micro") or (engine in NOT_BIG and name.startswith("GPT-2")):
                continue
            wall, tree, own, res = run([sys.executable, "-m", "sheetgpt", "check", str(book), "--engine", engine,
                                        "--json", "--quiet"])
            try:
                report = json.loads(res.stdout)
                logits = next(s for s in report["steps"] if s["name"] == "logits")
                verdict = "all steps agree" if report["ok"] else f"differs: {report['first_failure']}"
                diff = f"{logits['max_abs_err']:.1e}"
            except (json.JSONDecodeError, StopIteration):
                verdict, diff = f"failed: {(res.stderr.strip().splitlines() or ['?'])[-1][:80]}", "-"
            fast_wall = wall if engine == "fast" else fast_wall
            ratio = f"{wall / fast_wall:.1f}x" if fast_wall else "-"
            rows.append((name, engine, wall, tree, own, verdict, diff, ratio))
            print(rows[-1], flush=True)
    print(f"\n{book.stat().st_size / 1e6:.0f} MB last book\n")
    print("| book | engine | wall | peak RSS (tree) | largest process | every step (1e-9) | max abs logit diff "
          "| wall / ours |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, engine, wall, tree, own, verdict, diff, ratio in rows:
        print(f"| {name} | {engine} | {wall:.1f} s | {tree / 2**30:.2f} GiB | {own / 2**30:.2f} GiB | {verdict} "
              f"| {diff} | {ratio} |")


if __name__ == "__main__":
    main()
