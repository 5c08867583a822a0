"""Tamper detection: seeded single-cell mutations of a small workbook, each checked.

A mutation edits one cell in the sheet XML: the text of a shared-formula master (which
changes its whole block), a plain formula, an array formula (its whole block too), one cell of a shared block rewritten as a plain
formula (as a spreadsheet saves a cell edited by hand), or a constant. Whether it changes
a computed value is decided here, independently of `check`'s comparison with the NumPy
reference: the mutated book's evaluation is compared with the unmutated one, block by
block, over every step the layout names.

- changes a step beyond the tolerance: check must fail and name that step (the first such
  step in forward order, which is the mutated cell's own step) and the first such cell;
- changes nothing (or only within the tolerance, or only cells outside the steps): check
  must pass (or flag only a portability finding);
- makes a formula unparsable, or uses a function the engine does not know, or builds a
  circular reference: the engine shows #VALUE! there, so check fails naming the cell
  (a sheetgpt book with one formula changed is never bad input).

Weights and token ids are inputs: a changed weight passes check but fails `model=M` at
that weight's cell; a changed token id fails `prompt=TEXT` at that token's cell.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, unescape

import numpy as np

from sheetgpt.steps.controls import CONTROLS
import pytest

from helpers import (XmlCell, cell_address, defined_names, range_box, read_parts, sheet_cells, sheet_parts,
                     small_random_model, write_parts)

MUT_SHAPE = dict(n_layer=2, n_head=2, n_embd=8, n_ctx=16)
MUT_PROMPT = "The sheet is large"  # 7 tokens of write_bpe_vocab's vocabulary
SEED = 20261128
N_DEFAULT = 240  # formula mutations in the default run (~0.1 s each)
N_SLOW = 2000  # over three seeds


# --- the book under test -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def mut_model(small_vocab_dir):
    return small_random_model(small_vocab_dir, seed=3, name="mutation-test", **MUT_SHAPE)


@pytest.fixture(scope="module")
def mut_book(mut_model, tmp_path_factory) -> Path:
    from sheetgpt.builder import build_workbook

    path = tmp_path_factory.mktemp("mutation") / "book.xlsx"
    build_workbook(mut_model, MUT_PROMPT, path, progress=False)
    return path


@dataclass
class Book:
    """What the generator and the judge need to know about the unmutated book."""
    path: Path
    parts: dict[str, bytes]
    sheet_part: dict[str, str]
    layout: object
    steps: list[str]
    baseline: dict[str, list[tuple]]  # step -> tagged cell values, row by row
    tokens_cells: list[tuple[str, int, int]]
    values: object = None  # the unmutated book as evaluated: what every cell showed
    shown: dict = None  # what every cell of every sheet but the weights' showed (shown_cells)

    def step_at(self, sheet: str, row: int, col: int) -> str | None:
        for name in self.steps:
            b = self.layout.blocks[name]
            if b.sheet == sheet and b.row <= row < b.row + b.n_rows and b.col <= col < b.col + b.n_cols:
                return name
        return None

    def step_of_range(self, sheet: str, ref: str) -> str | None:
        r0, c0, n, m = range_box(ref)
        first, last = self.step_at(sheet, r0, c0), self.step_at(sheet, r0 + n - 1, c0 + m - 1)
        assert first == last, f"{sheet}!{ref} spans steps {first} and {last}"
        return first


def _tagged(v) -> tuple:
    """A cell value with its type: numbers, booleans, text (or an error code), empty."""
    if v is None:
        return ("empty",)
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, (int, float)):
        return ("num", float(v))
    return ("text", str(v))


def step_values(values, layout, steps) -> dict[str, list[tuple]]:
    out = {}
    for name in steps:
        b = layout.blocks[name]
        out[name] = [_tagged(values.value(b.sheet, b.row + i, b.col + j))
                     for i in range(b.n_rows) for j in range(b.n_cols)]
    return out


def shown_sheets(layout) -> list[str]:
    """Every sheet but the weights' (inputs, judged by test_weight_mutations_...)."""
    weights = {b.sheet for b in layout.weights.values()}
    return [s.name for s in layout.sheets if s.name not in weights]


def shown_cells(values, sheets: list[str]) -> dict[str, dict[tuple[int, int], tuple]]:
    """What every non-empty cell of these sheets shows, tagged with its type."""
    out = {}
    for sheet in sheets:
        n_rows, n_cols = values.shape(sheet)
        cells = {}
        for r in range(1, n_rows + 1):
            for c in range(1, n_cols + 1):
                v = values.value(sheet, r, c)
                if v is not None:
                    cells[(r, c)] = _tagged(v)
        out[sheet] = cells
    return out


def shown_differences(base: dict, mut: dict, tol: float) -> list[tuple[str, int, int, tuple, tuple]]:
    """Cells that show something else (numbers beyond tol of their sheet's largest number)."""
    out = []
    for sheet, cells in base.items():
        nums = [abs(v[1]) for v in cells.values() if v[0] == "num" and math.isfinite(v[1])]
        scale = max(nums) if nums else 0.0
        now = mut.get(sheet, {})
        for rc in sorted(set(cells) | set(now)):
            a, b = cells.get(rc, ("empty",)), now.get(rc, ("empty",))
            if a != b and (a[0] != b[0] or a[0] != "num" or not abs(a[1] - b[1]) <= tol * scale):
                out.append((sheet, *rc, a, b))
    return out


def book_under_test(path: Path) -> Book:
    from sheetgpt.readback import load_book

    contents = load_book(path, "fast", False)
    layout = contents.layout
    steps = list(layout.steps)
    tok = layout.blocks["tokens"]
    return Book(path, read_parts(path), sheet_parts(path), layout, steps, step_values(contents.values, layout, steps),
                [(tok.sheet, tok.row + t, tok.col) for t in range(tok.n_rows)], contents.values,
                shown_cells(contents.values, shown_sheets(layout)))


@pytest.fixture(scope="module")
def book(mut_book) -> Book:
    return book_under_test(mut_book)


