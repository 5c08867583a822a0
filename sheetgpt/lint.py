"""Portability lint: constructs that Excel 2010+, Excel 365 and LibreOffice may compute
differently, or not at all."""
from __future__ import annotations


import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .a1 import MAX_COLS, MAX_ROWS, cell_name
from .engines import EvaluatedBook, FormulaCell
from .engines.fast import (FUNCTIONS, MAX_FORMULA_CHARS, REGISTRY, Binary, Call, CompileError, FastBook,
                           FormulaError, Function, Name, Ref, Unary, Workbook, allow_deep_formulas, compile_groups,
                           order_groups, parse, parse_ref, read_workbook, shorten)

BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")
NAME_RULE = re.compile(r"^[A-Za-z_\\][A-Za-z0-9_.\\]*$")
LOOKS_LIKE_CELL = re.compile(r"^[A-Za-z]{1,3}[0-9]+$|^[RrCc]$|^[Rr][0-9]*[Cc][0-9]*$")


@dataclass
class Finding:
    rule: str
    sheet: str | None
    cell: str | None
    message: str


def lint_path(path: str | Path) -> list[Finding]:
    """Portability findings of the file and, when there are none, its circular references."""
    wb = read_workbook(path)
    findings = lint_book(FastBook(wb))  # unevaluated: the lint reads formulas, not values
    return findings or _circular(wb)


def lint_book(book: EvaluatedBook) -> list[Finding]:
    """Portability findings from the file behind an evaluated book (any engine): sheet and
    defined names, sheet sizes, every formula. Circular references are not looked for: an
    engine that evaluated the book has met them already."""
    allow_deep_formulas()
    findings = _name_findings(book.sheet_names(), book.defined_names())
    names = {k.upper(): v for k, v in book.defined_names().items()}
    for sheet in book.sheet_names():
        rows, cols = book.shape(sheet)
        if rows > MAX_ROWS or cols > MAX_COLS:
            findings.append(Finding("sheet-size", sheet, None, f"sheet {sheet!r} uses {rows:,} x {cols:,} cells, "
                                    f"past Excel's {MAX_ROWS:,} x {MAX_COLS:,}"))
        findings += _formula_findings(sheet, book.formulas(sheet), names)
    return findings


_KNOWN: dict[tuple, dict[tuple[str, bool], list[tuple[str, str]]]] = {}  # names -> (text, array) -> problems


def _formula_findings(sheet: str, formulas: list[FormulaCell], names: dict[str, str]) -> list[Finding]:
    findings: list[Finding] = []
    checked: dict[str, list[tuple[str, str]]] = {}
    known = _KNOWN.setdefault(tuple(sorted(names.items())), {})  # a book linted again: its formulas are known
    if len(_KNOWN) > 4:
        _KNOWN.pop(next(iter(_KNOWN)))
    for f in sorted(formulas, key=lambda f: f.shared):  # plain formulas first, as the lint always listed them
        key = (f.text, f.array)
        if key not in checked:
            if key not in known:
                known[key] = formula_problems(f.text, names, f.array)
            checked[key] = known[key]
        findings += [Finding(rule, sheet, cell_name(f.row, f.col), f"{message} (formula ={shorten(f.text)})")
                     for rule, message in checked[key]]
    return findings


def _name_findings(sheets: list[str], defined: dict[str, str]) -> list[Finding]:
    findings: list[Finding] = []
    for name in sheets:
        problem = sheet_name_problem(name)
        if problem:
            findings.append(Finding("sheet-name", name, None, f"sheet name {name!r} {problem}"))
    for name, target in defined.items():
        if not NAME_RULE.match(name) or LOOKS_LIKE_CELL.match(name) or len(name) > 255:
            findings.append(Finding("defined-name", None, None, f"defined name {name!r} is not a valid Excel name"))
        if "[" in target:
            findings.append(Finding("external-reference", None, None,
                                    f"defined name {name!r} points into another workbook ({target})"))
    return findings


