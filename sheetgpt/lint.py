"""Portability lint: constructs that Excel 2010+, Excel 365 and LibreOffice may compute
differently, or not at all."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .engines.base import cell_name
from .engines.fast.parser import Binary, Call, FormulaError, Name, Ref, Unary, allow_deep_formulas, parse, parse_ref
from .engines.fast.compiler import CompileError, compile_groups, order_groups, shorten
from .engines.fast.functions import FUNCTIONS
from .engines.fast.reader import MAX_COLS, MAX_ROWS, Workbook, read_workbook

MAX_FORMULA_CHARS = 8192
# Functions both Excel 2010+ and LibreOffice Calc have and compute alike.
PORTABLE = {
    "ABS", "AND", "AVERAGE", "AVERAGEIF", "CHOOSE", "COLUMN", "COLUMNS", "CONCATENATE", "COS", "COUNT",
    "COUNTA", "COUNTBLANK", "COUNTIF", "EXP", "FALSE", "HLOOKUP", "IF", "IFERROR", "INDEX", "INT", "ISBLANK",
    "ISERROR", "ISNUMBER", "ISTEXT", "LARGE", "LEFT", "LEN", "LN", "LOG", "LOG10", "LOWER", "MATCH", "MAX",
    "MID", "MIN", "MMULT", "MOD", "NOT", "OR", "PI", "POWER", "PRODUCT", "RIGHT", "ROUND", "ROUNDDOWN",
    "ROUNDUP", "ROW", "ROWS", "SIGN", "SIN", "SMALL", "SQRT", "SUM", "SUMIF", "SUMPRODUCT", "SUMSQ", "TAN",
    "TANH", "TRUE", "UPPER", "VARP", "VLOOKUP", "_XLFN.VAR.P", "_XLFN.VAR.S", "_XLFN.STDEV.P", "_XLFN.STDEV.S",
}
# Functions a file must spell with the _xlfn. prefix (Excel 2010+ additions).
NEEDS_PREFIX = {"VAR.P", "VAR.S", "STDEV.P", "STDEV.S", "CONCAT", "TEXTJOIN", "IFS", "MAXIFS", "MINIFS", "SWITCH",
                "XLOOKUP", "XMATCH", "FILTER", "SORT", "SORTBY", "UNIQUE", "SEQUENCE", "LET", "LAMBDA",
                "RANDARRAY", "NORM.DIST", "PERCENTILE.INC", "MODE.SNGL"}
# Functions whose arguments Excel evaluates as arrays in a normal cell.
ARRAY_FUNCTIONS = {"SUMPRODUCT", "MMULT"}
# (function, argument position) that take a range as a range, not through intersection.
RANGE_ARGS = {("SUM", None), ("AVERAGE", None), ("MAX", None), ("MIN", None), ("COUNT", None),
              ("COUNTA", None), ("PRODUCT", None), ("SUMSQ", None), ("VARP", None), ("_XLFN.VAR.P", None),
              ("_XLFN.VAR.S", None), ("_XLFN.STDEV.P", None), ("_XLFN.STDEV.S", None), ("LARGE", 0),
              ("SMALL", 0), ("MATCH", 1), ("INDEX", 0), ("VLOOKUP", 1), ("HLOOKUP", 1), ("SUMIF", 0),
              ("SUMIF", 2), ("COUNTIF", 0), ("AVERAGEIF", 0), ("AVERAGEIF", 2), ("ROWS", 0), ("COLUMNS", 0),
              ("ROW", 0), ("COLUMN", 0), ("COUNTBLANK", 0)}
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
    return lint_workbook(read_workbook(path))


def lint_workbook(wb: Workbook, cycles: bool = True) -> list[Finding]:
    """Portability findings; with cycles, also circular references (check's engine already
    refuses those, so it skips the extra pass)."""
    allow_deep_formulas()
    findings: list[Finding] = []
    for name in wb.sheets:
        problem = sheet_name_problem(name)
        if problem:
            findings.append(Finding("sheet-name", name, None, f"sheet name {name!r} {problem}"))
    for name, target in wb.names.items():
        if not NAME_RULE.match(name) or LOOKS_LIKE_CELL.match(name) or len(name) > 255:
            findings.append(Finding("defined-name", None, None, f"defined name {name!r} is not a valid Excel name"))
        if "[" in target:
            findings.append(Finding("external-reference", None, None,
                                    f"defined name {name!r} points into another workbook ({target})"))
    names = {k.upper(): v for k, v in wb.names.items()}
    for sheet in wb.sheets.values():
        rows, cols = sheet.shape
        if rows > MAX_ROWS or cols > MAX_COLS:
            findings.append(Finding("sheet-size", sheet.name, None,
                                    f"sheet {sheet.name!r} uses {rows:,} x {cols:,} cells, past Excel's "
                                    f"{MAX_ROWS:,} x {MAX_COLS:,}"))
        formulas = [(r, c, t) for r, c, t in sheet.formulas + sheet.array_formulas]
        formulas += [(g.row, g.col, g.text) for g in sheet.shared.values()]  # one check per shared group
        checked: dict[str, list[tuple[str, str]]] = {}
        for r, c, text in formulas:
            if text not in checked:
                checked[text] = formula_problems(text, names)
            for rule, message in checked[text]:
                findings.append(Finding(rule, sheet.name, cell_name(r + 1, c + 1),
                                        f"{message} (formula ={shorten(text)})"))
    if cycles and not findings:
        try:
            order_groups(compile_groups(wb, FUNCTIONS))
        except CompileError as e:
            if "circular" in str(e):
                findings.append(Finding("circular", None, None, str(e)))
    return findings


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


def formula_problems(text: str, names: dict[str, str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if len(text) + 1 > MAX_FORMULA_CHARS:
        problems.append(("formula-length", f"formula has {len(text) + 1:,} characters, over Excel's 8,192"))
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

    def walk(node, array: bool, as_range: bool) -> None:
        if multi_cell(node) and not array and not as_range:
            problems.append(("implicit-intersection", "a range used where one value is expected: Excel 365 "
                             "spills it, Excel 2010 and LibreOffice take one cell; wrap it in SUMPRODUCT or "
                             "use an aggregate"))
        if isinstance(node, Call):
            name = node.name
            bare = name[6:] if name.startswith("_XLFN.") else name
            if name in NEEDS_PREFIX:
                problems.append(("xlfn-prefix", f"{name} must be written _xlfn.{name} in the file, or Excel "
                                 "shows #NAME?"))
            elif name not in PORTABLE and bare not in PORTABLE:
                problems.append(("function", f"{name} is not among the functions that Excel 2010+ and "
                                 "LibreOffice both compute alike"))
            inner_array = array or name in ARRAY_FUNCTIONS
            for i, arg in enumerate(node.args):
                takes_range = (name, None) in RANGE_ARGS or (name, i) in RANGE_ARGS or name in NEEDS_PREFIX
                walk(arg, inner_array, takes_range)
        elif isinstance(node, Binary):
            walk(node.left, array, False)
            walk(node.right, array, False)
        elif isinstance(node, Unary):
            walk(node.arg, array, False)

    walk(tree, False, False)
    return problems


def to_json(findings: list[Finding]) -> list[dict]:
    return [asdict(f) for f in findings]
