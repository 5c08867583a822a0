"""Benchmark at GPT-2 small scale: build, check and LibreOffice recalculation.

Builds the `small-random` workbook (GPT-2 small shapes, seeded random weights) with fixed
token ids for a 10-token and a 64-token prompt, and a typed-prompt book of 16 positions
(the 10-token prompt typed in); then on the 10-token and the typed book times `sheetgpt
check`, `eval`, and LibreOffice headless recalculating the same file (its logits compared
with the ones our engine evaluated). Peak RSS is the sampled sum over the process tree
(workers included).

    python benchmarks/bench_scale.py [--skip-libreoffice] [--tokens 10 64] [--positions 16]

Prints a Markdown table; BENCHMARKS.md records a run.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "bench"
WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge "
         "every box of mixed jam and a number of other things happen in the meantime").split()


def prompt_of(n_tokens: int) -> str:
    """A prompt of exactly n tokens (common English words are one token each)."""
    sys.path.insert(0, str(ROOT))
    from sheetgpt.tokenizer import Tokenizer
    tok = Tokenizer.gpt2()
    words = []
    while len(tok.encode(" ".join(words))) < n_tokens:
        words.append(WORDS[len(words) % len(WORDS)])
    text = " ".join(words)
    assert len(tok.encode(text)) == n_tokens, (text, len(tok.encode(text)))
    return text


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def sampled(cmd: list[str], probes=(tree_rss,), **kw) -> tuple[float, list[int], subprocess.CompletedProcess]:
    """Wall seconds of a command and the largest value each probe (a function of its pid)
    took, sampled every 0.2 s while it ran."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    peaks = [0] * len(probes)

    def sample():
        while proc.poll() is None:
            for k, probe in enumerate(probes):
                peaks[k] = max(peaks[k], probe(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    return wall, peaks, subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def measure(cmd: list[str], **kw) -> tuple[float, int, subprocess.CompletedProcess]:
    """Wall seconds and sampled peak RSS (bytes) of a command and its children."""
    wall, (peak,), result = sampled(cmd, **kw)
    if result.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return wall, peak, result


def libreoffice_logits(book: Path, logits_sheet_index: int, workdir: Path) -> tuple[float, int, np.ndarray]:
    """Recalculate the book in LibreOffice headless; return wall, peak RSS and its logits
    (CSV export of the logits sheet: 15 significant digits, enough for a 1e-9 comparison)."""
    profile = workdir / "profile"
    options = f"44,34,76,1,,0,false,true,false,false,false,{logits_sheet_index}"
    cmd = ["soffice", f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to",
           f"csv:Text - txt - csv (StarCalc):{options}", "--outdir", str(workdir), str(book)]
    wall, peak, _ = measure(cmd)
    csv_file = next(workdir.glob("*.csv"))
    with open(csv_file, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return wall, peak, np.array([float(r[2]) for r in rows[2:]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[10, 64], help="fixed-ids books of these many tokens")
    ap.add_argument("--positions", type=int, default=16, help="the typed-prompt book's positions (0: none)")
    ap.add_argument("--skip-libreoffice", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    sheetgpt = [sys.executable, "-m", "sheetgpt"]
    rows = []
    checked = []  # (label, book): checked, evaluated and recalculated by LibreOffice
    n0 = args.tokens[0]
    builds = [(f"{n} tokens, fixed ids", f"small-random-{n}.xlsx", prompt_of(n), ["--fixed"]) for n in args.tokens]
    if args.positions:
        builds.append((f"typed prompt, {args.positions} positions ({n0}-token prompt)",
                       f"small-random-typed-{args.positions}.xlsx", prompt_of(n0), ["--positions",
                                                                                    str(args.positions)]))
    for label, name, prompt, options in builds:
        book = OUT / name
        wall, peak, res = measure(sheetgpt + ["build", prompt, "--model", "small-random", "-o", str(book),
                                              "--quiet", *options], cwd=ROOT)
        cells = re.search(r"[\d,]+ cells( \([\d,]+ in the tokenizer\))?", res.stdout).group(0)
        rows.append((f"build, {label}", wall, peak, f"{book.stat().st_size / 1e6:.0f} MB on disk, {cells}"))
        print(rows[-1], flush=True)
        if label.startswith(f"{n0} tokens") or label.startswith("typed"):
            checked.append((label, book))
    import json
    for label, book in checked:
        wall, peak, res = measure(sheetgpt + ["check", str(book), "--json", "--quiet"], cwd=ROOT)
        report = json.loads(res.stdout)
        worst = max(s["max_rel_err"] for s in report["steps"])
        rows.append((f"check, {label}", wall, peak,
                     f"ok={report['ok']}, {len(report['steps'])} steps, worst rel err {worst:.1e}"))
        print(rows[-1], flush=True)
        check_wall = wall
        logits_file = OUT / "engine-logits.npy"
        wall, peak, res = measure(sheetgpt + ["eval", str(book), "--logits", str(logits_file), "--quiet"], cwd=ROOT)
        rows.append((f"eval, {label}", wall, peak, "top-5 and logits"))
        print(rows[-1], flush=True)
        if not args.skip_libreoffice and shutil.which("soffice"):
            sys.path.insert(0, str(ROOT))
            from sheetgpt.readback import read_defined_names
            sheets, _ = read_defined_names(book)
            with tempfile.TemporaryDirectory() as tmp:
                wall, peak, lo = libreoffice_logits(book, sheets.index("logits") + 1, Path(tmp))
            ours = np.load(logits_file)
            rel = float(np.abs(lo - ours).max() / np.abs(ours).max())
            rows.append((f"LibreOffice recalculation, {label}", wall, peak,
                         f"logits vs our engine: max rel diff {rel:.1e}; check is {wall / check_wall:.1f}x faster"))
            print(rows[-1], flush=True)
    print("\n| step | wall | peak RSS | notes |\n| --- | --- | --- | --- |")
    for name, wall, peak, note in rows:
        print(f"| {name} | {wall:.1f} s | {peak / 2**30:.2f} GiB | {note} |")


if __name__ == "__main__":
    main()
