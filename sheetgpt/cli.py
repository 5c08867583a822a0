"""Command line: sheetgpt build | check | eval | tokenize."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from pathlib import Path

import numpy as np

from .errors import UserError
from .layout import FORMS

from .load import DEFAULT_MODEL
from .probes import PROBES
MODEL_HELP = ("shakespeare (default: bundled, offline, a small GPT-2 trained on Shakespeare), tiny (bundled, "
              "random weights, for the mechanics), gpt2 (GPT-2 small from the Hugging Face Hub, cached), "
              "small-random (GPT-2 small shapes, random weights), or a directory with "
              "config.json and model.safetensors (or pytorch_model.bin)")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    # a terminated command (timeout, CI cancel) cleans up like an interrupted one
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return args.run(args)
    except UserError as e:
        print(f"sheetgpt: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        _exit_at_once("sheetgpt: interrupted", 130)
    except BrokenPipeError:  # e.g. | head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except _Terminated:
        _exit_at_once("sheetgpt: terminated", 143)
    except MemoryError:
        print("sheetgpt: error: out of memory", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: one line for the user, the traceback on request
        if os.environ.get("SHEETGPT_DEBUG"):
            traceback.print_exc()
        print(f"sheetgpt: internal error: {type(e).__name__}: {e} (set SHEETGPT_DEBUG=1 for details)",
              file=sys.stderr)
        return 3


def _exit_at_once(message: str, code: int) -> None:
    """After an interrupt the work is already undone (the writer removed its temporary file,
    workers die with this process): exit now, without interpreter shutdown, whose finalizers
    may run on state the interrupt left halfway (a zip part, a worker pool) and print or hang."""
    print(message, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


class _Terminated(BaseException):
    """SIGTERM, raised where the program is so that `with` blocks clean up."""


def _terminated(signum, frame) -> None:
    raise _Terminated()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sheetgpt",
        description="GPT-2 as a spreadsheet: every weight a cell, every step of the forward pass a formula.",
        epilog="Start with: sheetgpt build \"Mike is quick. He moves\" -o out/tiny.xlsx, then "
               "sheetgpt check out/tiny.xlsx. Exit status: 0 ok, 1 check found a difference, 2 bad input.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    b = sub.add_parser("build", help="tokenize a prompt and write the workbook",
                       description="Tokenize PROMPT and write an .xlsx where every weight is a cell and "
                                   "every step is a formula. The file is written atomically.")
    b.add_argument("prompt", metavar="PROMPT")
    b.add_argument("--model", "-m", default=DEFAULT_MODEL, help=MODEL_HELP)
    b.add_argument("-o", "--output", type=Path, help="where to write (default: out/sheetgpt-MODEL.xlsx)")
    b.add_argument("--positions", "-n", type=int, metavar="N",
                   help="token positions the book holds (default 16, or the prompt's tokens if more; at most the "
                        "model's context): a learner may type any prompt up to N tokens into the Guide")
    b.add_argument("--fixed", action="store_true",
                   help="no tokenizer sheets: the token ids are the input cells, one per token of PROMPT "
                        "(the book for engines that should not compute text, and for any Unicode prompt)")
    b.add_argument("--compact", action="store_true",
                   help="omit the optional cell addresses (r=) where cells follow on: about 30%% smaller; "
                        "Excel, LibreOffice and sheetgpt read such files, Gnumeric and IronCalc do not")
    _probe_options(b)
    b.add_argument("--form", choices=FORMS, default="arrays",
                   help="how the book writes its matrix products (linear layers, unembedding, lens): arrays "
                        "(default: one array formula each, which LibreOffice computes several times faster; Excel, "
                        "LibreOffice and Gnumeric compute them) or cells (one formula per cell: for IronCalc, "
                        "which computes array formulas wrong)")
    b.add_argument("--steer", nargs=2, metavar=("TOWARDS", "AWAY"),
                   help="a steering vector from the model itself: TOWARDS's residual stream minus AWAY's "
                        "(mean over positions) entering --steer-layer; its coefficient stays 0 unless --steer-coef")
    b.add_argument("--steer-vector", type=Path, metavar="FILE.npy", help="a steering vector from a file "
                                                                          "(the model's width of numbers)")
    b.add_argument("--steer-layer", type=int, default=0, metavar="L",
                   help="the layer whose input the steering vector is added to (default 0; n_layer: after the last)")
    b.add_argument("--steer-coef", type=float, default=0.0, metavar="C",
                   help="the steering coefficient (default 0: the vector is there, not yet applied)")
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    b.set_defaults(run=_build)

    c = sub.add_parser("check", help="evaluate a workbook from its formulas and compare every step "
                                     "with the NumPy reference",
                       description="Recalculate BOOK from its formulas alone (cached values are never used), "
                                   "recompute the NumPy reference from the weights and token ids found in "
                                   "BOOK, and compare every step. Exit 0 when all agree within --tol, 1 "
                                   "naming the first step, sheet and cell that differ, 2 on bad input.")
    c.add_argument("book", type=Path, metavar="BOOK.xlsx")
    c.add_argument("--model", "-m", help="also require BOOK's weights to be exactly this model's: " + MODEL_HELP)
    c.add_argument("--prompt", help="also require BOOK's token ids to be this text's; in a typed-prompt book, "
                                    "type it into the prompt cell first (the file unchanged)")
    c.add_argument("--tol", type=float, default=None,
                   help="relative tolerance: max |book - reference| / max |reference| per step (default 1e-9)")
    c.add_argument("--verbose", "-v", action="store_true",
                   help="also print every step and formula block with its largest error (the default is a summary: "
                        "the verdict, the counts, every failure with its cell, the largest error)")
    c.add_argument("--junit", type=Path, metavar="FILE.xml",
                   help="also write a JUnit XML report (one test case per step, block and sheet) for CI systems")
    _engine_args(c)
    c.set_defaults(run=_check)

    e = sub.add_parser("eval", help="evaluate a workbook and print its top next tokens",
                       description="Recalculate BOOK from its formulas alone and print its most likely next tokens.")
    e.add_argument("book", type=Path, metavar="BOOK.xlsx")
    e.add_argument("--top", "-k", type=int, default=5, help="how many tokens to show (default 5)")
    e.add_argument("--logits", type=Path, metavar="FILE.npy", help="save the evaluated last-position logits")
    e.add_argument("--prompt", help="as if this text were typed into the prompt cell (a typed-prompt book)")
    _engine_args(e)
    e.set_defaults(run=_eval)

    lt = sub.add_parser("lint", help="flag constructs that Excel and LibreOffice may compute differently",
                        description="Flag every construct that Excel 2010+, Excel 365 and LibreOffice may compute "
                                    "differently or not at all: implicit intersection, functions outside the "
                                    "portable set or missing their _xlfn. prefix, formulas over 8,192 characters, "
                                    "sheets past Excel's limits, invalid sheet or defined names. Exit 0 when clean, "
                                    "1 with findings, 2 on bad input.")
    lt.add_argument("book", type=Path, metavar="BOOK.xlsx")
    lt.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    lt.set_defaults(run=_lint)

    x = sub.add_parser("export", help="turn a workbook into a static HTML lesson with figures",
                       description="Write a static HTML lesson: an index and one page per step in forward-pass "
                                   "order with what it does, its exact formula, shapes, a preview of the "
                                   "evaluated values, and figures (attention heatmaps, top next tokens, a PCA map "
                                   "of the embeddings). Give a workbook, or --model and a prompt to build one "
                                   "first (saved as OUT/book.xlsx).")
    x.add_argument("book", nargs="?", type=Path, metavar="BOOK.xlsx", help="the workbook to export")
    x.add_argument("--model", "-m", help="build from this model instead: " + MODEL_HELP)
    x.add_argument("--prompt", help="the prompt to build with (with --model)")
    x.add_argument("-o", "--output", type=Path, default=Path("out/lesson"), help="lesson folder (default out/lesson)")
    x.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    x.set_defaults(run=_export)

    t = sub.add_parser("tokenize", help="show GPT-2 token ids and token strings of a text")
    t.add_argument("text", metavar="TEXT")
    t.add_argument("--model", "-m", help="use this model's tokenizer (default: GPT-2's)")
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.set_defaults(run=_tokenize)
    return p


def _engine_args(p: argparse.ArgumentParser) -> None:
    from .engines import ENGINES
    p.add_argument("--engine", choices=ENGINES, default="fast",
                   help="formula engine: fast (default, sheetgpt's own), libreoffice (LibreOffice headless "
                        "recalculates the file; needs libreoffice-calc-nogui and python3-uno), ironcalc (pip "
                        "install ironcalc), gnumeric (apt-get install gnumeric) or formulas (the PyPI package, "
                        "for cross-checking small workbooks only)")
    p.add_argument("--set", action="append", default=[], metavar="SHEET!CELL=VALUE", dest="overrides",
                   help="evaluate as if this cell held VALUE (a number, or text; 'TEXT forces text), the file "
                        "unchanged; repeat for more cells, e.g. --set \"tokens!B3=464\" (libreoffice and ironcalc: "
                        "typed in after a fresh open, through the program; gnumeric: written into the copy it "
                        "opens; not with formulas)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _overrides(args) -> list:
    from .overrides import parse_override

    return [parse_override(text) for text in args.overrides]


def _progress(args) -> bool | None:
    return False if args.quiet or getattr(args, "json", False) and not sys.stderr.isatty() else None


def _probe_options(b: argparse.ArgumentParser) -> None:
    """One option per probe (sheetgpt.probes): a number (--generate K) or a switch (--lens / --no-lens)."""
    for p in PROBES.values():
        if not p.option:
            continue
        flags = [f"--{p.name}"] + ([f"-{p.short}"] if p.short else [])
        if p.count:
            b.add_argument(*flags, type=int, default=p.default, metavar="K", help=f"{p.help} (default {p.default})")
        else:
            b.add_argument(*flags, action=argparse.BooleanOptionalAction, default=bool(p.default), help=p.help)


# -- commands ---------------------------------------------------------------------
def _build(args) -> int:
    from .jobs import Steering, build
    from .steps.guide import GUIDE_SHEET, PROMPT_ROW

    steering = Steering(tuple(args.steer) if args.steer else None, args.steer_vector, args.steer_layer,
                        args.steer_coef)
    built = build(args.model, args.prompt, args.output, progress=False if args.quiet else None,
                  compact=args.compact, typed_prompt=not args.fixed, positions=args.positions,
                  probes={p.name: getattr(args, p.name) for p in PROBES.values() if p.option},
                  steering=steering, form=args.form)
    result = built.result
    where = (f" in {result.positions} positions (type any prompt into {GUIDE_SHEET}!B{PROMPT_ROW})"
             if result.typed_prompt else "")
    tokenizer = f" ({result.tokenizer_cells:,} in the tokenizer)" if result.typed_prompt else ""
    print(f"wrote {result.path}: {len(result.ids)} tokens{where}, {result.n_cells:,} cells{tokenizer} of which "
          f"{result.n_formulas:,} formulas, {built.size / 1e6:.1f} MB (model {built.model.name}: "
          f"{built.model.about})")
    return 0


def _check(args) -> int:
    from .check import DEFAULT_TOL, check_workbook
    from .check_output import summary, table, write_junit
    from .load import load_model

    tol = DEFAULT_TOL if args.tol is None else args.tol
    if not tol > 0:
        raise UserError("--tol must be a positive number")
    if args.junit is not None and not args.junit.parent.is_dir():
        raise UserError(f"--junit {args.junit}: there is no folder {args.junit.parent}")
    model = load_model(args.model) if args.model else None
    report = check_workbook(args.book, model=model, prompt=args.prompt, tol=tol, engine=args.engine,
                            progress=_progress(args), overrides=_overrides(args))
    if args.json:
        print(json.dumps(_finite(report.to_json()), allow_nan=False))
    else:
        print("\n".join((table(report) if args.verbose else []) + summary(report, tol)))
    if args.junit:
        write_junit(args.junit, report, tol, args.book)
    return 0 if report.ok else 1


def _eval(args) -> int:
    from .jobs import evaluate_top

    overrides = _overrides(args)
    if args.prompt is not None:
        from .readback import prompt_cell
        overrides.append(prompt_cell(args.book, args.prompt))
    top, logits, about, written = evaluate_top(args.book, args.top, args.engine, _progress(args), overrides)
    if args.logits:
        try:
            np.save(args.logits, logits)
        except OSError as e:
            raise UserError(f"cannot write {args.logits}: {e.strerror or e}") from None
    text = None if written is None else "".join(t for _, t in written)
    if args.json:  # a book that writes: the ids it writes after the prompt, and their text (else null)
        print(json.dumps({"top": [vars(t) for t in top], "model": about,
                          "generated": None if written is None else [i for i, _ in written], "generated_text": text}))
        return 0
    if written is not None:
        print(f"the workbook writes after the prompt: {text!r}")
    print(f"next token after the {'generated text' if written is not None else 'prompt'}, as the workbook "
          f"computes it ({about}):")
    for rank, t in enumerate(top, 1):
        print(f"{rank:>3}. {t.token!r:<20} id {t.id:>6}  p={t.prob:.4g}  logit={t.logit:.6g}")
    return 0


def _lint(args) -> int:
    from .lint import lint_path, to_json
    findings = lint_path(args.book)
    if args.json:
        print(json.dumps({"ok": not findings, "findings": to_json(findings)}))
    else:
        for f in findings:
            where = f"{f.sheet}!{f.cell}" if f.cell else (f.sheet or "workbook")
            print(f"{where}: [{f.rule}] {f.message}")
        print("clean: no portability problems" if not findings else f"{len(findings)} portability problems")
    return 0 if not findings else 1


def _export(args) -> int:
    from .jobs import export

    index = export(args.book, args.model, args.prompt, args.output, progress=False if args.quiet else None)
    print(f"wrote the lesson: {index}")
    return 0


def _tokenize(args) -> int:
    if args.model:
        from .load import load_model
        tok = load_model(args.model).tokenizer
    else:
        from .tokenizer import Tokenizer
        tok = Tokenizer.gpt2()
    try:
        ids = tok.encode(args.text)
    except ValueError as e:
        raise UserError(str(e)) from None
    tokens = [tok.token_text(i) for i in ids]
    if args.json:
        print(json.dumps({"ids": ids, "tokens": tokens}))
    else:
        for i, t in zip(ids, tokens):
            print(f"{i:>6}  {t!r}")
    return 0


def _finite(obj):
    """JSON has no infinity: a non-finite error (a cell that is not a number) becomes null."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


if __name__ == "__main__":
    sys.exit(main())
