"""Formula text -> syntax tree, on top of openpyxl's maintained formula tokenizer.

Precedence follows Excel: comparison < & < + - < * / < ^ < prefix - + < postfix %, so
-2^2 is 4 as in Excel. References are parsed into 0-based corners with their $ flags.
"""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass

from openpyxl.formula.tokenizer import Token, Tokenizer, TokenizerError

from ...a1 import AddressError, parse_range


# A long chain such as =A1+A2+...+A2000 (legal: Excel limits length, not chain length) is a
# left-deep tree thousands of nodes deep; hashing or walking it needs more than Python's
# default recursion limit. Formulas are at most 8,192 characters, so depth stays bounded.
RECURSION_LIMIT = 25_000


def allow_deep_formulas() -> None:
    if sys.getrecursionlimit() < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)


class FormulaError(Exception):
    """A formula this engine cannot parse or does not support."""


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Str:
    value: str


@dataclass(frozen=True)
class Bool:
    value: bool


@dataclass(frozen=True)
class Err:
    code: str


@dataclass(frozen=True)
class Missing:
    """An omitted argument, as in IF(A1,,2)."""


@dataclass(frozen=True)
class Ref:
    sheet: str | None  # None: the formula's own sheet
    r0: int
    c0: int
    r1: int
    c1: int
    abs_r0: bool = True
    abs_c0: bool = True
    abs_r1: bool = True
    abs_c1: bool = True

    @property
    def shape(self) -> tuple[int, int]:
        return self.r1 - self.r0 + 1, self.c1 - self.c0 + 1


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Unary:
    op: str
    arg: object


@dataclass(frozen=True)
class Binary:
    op: str
    left: object
    right: object


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple


BINARY_PRECEDENCE = {"=": 1, "<>": 1, "<": 1, ">": 1, "<=": 1, ">=": 1, "&": 2, "+": 3, "-": 3,
                     "*": 4, "/": 4, "^": 5}
MAX_FORMULA_CHARS = 8192  # Excel's limit; it also bounds how deep a formula's tree can be


def parse_ref(text: str) -> Ref | None:
    """'Sheet'!$A$1:B2 -> Ref (0-based, corners ordered); None when it is not a cell reference."""
    try:
        rng = parse_range(text)
    except AddressError as e:
        raise FormulaError(str(e)) from None
    if rng is None:
        return None
    return Ref(rng.sheet, rng.row0 - 1, rng.col0 - 1, rng.row1 - 1, rng.col1 - 1,
               rng.abs_row0, rng.abs_col0, rng.abs_row1, rng.abs_col1)


MAX_NESTING = 200


def _paren_depth(text: str) -> int:
    """Deepest parenthesis nesting outside string literals (a quick scan, no parsing)."""
    depth = deepest = 0
    in_string = False
    for ch in text:
        if ch == '"':
            in_string = not in_string
        elif not in_string and ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif not in_string and ch == ")":
            depth -= 1
    return deepest


@functools.lru_cache(maxsize=1 << 18)  # the compiler and the lint parse the same texts; trees are immutable
def parse(formula: str) -> object:
    """Parse formula text (with or without the leading '=') into a tree."""
    text = formula if formula.startswith("=") else "=" + formula
    if len(text) > MAX_FORMULA_CHARS:
        if _paren_depth(text) > MAX_NESTING:
            raise FormulaError("formula is nested too deeply")
        raise FormulaError(f"formula has {len(text):,} characters; Excel allows {MAX_FORMULA_CHARS:,}")
    ref = parse_ref(text[1:])
    if ref is not None:  # a bare reference (e.g. a transpose cell): no tokenizer needed
        return ref
    try:
        tokens = [t for t in Tokenizer(text).items if t.type != Token.WSPACE]
    except (TokenizerError, IndexError, ValueError) as e:
        raise FormulaError(f"cannot parse formula: {e}") from None
    if not tokens:
        raise FormulaError("empty formula")
    parser = _Parser(tokens)
    tree = parser.expression(0)
    if parser.i != len(tokens):
        raise FormulaError(f"unexpected {tokens[parser.i].value!r} in formula")
    return tree


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens, self.i = tokens, 0
        self.depth = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise FormulaError("formula ends too early")
        self.i += 1
        return tok

    def expression(self, min_prec: int) -> object:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise FormulaError("formula is nested too deeply")
        left = self.prefix()
        while True:
            tok = self.peek()
            if tok is None or tok.type != Token.OP_IN:
                break
            if tok.value not in BINARY_PRECEDENCE:
                raise FormulaError(f"operator {tok.value!r} is not supported")
            prec = BINARY_PRECEDENCE[tok.value]
            if prec < min_prec:
                break
            self.take()
            left = Binary(tok.value, left, self.expression(prec + 1))
        self.depth -= 1
        return left

    def prefix(self) -> object:
        tok = self.peek()
        if tok is not None and tok.type == Token.OP_PRE:
            self.take()
            return Unary(tok.value, self.prefix())
        node = self.atom()
        while (tok := self.peek()) is not None and tok.type == Token.OP_POST:
            self.take()
            node = Unary("%", node)
        return node

    def atom(self) -> object:
        tok = self.take()
        if tok.type == Token.OPERAND:
            if tok.subtype == Token.NUMBER:
                return Num(float(tok.value))
            if tok.subtype == Token.TEXT:
                return Str(tok.value[1:-1].replace('""', '"'))
            if tok.subtype == Token.LOGICAL:
                return Bool(tok.value.upper() == "TRUE")
            if tok.subtype == Token.ERROR:
                return Err(tok.value.upper())
            ref = parse_ref(tok.value)
            if ref is not None:
                return ref
            if "!" in tok.value or "[" in tok.value:
                raise FormulaError(f"reference {tok.value} (another workbook, or a sheet-level name) "
                                   "is not supported")
            return Name(tok.value)
        if tok.type == Token.FUNC and tok.subtype == Token.OPEN:
            name = tok.value[:-1].upper()
            args: list[object] = []
            if self.peek() is not None and self.peek().type == Token.FUNC and self.peek().subtype == Token.CLOSE:
                self.take()
                return Call(name, ())
            while True:
                nxt = self.peek()
                if nxt is not None and (nxt.type == Token.SEP or
                                        (nxt.type == Token.FUNC and nxt.subtype == Token.CLOSE)):
                    args.append(Missing())
                else:
                    args.append(self.expression(0))
                sep = self.take()
                if sep.type == Token.FUNC and sep.subtype == Token.CLOSE:
                    return Call(name, tuple(args))
                if sep.type != Token.SEP or sep.subtype != Token.ARG:
                    raise FormulaError(f"unexpected {sep.value!r} in the arguments of {name}")
        if tok.type == Token.PAREN and tok.subtype == Token.OPEN:
            node = self.expression(0)
            close = self.take()
            if close.type != Token.PAREN or close.subtype != Token.CLOSE:
                raise FormulaError(f"expected ')' but found {close.value!r}")
            return node
        if tok.type == Token.ARRAY:
            raise FormulaError("array constants {...} are not supported")
        raise FormulaError(f"unexpected {tok.value!r} in formula")