def test_layout_blocks_are_the_defined_names(book):
    """The judge locates steps through the layout; the file's defined names must agree."""
    names = defined_names(book.path)
    for step in book.steps + ["tokens"]:
        b = book.layout.blocks[step]
        sheet, ref = names[step]
        assert (sheet, range_box(ref)) == (b.sheet, (b.row, b.col, b.n_rows, b.n_cols)), step


def test_unmutated_book_passes(book, mut_model):
    from sheetgpt.check import check_workbook

    rep = check_workbook(book.path, model=mut_model, prompt=MUT_PROMPT)
    assert rep.ok and rep.first_failure is None, rep.first_failure


# --- formula text: a lexer whose tokens join back to the text ------------------------------------

_TOKEN = re.compile(r"""
  (?P<ref>(?:'(?:[^']|'')+'!|[A-Za-z_][\w.]*!)?\$?[A-Z]{1,3}\$?[0-9]+(?::\$?[A-Z]{1,3}\$?[0-9]+)?(?![\w(.]))
| (?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[Ee][+-]?[0-9]+)?)
| (?P<func>[A-Za-z_][\w.]*(?=\())
| (?P<name>[A-Za-z_][\w.]*)
| (?P<str>"(?:[^"]|"")*")
| (?P<op><>|<=|>=|[-+*/^&=<>%])
| (?P<punct>[(),:;{}!\[\]|'])
| (?P<ws>\s+)
""", re.X)
_CORNER = re.compile(r"(\$?)([A-Z]{1,3})(\$?)([0-9]+)")