def _circular(wb: Workbook) -> list[Finding]:
    try:
        order_groups(compile_groups(wb, FUNCTIONS))
    except CompileError as e:
        if "circular" in str(e):
            return [Finding("circular", None, None, str(e))]
    return []


def sheet_name_problem(name: str) -> str | None:
    if not name or len(name) > 31:
        return "must have 1 to 31 characters"
    if BAD_SHEET_CHARS.search(name):
        return "contains one of [ ] : * ? / \\"
    if name.startswith("'") or name.endswith("'"):
        return "starts or ends with an apostrophe"
    if name.lower() == "history":
        return "is reserved by Excel"
    return None


def formula_problems(text: str, names: dict[str, str], array: bool = False) -> list[tuple[str, str]]:
    """What may compute differently elsewhere; `array`: the text is an array formula's
    (where a range is an array, not one cell)."""
    problems: list[tuple[str, str]] = []
    if len(text) + 1 > MAX_FORMULA_CHARS:
        problems.append(("formula-length", f"formula has {len(text) + 1:,} characters, "
                         f"over Excel's {MAX_FORMULA_CHARS:,}"))
    try:
        tree = parse(text)
    except FormulaError as e:
        return problems + [("unparsable", str(e))]

    def multi_cell(node) -> bool:
        if isinstance(node, Ref):
            return node.shape != (1, 1)
        if isinstance(node, Name):
            target = names.get(node.name.upper())
            ref = parse_ref(target.lstrip("=")) if target else None
            return ref is not None and ref.shape != (1, 1)
        return False

    def holds_range(node) -> bool:
        if isinstance(node, (Binary,)):
            return holds_range(node.left) or holds_range(node.right)
        if isinstance(node, Unary):
            return holds_range(node.arg)
        return multi_cell(node)

    def walk(node, array: bool, as_range: bool) -> None:
        if multi_cell(node) and not array and not as_range:
            problems.append(("implicit-intersection", "a range used where one value is expected: Excel 365 "
                             "spills it, Excel 2010 and LibreOffice take one cell; wrap it in SUMPRODUCT or "
                             "use an aggregate"))
        if isinstance(node, Call):
            name = node.name
            facts = _facts(name)
            if array and not facts.array_args and not facts.range_args and any(map(holds_range, node.args)):
                problems.append(("elementwise-function", f"{name} applied to every cell of a range inside an "
                                 "array function: Gnumeric takes one cell instead; compute it in a cell per "
                                 "element and sum those"))
            if name == "INDEX" and len(node.args) == 2 and _one_row(node.args[0], names):
                problems.append(("index-one-row", "INDEX(row, n) of a one-row range: Excel and LibreOffice "
                                 "take column n, Gnumeric row n (#REF!); write INDEX(row, 1, n)"))
            if facts.needs_prefix:
                problems.append(("xlfn-prefix", f"{name} must be written _xlfn.{name} in the file, or Excel "
                                 "shows #NAME?"))
            elif not facts.portable and not _facts(name.removeprefix("_XLFN.")).portable:
                problems.append(("function", f"{name} is not among the functions that Excel 2010+ and "
                                 "LibreOffice both compute alike"))
            for i, arg in enumerate(node.args):
                walk(arg, array or facts.array_args, facts.takes_range(i))
        elif isinstance(node, Binary):
            walk(node.left, array, False)
            walk(node.right, array, False)
        elif isinstance(node, Unary):
            walk(node.arg, array, False)

    walk(tree, array, False)
    return problems


def _one_row(node, names: dict[str, str]) -> bool:
    """Whether a reference (or a defined name's) is one row of several cells."""
    if isinstance(node, Name):
        target = names.get(node.name.upper())
        node = parse_ref(target.lstrip("=")) if target else None
    return isinstance(node, Ref) and node.shape[0] == 1 and node.shape[1] > 1


def _facts(name: str) -> Function:
    """What the registry knows of a function; nothing (not portable, no ranges) if unknown."""
    return REGISTRY.get(name) or Function(name)


def to_json(findings: list[Finding]) -> list[dict]:
    return [asdict(f) for f in findings]
