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
from .compare import StepResult


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
    """One line per thing that is wrong, each naming its cell."""
    out = [_differs(s) for s in report.steps + report.shown + report.labels if not s.ok]
    return out + [line for lines in _book_findings(report).values() for line in lines]


def _book_findings(report: CheckReport) -> dict[str, list[str]]:
    """What is wrong beyond the blocks, by kind."""
    return {"error values": [f"error value: {e['sheet']}!{e['cell']} holds {e['value']}" for e in report.errors],
            "foreign formulas": [f"foreign formula: {e['sheet']}!{e['cell']} holds ={e['formula']}, which sheetgpt "
                                 f"never writes there" for e in report.foreign],
            "portability": [f"portability: {f.sheet}!{f.cell}: {f.message}" if f.sheet else
                            f"portability: {f.message}" for f in report.lint]}


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
    cases = [_case("steps", s.name, None if s.ok else _differs(s)) for s in report.steps]
    cases += [_case("shown", s.name, None if s.ok else _differs(s)) for s in report.shown]
    cases += [_case("labels", s.sheet, None if s.ok else _differs(s)) for s in report.labels]
    cases += [_case("book", kind, "\n".join(lines) or None) for kind, lines in _book_findings(report).items()]
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


def _differs(s: StepResult) -> str:
    return f"{s.name} (sheet {s.sheet!r}) DIFFERS at {s.cell}: {s.detail} (max relative error {s.max_rel_err:.3g})"


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
    f = report.first_failure
    if f["step"] == "errors":
        return f"FAIL: every step agrees, but sheet {f['sheet']!r} cell {f['cell']} holds an error value"
    if f["step"] == "foreign":
        return f"FAIL: sheet {f['sheet']!r} cell {f['cell']} holds a formula sheetgpt did not write"
    if f["step"] == "lint":
        return (f"FAIL: every step agrees, but {len(report.lint)} constructs may compute differently in Excel or "
                f"LibreOffice (first: sheet {f['sheet']!r}, cell {f['cell']})")
    return f"FAIL: first difference in step {f['step']}, sheet {f['sheet']!r}, cell {f['cell']}"