def lex(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        assert m and m.end() > pos, f"cannot lex {text!r} at {pos}"
        out.append((m.lastgroup, m.group()))
        pos = m.end()
    assert "".join(t for _, t in out) == text
    return out


def _col_number(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def _col_letters(n: int) -> str:
    s = ""
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


def _split_ref(ref: str) -> tuple[str, list[list]]:
    """"'S'!$A1:B$2" -> ("'S'!", [[col_abs, col, row_abs, row], ...])."""
    bang = ref.rfind("!")
    prefix, body = ref[:bang + 1], ref[bang + 1:]
    corners = [[m.group(1), _col_number(m.group(2)), m.group(3), int(m.group(4))] for m in _CORNER.finditer(body)]
    return prefix, corners


def _join_ref(prefix: str, corners: list[list]) -> str:
    return prefix + ":".join(f"{ca}{_col_letters(c)}{ra}{r}" for ca, c, ra, r in corners)


def shift_formula(text: str, dr: int, dc: int) -> str:
    """The formula a shared formula's master text gives a cell dr rows and dc columns away:
    every relative row or column of every reference moves (ECMA-376 18.3.1.40)."""
    out = []
    for kind, tok in lex(text):
        if kind == "ref":
            prefix, corners = _split_ref(tok)
            for c in corners:
                if not c[0]:
                    c[1] += dc
                if not c[2]:
                    c[3] += dr
            tok = _join_ref(prefix, corners)
        out.append(tok)
    return "".join(out)


def _is_unary(tokens, i) -> bool:
    prev = next((tokens[k] for k in range(i - 1, -1, -1) if tokens[k][0] != "ws"), None)
    return prev is None or prev[0] == "op" or prev[1] in "(,"


def _call_args(tokens, i) -> list[tuple[int, int]] | None:
    """Token ranges [start, end) of the arguments of the function whose name is tokens[i]."""
    if i + 1 >= len(tokens) or tokens[i + 1][1] != "(":
        return None
    depth, start, args = 0, i + 2, []
    for k in range(i + 1, len(tokens)):
        t = tokens[k][1]
        if t == "(":
            depth += 1
        elif t == ")":
            depth -= 1
            if depth == 0:
                args.append((start, k))
                return args
        elif t == "," and depth == 1:
            args.append((start, k))
            start = k + 1
    return None


# --- mutations -----------------------------------------------------------------------------------

UNARY = ["SQRT", "EXP", "LN", "ABS", "TANH"]
AGGREGATES = ["SUM", "AVERAGE", "MAX", "MIN"]
FAMILIES = [UNARY, AGGREGATES, ["MMULT", "SUMPRODUCT"], ["LARGE", "SMALL"]]
UNKNOWN = ["WEBSERVICE", "HYPERLINK", "INDIRECT", "OFFSET", "FOOBAR", "CALL", "NOW"]
BINARY = ["+", "-", "*", "/", "^"]
EQUIVALENT_WRAPS = ["({})", "{}+0", "+{}", "--({})", "1*({})", "({})*1", "({})/1", "0+{}"]


def _respell(num: str, rng: random.Random) -> str:
    """The same number spelled differently (reads back as the same double)."""
    v = float(num)
    r = repr(v).upper()
    choices = [r, f"{v:.17E}", f"{v:.20G}"]
    if "." in r and "E" not in r:
        choices.append(r + "0")
    if v == int(v) and abs(v) < 1e15:
        choices += [f"{int(v)}.0", f"{int(v)}.000"]
    if num[0].isdigit():
        choices.append("0" + num)
    out = rng.choice(choices)
    assert float(out) == v, (num, out)
    return out


def _other_number(num: str, rng: random.Random) -> tuple[str, str]:
    v = float(num)
    kind = rng.choice(["double", "plus1", "tenth", "zero", "ppm", "tiny", "negate"])
    new = {"double": v * 2 if v else 1.0, "plus1": v + 1, "tenth": v / 10 if v else 0.5, "zero": 0.0 if v else 2.0,
           "ppm": v * (1 + 1e-6) if v else 1e-6, "tiny": v * (1 + 1e-13) if v else 1e-300,
           "negate": -v if v else -1.0}[kind]
    text = repr(new).upper()
    if text.startswith("-"):
        text = f"({text})"
    return text, f"number {num} -> {text} ({kind})"


PER_SHEET = 4  # mutations drawn from each sheet a run must cover
FORMULA_SITES = ("master", "dependent", "plain_step", "plain_other", "array")


class Generator:
    """Seeded single-cell mutations of the book's XML."""

    def __init__(self, book: Book, seed: int):
        self.book, self.rng = book, random.Random(seed)
        self.sites: dict[str, list] = {"master": [], "plain_step": [], "plain_other": [], "dependent": [],
                                       "constant_step": [], "constant_other": [], "text_other": [], "foreign": [],
                                       "array": []}
        self.masters: dict[tuple[str, str], tuple[int, int, str]] = {}
        self.xml = {s: book.parts[p].decode("utf-8") for s, p in book.sheet_part.items()}
        step_sheets = {b.sheet for n, b in book.layout.blocks.items() if n in book.steps}
        weight_sheets = {b.sheet for n, b in book.layout.blocks.items()
                         if n not in book.steps and n not in ("tokens", "vocab_text")} - step_sheets
        self.sheet_names = [s for s in book.sheet_part if s != "_meta"]
        for sheet, xml in self.xml.items():
            if sheet == "_meta":
                continue
            cells = sheet_cells(xml)
            for last, after in zip(cells, cells[1:] + [None]):  # the last cell of each row
                if after is None or after.row != last.row:
                    self.sites["foreign"].append((sheet, last))
            if sheet in weight_sheets or sheet == "vocab":  # inputs (test_weight_mutations_...)
                continue
            for cell in cells:
                c = cell.xml(xml)
                f = re.search(r"<f\b([^>]*?)(?:/>|>(.*?)</f>)", c, re.S)
                where = (sheet, cell)
                in_step = book.step_at(sheet, cell.row, cell.col) is not None
                if f is None:
                    if "<v>" in c and "t=" not in c and (sheet, cell.row, cell.col) not in book.tokens_cells:
                        self.sites["constant_step" if in_step else "constant_other"].append(where)
                    elif 't="inlineStr"' in c:
                        self.sites["text_other"].append(where)
                    continue
                attrs = dict(re.findall(r'(\w+)="([^"]*)"', f.group(1) or ""))
                if attrs.get("t") == "shared" and f.group(2):
                    self.masters[(sheet, attrs["si"])] = (cell.row, cell.col, unescape(f.group(2)))
                    self.sites["master"].append(where)
                elif attrs.get("t") == "shared":
                    self.sites["dependent"].append((sheet, cell, attrs["si"]))
                elif attrs.get("t") == "array":
                    self.sites["array"].append(where)
                elif f.group(2):
                    self.sites["plain_step" if in_step else "plain_other"].append(where)
        assert all(self.sites.values()), {k: len(v) for k, v in self.sites.items()}

    # each mutation: (kind, sheet, XmlCell, new cell xml, description, expected step or None)
    def generate(self, n: int, every_sheet: tuple[str, ...] = ()) -> list[tuple]:
        """n mutations, PER_SHEET of them in the formulas of each sheet of every_sheet."""
        seen, out = set(), []
        for sheet in every_sheet:
            self._draw(out, seen, len(out) + PER_SHEET, {k: w for k, w in self.WEIGHTS.items() if k in FORMULA_SITES},
                       lambda site: site[0] == sheet)
        self._draw(out, seen, n, self.WEIGHTS, lambda site: True)
        return out

    WEIGHTS = {"master": 40, "dependent": 25, "plain_step": 12, "plain_other": 10,
               "constant_step": 10, "constant_other": 7, "text_other": 8, "foreign": 8, "array": 10}

    def _draw(self, out: list, seen: set, n: int, weights: dict[str, int], where) -> None:
        saved = self.sites
        self.sites = {kind: [site for site in sites if where(site)] for kind, sites in saved.items()}
        weights = {kind: w for kind, w in weights.items() if self.sites[kind]}
        assert weights, "no formula there to mutate"
        try:
            self._draw_from(out, seen, n, weights)
        finally:
            self.sites = saved

    def _draw_from(self, out: list, seen: set, n: int, weights: dict[str, int]) -> None:
        while len(out) < n:
            site = self.rng.choices(list(weights), list(weights.values()))[0]
            m = getattr(self, "_" + site.split("_")[0])(site)
            if m is None:
                continue
            key = (m[1], m[2].row, m[2].col, m[3])
            if key in seen:
                continue
            seen.add(key)
            out.append(m)

    def _formula_text(self, sheet, cell) -> tuple[str, re.Match]:
        c = cell.xml(self.xml[sheet])
        f = re.search(r"(<f\b[^>]*>)(.*?)(</f>)", c, re.S)
        return c, f

    def _master(self, site):
        sheet, cell = self.rng.choice(self.sites[site])
        c, f = self._formula_text(sheet, cell)
        new, what = self.mutate_text(unescape(f.group(2)), sheet)
        if new is None:
            return None
        ref = re.search(r'ref="([^"]+)"', f.group(1)).group(1)
        return ("master", sheet, cell, c[:f.start(2)] + escape(new) + c[f.end(2):],
                f"{what} in shared formula {sheet}!{ref}", self.book.step_of_range(sheet, ref))

    def _plain(self, site):
        sheet, cell = self.rng.choice(self.sites[site])
        c, f = self._formula_text(sheet, cell)
        new, what = self.mutate_text(unescape(f.group(2)), sheet)
        if new is None:
            return None
        return (site, sheet, cell, c[:f.start(2)] + escape(new) + c[f.end(2):],
                f"{what} in {sheet}!{cell_address(cell.row, cell.col)}", self.book.step_at(sheet, cell.row, cell.col))

    _array = _plain  # an array formula's text: its whole block changes, named by its top-left cell

    def _dependent(self, site):
        sheet, cell, si = self.rng.choice(self.sites[site])
        row, col, text = self.masters[(sheet, si)]
        own = shift_formula(text, cell.row - row, cell.col - col)
        if self.rng.random() < 0.2:
            new, what = own, "the same formula, written as a plain formula"
        else:
            new, what = self.mutate_text(own, sheet)
            if new is None:
                return None
        c = cell.xml(self.xml[sheet])
        c2 = re.sub(r"<f\b[^>]*/>", lambda _: f"<f>{escape(new)}</f>", c, count=1)
        assert c2 != c
        return ("dependent", sheet, cell, c2, f"{what} in {sheet}!{cell_address(cell.row, cell.col)} (was ={own})",
                self.book.step_at(sheet, cell.row, cell.col))

    def _text(self, site):
        sheet, cell = self.rng.choice(self.sites[site])
        c = cell.xml(self.xml[sheet])
        t = re.search(r"(<t\b[^>]*>)([^<]*)(</t>)", c)
        old = unescape(t.group(2))
        new, what = self.rng.choice([(old + " x", "appended to"), (old.swapcase(), "case swapped in"),
                                     (old[:-1], "shortened"), ("", "emptied")])
        if new == old:
            return None
        return (site, sheet, cell, c[:t.start(2)] + escape(new) + c[t.end(2):],
                f"text {old!r} {what} in {sheet}!{cell_address(cell.row, cell.col)}", None)

    def _foreign(self, site):
        """A formula typed into an empty cell beyond the last one of a row."""
        sheet, last = self.rng.choice(self.sites[site])
        col = last.col + self.rng.choice([1, 2, 5])
        address = cell_address(last.row, col)
        text = self.rng.choice(["1+1", cell_address(max(last.row - 1, 1), 2), '"note"', "1/0", "0"])
        return (site, sheet, XmlCell(last.row, col, last.end, last.end),
                f'<c r="{address}"><f>{escape(text)}</f></c>', f"formula ={text} typed into {sheet}!{address}", None)

    def _constant(self, site):
        sheet, cell = self.rng.choice(self.sites[site])
        c = cell.xml(self.xml[sheet])
        v = re.search(r"<v>([^<]*)</v>", c)
        old = v.group(1)
        how = self.rng.choice(["respell", "change", "change", "empty", "text"])
        if how == "respell":
            new_c, what = c[:v.start(1)] + _respell(old, self.rng) + c[v.end(1):], "respelled"
        elif how == "change":
            text, what = _other_number(old, self.rng)
            new_c = c[:v.start(1)] + text.strip("()") + c[v.end(1):]
        elif how == "empty":
            new_c, what = c[:v.start()] + c[v.end():], "emptied"
        else:
            new_c = c[:v.start()].replace("<c", '<c t="inlineStr"', 1) + "<is><t>abc</t></is>" + c[v.end():]
            what = "text"
        return (site, sheet, cell, new_c, f"constant {old} {what} in {sheet}!{cell_address(cell.row, cell.col)}",
                self.book.step_at(sheet, cell.row, cell.col))

    # -- the formula text ----------------------------------------------------------------------
    def mutate_text(self, text: str, own_sheet: str) -> tuple[str | None, str]:
        tokens = lex(text)
        kinds = Counter(k for k, _ in tokens)
        options = ["wrap", "break"]
        if kinds["ref"]:
            options += ["ref_shift"] * 4 + ["ref_dollar", "ref_sheet"]
        if kinds["op"]:
            options += ["op"] * 3
        if kinds["num"]:
            options += ["num"] * 2 + ["respell"]
        if kinds["func"]:
            options += ["func"] * 3 + ["unknown", "swap_args"]
        how = self.rng.choice(options)
        rng = self.rng
        idx = lambda kind: [i for i, (k, _) in enumerate(tokens) if k == kind]  # noqa: E731
        t = [list(x) for x in tokens]
        if how == "wrap":
            return rng.choice(EQUIVALENT_WRAPS).format(text), "equivalent rewrite"
        if how == "break":
            choice = rng.choice(["drop", "insert", "truncate"])
            if choice == "drop":
                i = rng.choice([i for i, (_, v) in enumerate(tokens) if v in "(),"] or [len(tokens) - 1])
                t[i][1] = ""
            elif choice == "insert":
                i = rng.randrange(len(tokens) + 1)
                t.insert(i, ["junk", rng.choice(["+*", ",", ")", "((", "!", "'", ":", "*"])])
            else:
                t = t[: rng.randrange(1, len(tokens))] if len(tokens) > 1 else [["junk", "("]]
            return "".join(v for _, v in t), f"syntax broken ({choice})"
        if how in ("ref_shift", "ref_dollar", "ref_sheet"):
            i = rng.choice(idx("ref"))
            prefix, corners = _split_ref(tokens[i][1])
            if how == "ref_shift":
                axis = rng.choice([1, 3])
                delta = rng.choice([-2, -1, 1, 1, 2, 5])
                which = corners if rng.random() < 0.6 or len(corners) == 1 else [rng.choice(corners)]
                for c in which:
                    c[axis] += delta
                if any(c[1] < 1 or c[3] < 1 for c in corners):
                    return None, ""
                what = f"reference {tokens[i][1]} moved by {delta} {'rows' if axis == 3 else 'columns'}"
            elif how == "ref_dollar":
                c = rng.choice(corners)
                k = rng.choice([0, 2])
                c[k] = "" if c[k] else "$"
                what = f"a $ toggled in {tokens[i][1]}"
            else:
                sheet = rng.choice(self.sheet_names + [own_sheet])
                prefix = "" if sheet == own_sheet and rng.random() < 0.5 else "'" + sheet.replace("'", "''") + "'!"
                what = f"sheet of {tokens[i][1]} -> {prefix or '(own sheet)'}"
            t[i][1] = _join_ref(prefix, corners)
            return "".join(v for _, v in t), what
        if how == "op":
            cands = [i for i in idx("op") if tokens[i][1] in BINARY and not _is_unary(tokens, i)]
            if not cands:
                return None, ""
            i = rng.choice(cands)
            new = rng.choice([o for o in BINARY + ["<", "=", "&"] if o != tokens[i][1]])
            t[i][1] = new
            return "".join(v for _, v in t), f"operator {tokens[i][1]} -> {new}"
        if how in ("num", "respell"):
            i = rng.choice(idx("num"))
            if how == "respell":
                t[i][1] = _respell(tokens[i][1], rng)
                return "".join(v for _, v in t), f"number {tokens[i][1]} respelled {t[i][1]}"
            t[i][1], what = _other_number(tokens[i][1], rng)
            return "".join(v for _, v in t), what
        if how in ("func", "unknown"):
            i = rng.choice(idx("func"))
            name = tokens[i][1].upper()
            if how == "unknown":
                new = rng.choice(UNKNOWN)
            else:
                family = next((f for f in FAMILIES if name in f), None)
                if family is None:
                    return None, ""
                new = rng.choice([f for f in family if f != name])
            t[i][1] = new
            return "".join(v for _, v in t), f"function {name} -> {new}"
        if how == "swap_args":
            i = rng.choice(idx("func"))
            args = _call_args(tokens, i)
            if not args or len(args) < 2:
                return None, ""
            (a0, a1), (b0, b1) = args[0], args[1]
            t = t[:a0] + t[b0:b1] + t[a1:b0] + t[a0:a1] + t[b1:]
            return "".join(v for _, v in t), f"arguments of {tokens[i][1]} swapped"
        raise AssertionError(how)


# --- running one mutation -----------------------------------------------------------------------

def _shows_otherwise(values, before, failure: dict | None) -> str | None:
    """When check failed on a cell outside the numeric steps: that the cell it names really
    shows something else than in the unmutated book (read here, not taken from check)."""
    if not failure or not failure.get("cell") or failure["step"] in ("lint", "weights", "tokens"):
        return None
    m = re.fullmatch(r"([A-Z]+)([0-9]+)", failure["cell"])
    col = sum((ord(ch) - 64) * 26 ** k for k, ch in enumerate(reversed(m.group(1))))
    now, was = (v.value(failure["sheet"], int(m.group(2)), col) for v in (values, before))
    return f"{failure['sheet']}!{failure['cell']} shows {now!r}, was {was!r}" if now != was else None


@dataclass
class Outcome:
    category: str  # caught, missed, misnamed, unchanged, within_tol, wrongly_failed, bad_input, unclear_error, crashed
    value_changing: bool
    detail: str
    message: str = ""  # the UserError's message
    cell_named: str = ""  # "first difference" or "first non-number" (see test_check_names_the_first_differing_cell)


def _compare(base: list[tuple], mut: list[tuple], tol: float) -> tuple[bool, int | None]:
    """(anything differs at all, first index that differs beyond the tolerance)."""
    nums = [abs(v[1]) for v in base if v[0] == "num" and math.isfinite(v[1])]
    scale = max(nums) if nums else 0.0
    exact, first = False, None
    for k, (a, b) in enumerate(zip(base, mut)):
        if a == b:
            continue
        exact = True
        beyond = a[0] != b[0] or a[0] != "num" or not abs(a[1] - b[1]) <= tol * scale
        if beyond and first is None:
            first = k
    return exact, first


class Judge:
    def __init__(self, book: Book, tmp: Path, monkeypatch):
        from sheetgpt import check

        self.book, self.tmp, self.n = book, tmp, 0
        self.captured = None
        real = check.load_book

        def capture(path, *args, **kwargs):
            self.captured = real(path, *args, **kwargs)
            return self.captured

        monkeypatch.setattr(check, "load_book", capture)
        self.check = check

    def run(self, kind, sheet, cell, new_cell, what, own_step) -> Outcome:
        from sheetgpt.errors import UserError

        book = self.book
        xml = book.parts[book.sheet_part[sheet]].decode("utf-8")
        parts = dict(book.parts)
        parts[book.sheet_part[sheet]] = (xml[:cell.start] + new_cell + xml[cell.end:]).encode("utf-8")
        self.n += 1
        path = write_parts(self.tmp / f"m{self.n % 4}.xlsx", parts)
        self.captured = None
        try:
            rep = self.check.check_workbook(path, progress=False)
        except UserError as e:
            msg = str(e)
            ok = "\n" not in msg and msg.strip() != ""
            for fn in UNKNOWN:  # an unsupported function: the message names it and the cell
                if what.startswith("function ") and what.split(" -> ")[-1] == fn:
                    ok = ok and fn in msg and f"{sheet}!{cell_address(cell.row, cell.col)}" in msg
            return Outcome("bad_input" if ok else "unclear_error", False, f"{what}: {type(e).__name__}: {msg}", msg)
        except Exception as e:  # noqa: BLE001 - any other exception is a bug
            return Outcome("crashed", False, f"{what}: {type(e).__name__}: {e}")
        assert self.captured is not None
        mut = step_values(self.captured.values, book.layout, book.steps)
        tol = 1e-9
        changed, exact_any = [], False
        for name in book.steps:
            exact, first = _compare(book.baseline[name], mut[name], tol)
            exact_any |= exact
            if first is not None:
                changed.append((name, first))
        if changed:
            name, k = changed[0]
            b = book.layout.blocks[name]
            cell_ = cell_address(b.row + k // b.n_cols, b.col + k % b.n_cols)
            expected = {"step": name, "sheet": b.sheet, "cell": cell_}
            if rep.ok:
                return Outcome("missed", True, f"{what}: step {name} changes at {cell_} but check passed")
            named = "first difference"
            if rep.first_failure != expected:
                # check once named the first cell holding a non-number even when an earlier cell
                # differed (test_check_names_the_first_differing_cell)
                return Outcome("misnamed", True, f"{what}: expected {expected}, check named {rep.first_failure}")
            # in a typed book later steps feed earlier ones (the next merge round, the generated
            # tokens): the first step that changes, in forward order, need not be the mutated one's
            if own_step is not None and own_step != name and not book.layout.typed_prompt:
                return Outcome("misnamed", True, f"{what}: the mutated cell is in step {own_step} but the first "
                                                 f"step that changes is {name}")
            return Outcome("caught", True, f"{what}: {name} at {cell_}", cell_named=named)
        # no step changed: does any other cell (a label, a text lookup, the Guide) show otherwise?
        diffs = shown_differences(book.shown, shown_cells(self.captured.values, list(book.shown)), tol)
        typed = self.captured.values.value(sheet, cell.row, cell.col) if kind == "foreign" else None
        if typed is not None:  # the new formula shows something where nothing was (a weight sheet too)
            diffs.append((sheet, cell.row, cell.col, ("empty",), _tagged(typed)))
        if diffs:
            where = f"{diffs[0][0]}!{cell_address(*diffs[0][1:3])} shows {diffs[0][4]}, was {diffs[0][3]}"
            if rep.ok:
                return Outcome("missed", True, f"{what}: {where} but check passed")
            shown = _shows_otherwise(self.captured.values, book.values, rep.first_failure)
            if shown is None:
                return Outcome("misnamed", True, f"{what}: {where}, check named {rep.first_failure}")
            return Outcome("caught", True, f"{what}: {shown}", cell_named="other cell")
        lint_only = (not rep.ok and rep.first_failure and rep.first_failure["step"] == "lint"
                     and all(s.ok for s in rep.steps))
        if rep.ok or lint_only:
            label = ("within_tol" if exact_any else "unchanged") + ("+lint" if lint_only else "")
            return Outcome(label, False, what)
        return Outcome("wrongly_failed", False, f"{what}: no step changes but check says {rep.first_failure}")


@dataclass
class Run:
    outcomes: list[tuple[tuple, Outcome]]
    counts: Counter
    value_changing: int

    def of(self, *categories: str) -> list[str]:
        return [f"[{o.category}] {m[0]}: {o.detail}" for m, o in self.outcomes if o.category in categories]


def _run_mutations(book: Book, tmp: Path, n: int, seed: int, every_sheet: tuple[str, ...] = ()) -> Run:
    gen = Generator(book, seed)
    with pytest.MonkeyPatch.context() as mp:
        judge = Judge(book, tmp, mp)
        outcomes = [(m, judge.run(*m)) for m in gen.generate(n, every_sheet)]
    counts = Counter(o.category for _, o in outcomes)
    value_changing = sum(o.value_changing for _, o in outcomes)
    no_change = sum(v for k, v in counts.items() if k.startswith(("unchanged", "within_tol")))
    print(f"\nmutations (seed {seed}): {counts['caught']} caught / {value_changing} value-changing / "
          f"{no_change} no-change (of which {counts['within_tol'] + counts['within_tol+lint']} within the "
          f"tolerance, {counts['unchanged+lint'] + counts['within_tol+lint']} with a portability finding) / "
          f"{counts['bad_input']} bad input (UserError) / {len(outcomes)} total")
    print("  by kind: " + ", ".join(f"{k}={v}" for k, v in sorted(Counter(m[0] for m, _ in outcomes).items())))
    print("  outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    print("  cell named: " + ", ".join(f"{k}={v}" for k, v in Counter(
        o.cell_named for _, o in outcomes if o.category == "caught").items()))
    reasons = Counter(re.sub(r"^(cell|sheet) [^:]*: |\(formula =.*|'[^']*'|[A-Z]+[0-9]+", "", o.message)[:50]
                      for _, o in outcomes if o.category == "bad_input")
    print("  bad input messages: " + "; ".join(f"{r!r} x{c}" for r, c in reasons.most_common(10)))
    for m, o in outcomes:
        if o.category not in ("caught", "bad_input") and not o.category.startswith(("unchanged", "within_tol")):
            print(f"  [{o.category}] {m[0]}: {o.detail}")
    return Run(outcomes, counts, value_changing)


@pytest.fixture(scope="module")
def default_run(book, tmp_path_factory) -> Run:
    return _run_mutations(book, tmp_path_factory.mktemp("mutants"), N_DEFAULT, SEED)


def test_formula_mutations_are_caught(default_run):
    """Every mutation that changes a step beyond the tolerance fails check, naming that step
    (and the mutated cell's step); the counts are printed (run with -s)."""
    run = default_run
    assert len(run.outcomes) >= 200
    assert run.value_changing >= N_TYPED // 2, "too few value-changing mutations to mean anything"
    assert run.counts["caught"] == run.value_changing, "\n".join(run.of("missed", "misnamed"))
    assert run.counts["caught"] / run.value_changing == 1.0


def test_mutations_that_change_nothing_pass(default_run):
    run = default_run
    assert sum(v for k, v in run.counts.items() if k.startswith("unchanged")) >= 20
    assert not run.of("wrongly_failed"), "\n".join(run.of("wrongly_failed"))


def _bad_formula(what: str) -> bool:
    """A mutation the engine cannot compute: broken syntax or a function it does not know."""
    return what.startswith("syntax broken") or any(what.endswith(f"-> {fn}") for fn in UNKNOWN)


def test_bad_formulas_are_changed_cells(default_run):
    """A formula the engine cannot compute shows #VALUE! (as in a spreadsheet): a sheetgpt book
    with one formula changed, so check fails naming the cell (exit 1), never bad input."""
    run = default_run
    bad = [(m, o) for m, o in run.outcomes if _bad_formula(o.detail)]
    assert len(bad) >= 10
    assert all(o.category == "caught" for _, o in bad), [o.detail for _, o in bad if o.category != "caught"]
    assert not run.of("bad_input", "unclear_error"), "\n".join(run.of("bad_input", "unclear_error"))


def test_no_mutation_crashes_the_engine(default_run):
    assert not default_run.of("crashed"), "\n".join(default_run.of("crashed"))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_formula_mutations_are_caught_many(book, tmp_path, seed):
    run = _run_mutations(book, tmp_path, N_SLOW // 3, seed)
    assert run.counts["caught"] == run.value_changing, "\n".join(run.of("missed", "misnamed"))
    assert not run.of("wrongly_failed", "unclear_error")


def test_check_names_the_first_differing_cell(book, tmp_path):
    """top_probs' formula made to read the logit two rows up: its first cell differs (a number)
    and a later one holds #VALUE! (it reads the header row). The first differing cell, row by
    row, is the first one."""
    from sheetgpt.check import check_workbook
    from sheetgpt.readback import load_book

    probs, logits = book.layout.blocks["top_probs"], book.layout.blocks["top_logits"]
    part = book.sheet_part[probs.sheet]
    xml = book.parts[part].decode("utf-8")
    top_left = cell_address(probs.row, probs.col)
    f = re.search(rf'<c r="{top_left}"[^>]*><f t="shared"[^>]*>([^<]*)</f>', xml)
    old = cell_address(logits.row, logits.col)
    assert f and old in f.group(1), f
    new_text = f.group(1).replace(old, cell_address(logits.row - 2, logits.col))
    parts = dict(book.parts)
    parts[part] = (xml[:f.start(1)] + new_text + xml[f.end(1):]).encode("utf-8")
    path = write_parts(tmp_path / "b.xlsx", parts)
    got = step_values(load_book(path, "fast", False).values, book.layout, ["top_probs"])["top_probs"]
    assert got[0][0] == "num" and got[0] != book.baseline["top_probs"][0]
    assert any(v[0] == "text" for v in got[1:]), got  # precondition: a later cell holds an error
    rep = check_workbook(path, progress=False)
    assert rep.first_failure == {"step": "top_probs", "sheet": probs.sheet, "cell": top_left}


@pytest.mark.slow
def test_formula_mutations_of_the_tiny_book(tiny_book, tmp_path):
    """The same generator on the `tiny` workbook (50,257-token vocabulary; ~3 s a check)."""
    run = _run_mutations(book_under_test(tiny_book), tmp_path, 30, SEED)
    assert run.counts["caught"] == run.value_changing, "\n".join(run.of("missed", "misnamed"))
    assert not run.of("wrongly_failed", "unclear_error")


# --- the generator itself --------------------------------------------------------------------------

def test_shift_formula_matches_the_engine_reading_of_shared_formulas(book):
    """Every shared-formula cell rewritten as its own plain formula (as the generator does)
    evaluates to exactly the same values: the generator's reference shifting is right."""
    from sheetgpt.readback import load_book

    gen = Generator(book, 0)
    parts = dict(book.parts)
    for sheet, xml in gen.xml.items():
        deps = [(c, si) for s, c, si in gen.sites["dependent"] if s == sheet]
        if not deps:
            continue
        pieces, pos = [], 0
        for cell, si in deps:
            row, col, text = gen.masters[(sheet, si)]
            c = cell.xml(xml)
            own = shift_formula(text, cell.row - row, cell.col - col)
            pieces += [xml[pos:cell.start], re.sub(r"<f\b[^>]*/>", lambda _: f"<f>{escape(own)}</f>", c, count=1)]
            pos = cell.end
        parts[book.sheet_part[sheet]] = ("".join(pieces) + xml[pos:]).encode("utf-8")
    path = write_parts(book.path.parent / "all_plain.xlsx", parts)
    contents = load_book(path, "fast", False)
    got = step_values(contents.values, book.layout, book.steps)
    for name in book.steps:  # plain formulas take other vectorised paths: a few ulps apart at most
        assert _compare(book.baseline[name], got[name], 1e-13)[1] is None, name


def test_lexer_round_trips_every_formula(book):
    gen = Generator(book, 0)
    n = 0
    for sheet, xml in gen.xml.items():
        for f in re.finditer(r"<f\b[^>]*>(.*?)</f>", xml, re.S):
            lex(unescape(f.group(1)))
            n += 1
    assert n > 100


# --- inputs: weights and token ids ----------------------------------------------------------------

def _weight_sites(book: Book) -> list[tuple[str, str, XmlCell]]:
    out = []
    for b in book.layout.weights.values():
        name = b.name
        xml = book.parts[book.sheet_part[b.sheet]].decode("utf-8")
        for cell in sheet_cells(xml):
            if b.row <= cell.row < b.row + b.n_rows and b.col <= cell.col < b.col + b.n_cols:
                out.append((b.sheet, name, cell))
    return out



def _with_value(book: Book, sheet: str, cell, value: str) -> dict[str, bytes]:
    part = book.sheet_part[sheet]
    xml = book.parts[part].decode("utf-8")
    c = cell.xml(xml)
    assert "<f" not in c and "t=" not in c, c
    new = re.sub(r"<v>[^<]*</v>", f"<v>{value}</v>", c)
    parts = dict(book.parts)
    parts[part] = (xml[:cell.start] + new + xml[cell.end:]).encode("utf-8")
    return parts


def test_weight_mutations_are_caught_with_the_model(book, mut_model, tmp_path):
    from sheetgpt.check import check_workbook

    rng = random.Random(SEED)
    sites = _weight_sites(book)
    assert len(sites) == sum(v.size for v in mut_model.weights.params.values())
    counts = Counter()
    for n in range(24):
        sheet, block, cell = rng.choice(sites)
        b = book.layout.blocks[block]
        param = sheet
        i, j = cell.row - b.row, cell.col - b.col
        w = np.float32(mut_model.weights[param].reshape(b.n_rows, b.n_cols)[i, j])
        how = rng.choice(["ulp", "scale", "sign", "respell"])
        if how == "ulp":
            new = np.nextafter(w, np.float32(np.inf) if rng.random() < 0.5 else np.float32(-np.inf), dtype=np.float32)
            text = repr(float(new))
        elif how == "scale":
            text = repr(float(np.float32(w * 1.5 + 0.01)))
        elif how == "sign":
            text = repr(float(-w)) if w != 0 else "0.5"
        else:  # the same float32, spelled with all the digits of its float64 value
            text = f"{float(w):.17g}"
        path = write_parts(tmp_path / f"w{n}.xlsx", _with_value(book, sheet, cell, text))
        address = cell_address(cell.row, cell.col)
        plain = check_workbook(path, progress=False)
        assert plain.ok, (how, param, address, plain.first_failure)  # weights are inputs: recomputed through
        with_model = check_workbook(path, model=mut_model, progress=False)
        if how == "respell":
            assert with_model.ok, (param, address, text, with_model.inputs)
            counts["same float32, passed"] += 1
        else:
            assert not with_model.ok
            assert with_model.first_failure == {"step": "weights", "sheet": param, "cell": address}, \
                (how, text, with_model.first_failure)
            assert any(address in line for line in with_model.inputs), with_model.inputs
            counts["changed, caught at its cell"] += 1
    print(f"\nweight mutations: {dict(counts)}")
    assert counts["changed, caught at its cell"] >= 10


def test_token_mutations_are_caught_with_the_prompt(book, mut_model, tmp_path):
    from sheetgpt.check import check_workbook

    rng = random.Random(SEED + 1)
    V = mut_model.weights.config.vocab_size
    ids = mut_model.tokenizer.encode(MUT_PROMPT)
    tok = book.layout.blocks["tokens"]
    cells = {(c.row, c.col): c for c in sheet_cells(book.parts[book.sheet_part[tok.sheet]].decode("utf-8"))}
    counts = Counter()
    for n in range(10):
        t = rng.randrange(len(ids))
        address = cell_address(tok.row + t, tok.col)
        how = "respell" if n % 3 == 0 else "other"
        text = rng.choice([f"{ids[t]}.0", f"{ids[t]:.3E}", f"0{ids[t]}"]) if how == "respell" else \
            str((ids[t] + rng.randrange(1, V)) % V)
        path = write_parts(tmp_path / f"t{n}.xlsx", _with_value(book, tok.sheet, cells[(tok.row + t, tok.col)], text))
        assert check_workbook(path, progress=False).ok  # a token id is an input: computed through
        rep = check_workbook(path, model=mut_model, prompt=MUT_PROMPT, progress=False)
        if how == "respell":
            assert rep.ok, rep.inputs
            counts["same id respelled, passed"] += 1
        else:
            assert not rep.ok and all(s.ok for s in rep.steps)
            assert rep.first_failure == {"step": "tokens", "sheet": tok.sheet, "cell": address}, rep.first_failure
            assert any(f"token {t} " in line for line in rep.inputs), rep.inputs
            counts["changed, caught at its cell"] += 1
    print(f"\ntoken mutations: {dict(counts)}")
    assert counts["changed, caught at its cell"] >= 5


@pytest.mark.parametrize("value", [
    "V", "1.5",
    "-1", "-2", "1E9", "text", "empty"])
def test_invalid_token_id_is_a_user_error_naming_its_cell(book, mut_model, tmp_path, value):
    from sheetgpt.check import check_workbook
    from sheetgpt.errors import UserError

    tok = book.layout.blocks["tokens"]
    part = book.sheet_part[tok.sheet]
    xml = book.parts[part].decode("utf-8")
    cell = next(c for c in sheet_cells(xml) if (c.row, c.col) == (tok.row + 1, tok.col))
    c = cell.xml(xml)
    if value == "text":
        new = c.replace("<c", '<c t="inlineStr"', 1).replace(re.search(r"<v>[^<]*</v>", c).group(),
                                                              "<is><t>the</t></is>")
    elif value == "empty":
        new = re.sub(r"<v>[^<]*</v>", "", c)
    else:
        v = str(mut_model.weights.config.vocab_size) if value == "V" else value
        new = re.sub(r"<v>[^<]*</v>", f"<v>{v}</v>", c)
    parts = dict(book.parts)
    parts[part] = (xml[:cell.start] + new + xml[cell.end:]).encode("utf-8")
    with pytest.raises(UserError) as e:
        check_workbook(write_parts(tmp_path / "bad.xlsx", parts), progress=False)
    msg = str(e.value)
    assert f"{tok.sheet}!{cell_address(tok.row + 1, tok.col)}" in msg and "\n" not in msg, msg


# --- the books people open: typed prompt, generation, the lens ----------------------------------

N_TYPED = 100  # formula mutations of the typed, generating book in the default run (each about 1 s)
TYPED_SHEETS = ("tok_chars", "tok_bpe", "generate", "sample", "lens", "dla")  # PER_SHEET of them in each of these


@pytest.fixture(scope="module")
def typed_book(mut_model, tmp_path_factory) -> Book:
    """The default kind of book (a typed prompt tokenized in formulas, the logit lens,
    attribution) that also writes 3 tokens, drawn: every sheet kind in one book."""
    from sheetgpt.builder import build_workbook
    from sheetgpt.layout import BookOptions

    path = tmp_path_factory.mktemp("typed_mutation") / "typed.xlsx"
    build_workbook(mut_model, "Attention compares", path, progress=False, typed_prompt=True, positions=10,
                   options=BookOptions(probes={"generate": 3, "sample": 1, "lens": 1, "dla": 1}))
    return book_under_test(path)


@pytest.fixture(scope="module")
def typed_run(typed_book, tmp_path_factory) -> Run:
    return _run_mutations(typed_book, tmp_path_factory.mktemp("typed_mutants"), N_TYPED, SEED, TYPED_SHEETS)


def test_typed_book_mutations_are_caught_at_the_right_cell(typed_run):
    """Tokenizer, controls, generation and lens formulas too: every value-changing mutation
    fails check (exit 1) naming the first step and cell that differ; none is bad input."""
    run = typed_run
    assert run.value_changing >= N_TYPED // 2, "too few value-changing mutations to mean anything"
    assert run.counts["caught"] == run.value_changing, "\n".join(run.of("missed", "misnamed"))
    assert not run.of("bad_input", "unclear_error", "crashed", "wrongly_failed"), \
        "\n".join(run.of("bad_input", "unclear_error", "crashed", "wrongly_failed"))
    sheets = {m[1] for m, o in run.outcomes if o.category == "caught"}
    assert set(TYPED_SHEETS) <= sheets, sheets
