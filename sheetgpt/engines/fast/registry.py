"""Every spreadsheet function sheetgpt knows of, with the facts the lint needs about it.

The functions this engine computes register themselves with `@function(...)` where they
are written (functions.py); the table below adds those it does not compute but a file
may use: portable ones, and the Excel 2010+ additions a file must spell `_xlfn.NAME`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

ALL: Literal["all"] = "all"  # range_args: every argument takes a range as a range


@dataclass(frozen=True)
class Function:
    """A function as a parsed formula spells it (upper case, _XLFN. prefix included)."""

    name: str
    portable: bool = False  # Excel 2010+ and LibreOffice both have it and compute it alike
    needs_prefix: bool = False  # this spelling lacks the _xlfn. prefix: Excel shows #NAME?
    range_args: tuple[int, ...] | Literal["all"] = ()  # positions taking a range, not one value
    array_args: bool = False  # its arguments are evaluated as arrays, even in a normal cell
    implementation: Callable | None = None  # (ctx, argument trees) -> values; None: not computed here

    def takes_range(self, position: int) -> bool:
        return self.range_args == ALL or position in self.range_args


REGISTRY: dict[str, Function] = {}


def declare(name: str, *, portable: bool = False, xlfn: bool = False,
            range_args: tuple[int, ...] | Literal["all"] = (), array_args: bool = False,
            implementation: Callable | None = None) -> None:
    """Register `name` with its facts. With xlfn, the file spells it _xlfn.NAME: that is the
    name registered, and the bare NAME is registered as lacking the prefix."""
    spelled = "_XLFN." + name if xlfn else name
    _add(Function(spelled, portable, False, range_args, array_args, implementation))
    if xlfn:  # the missing prefix is the finding: its arguments are not flagged as well
        _add(Function(name, needs_prefix=True, range_args=ALL))


def _add(f: Function) -> None:
    if f.name in REGISTRY:
        raise ValueError(f"function {f.name} is registered twice")
    REGISTRY[f.name] = f


def function(name: str, *, portable: bool = False, xlfn: bool = False,
             range_args: tuple[int, ...] | Literal["all"] = (), array_args: bool = False):
    """Decorator: register the decorated implementation under `name` (see `declare`)."""
    def register(implementation: Callable) -> Callable:
        declare(name, portable=portable, xlfn=xlfn, range_args=range_args, array_args=array_args,
                implementation=implementation)
        return implementation
    return register


def implementations() -> dict[str, Callable]:
    """The functions this engine computes, by name."""
    return {name: f.implementation for name, f in REGISTRY.items() if f.implementation is not None}


# Functions the engine does not compute, known to the lint: (names, their facts).
NOT_COMPUTED = (
    (("CHOOSE", "CONCATENATE", "COS", "FALSE", "IFERROR", "ISBLANK", "ISERROR", "ISTEXT", "LOG", "LOG10",
      "LOWER", "POWER", "ROUND", "ROUNDDOWN", "ROUNDUP", "SIGN", "SIN", "TAN", "TRUE", "UPPER"),
     dict(portable=True)),
    (("COUNTA", "PRODUCT", "SUMSQ"), dict(portable=True, range_args=ALL)),
    (("COLUMN", "COLUMNS", "COUNTBLANK", "COUNTIF", "ROW", "ROWS"), dict(portable=True, range_args=(0,))),
    (("HLOOKUP", "VLOOKUP"), dict(portable=True, range_args=(1,))),
    (("AVERAGEIF", "SUMIF"), dict(portable=True, range_args=(0, 2))),
    (("VAR.S", "STDEV.P", "STDEV.S"), dict(portable=True, xlfn=True, range_args=ALL)),
    (("CONCAT", "TEXTJOIN", "IFS", "MAXIFS", "MINIFS", "SWITCH", "XLOOKUP", "XMATCH", "FILTER", "SORT", "SORTBY",
      "UNIQUE", "SEQUENCE", "LET", "LAMBDA", "RANDARRAY", "NORM.DIST", "PERCENTILE.INC", "MODE.SNGL"),
     dict(xlfn=True)),
)
for _names, _facts in NOT_COMPUTED:
    for _name in _names:
        declare(_name, **_facts)
