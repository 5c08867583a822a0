"""check's report for people and CI systems: a short summary (the verdict, the counts, every
failure with its cell, the largest error), the per-step table (--verbose), and JUnit XML
(--junit FILE)."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

from .check import CheckReport
from .compare import Failure, StepResult

# how a failure of each kind reads, on one line (an input's failure is its own message, among the inputs)
LINES = {
    "step": lambda f: f"{f.step} (sheet {f.sheet!r}) DIFFERS at {f.cell}: {f.detail}",
    "shown": lambda f: LINES["step"](f),
    "labels": lambda f: LINES["step"](f),
    "error": lambda f: f"error value: {f.sheet}!{f.cell} holds {f.detail}",
    "foreign": lambda f: f"foreign formula: {f.sheet}!{f.cell} holds {f.detail}, which sheetgpt never writes there",
    "chart": lambda f: f"chart {f.step!r} (sheet {f.sheet!r}, {f.cell}) draws other cells: {f.detail}",
    "lint": lambda f: f"portability: {f.sheet}!{f.cell}: {f.detail}" if f.sheet else f"portability: {f.detail}",
}
# the failures beyond the blocks, by what JUnit and the verdict call them
BOOK_KINDS = {"chart": "charts", "error": "error values", "foreign": "foreign formulas", "lint": "portability"}


def summary(report: CheckReport, tol: float) -> list[str]:
    """What a person or a CI log wants: at most ~10 lines when the book passes."""
    failed = failures(report)
    lines = list(report.inputs) + failed + [_counts(report, tol)]
    worst = _worst(report.steps)
    if worst is not None:
        lines.append(f"largest error: step {worst.name} (sheet {worst.sheet!r}), {worst.max_rel_err:.3g} relative, "
                     f"{worst.max_abs_err:.3g} absolute")
    lines.append(_verdict(report, tol))
    return lines


def failures(report: CheckReport) -> list[str]:
    """One line per thing that is wrong in the book's cells, each naming its cell (what is
    wrong with its inputs is said among them)."""
    order = {kind: k for k, kind in enumerate(LINES)}  # the cells' failures, then beyond them
    return [line(f) for f in sorted((f for f in report.failures if f.kind in LINES), key=lambda f: order[f.kind])]


def line(failure: Failure) -> str:
    return LINES[failure.kind](failure)


def table(report: CheckReport) -> list[str]:
    """Every step and every other formula block, one line each."""
    rows = report.steps + report.shown + [s for s in report.labels if not s.ok]
    width = max(len(s.name) for s in rows)
    sheet_width = max(len(s.sheet) for s in rows)
    lines = [f"{'step':<{width}}  {'sheet':<{sheet_width}}  {'max abs err':>11}  {'max rel err':>11}  ok"]
    lines += [f"{s.name:<{width}}  {s.sheet:<{sheet_width}}  {s.max_abs_err:11.3g}  {s.max_rel_err:11.3g}  "
              f"{'ok' if s.ok else 'DIFFERS at ' + str(s.cell) + ': ' + str(s.detail)}" for s in rows]
    return lines


def junit(report: CheckReport, tol: float, book: Path) -> bytes:
    """One test case per step, per other formula block, per sheet's labels, and one each for
    error values, foreign formulas and portability; a failure says where."""
    cases = [_case("steps", s.name, _differs(s, "step")) for s in report.steps]
    cases += [_case("shown", s.name, _differs(s, "shown")) for s in report.shown]
    cases += [_case("labels", s.sheet, _differs(s, "labels")) for s in report.labels]
    cases += [_case("book", name, "\n".join(line(f) for f in report.failures if f.kind == kind) or None)
              for kind, name in BOOK_KINDS.items()]
    n_failed = sum(1 for _, failed in cases if failed)
    name = quoteattr(f"sheetgpt check {book}")
    head = (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n<testsuite name={name}'
            f' tests="{len(cases)}" failures="{n_failed}" errors="0">\n'
            f'<properties><property name="tolerance" value="{tol:g}"/></properties>\n')
    return (head + "".join(xml for xml, _ in cases) + "</testsuite>\n</testsuites>\n").encode("utf-8")


def write_junit(path: Path, report: CheckReport, tol: float, book: Path) -> None:
    """Written whole or not at all: a CI system never reads half a report."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(junit(report, tol, book))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _case(group: str, name: str, failure: str | None) -> tuple[str, bool]:
    body = f"<failure message={quoteattr(failure.splitlines()[0])}>{_text(failure)}</failure>" if failure else ""
    return (f'<testcase classname={quoteattr("sheetgpt.check." + group)} name={quoteattr(name)}>{body}</testcase>\n',
            failure is not None)


def _differs(s: StepResult, kind: str) -> str | None:
    failure = s.failure(kind)
    return None if failure is None else line(failure)


def _text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _counts(report: CheckReport, tol: float) -> str:
    def agree(results: list[StepResult]) -> str:
        good = sum(s.ok for s in results)
        return f"all {good}" if good == len(results) else f"{good} of {len(results)}"

    return (f"{agree(report.steps)} steps agree with the NumPy reference within {tol:g} (relative), "
            f"{agree(report.shown)} other formula blocks (token texts, labels, the Guide) show what they must, "
            f"the labels of {agree(report.labels)} sheets are as built")


def _worst(steps: list[StepResult]) -> StepResult | None:
    finite = [s for s in steps if math.isfinite(s.max_rel_err)]
    return max(finite, key=lambda s: s.max_rel_err) if finite else None


def _verdict(report: CheckReport, tol: float) -> str:
    if report.ok:
        return "PASS (--verbose: every step)"
    f = report.failures[0]
    if f.kind == "error":
        return f"FAIL: every step agrees, but sheet {f.sheet!r} cell {f.cell} holds an error value"
    if f.kind == "foreign":
        return f"FAIL: sheet {f.sheet!r} cell {f.cell} holds a formula sheetgpt did not write"
    if f.kind == "chart":
        return f"FAIL: the chart {f.step!r} at sheet {f.sheet!r} cell {f.cell} draws cells other than its own"
    if f.kind == "lint":
        return (f"FAIL: every step agrees, but {len(report.lint)} constructs may compute differently in Excel or "
                f"LibreOffice (first: sheet {f.sheet!r}, cell {f.cell})")
    return f"FAIL: first difference in step {f.step}, sheet {f.sheet!r}, cell {f.cell}"
