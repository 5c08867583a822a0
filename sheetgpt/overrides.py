"""Evaluate a book as if some cells held something else, without writing the file:
`--set SHEET!CELL=VALUE` on eval and check. The value replaces the cell's content,
formula included, exactly as if a person had typed it."""
from __future__ import annotations

import math
import re

from .a1 import AddressError, parse_range
from .engines import CellOverride
from .errors import UserError

_SETTING = re.compile(r"^('(?:[^']|'')+'|[^'!=]+)!(\$?[A-Za-z]{1,3}\$?[0-9]+)=(.*)$", re.S)


def parse_override(text: str) -> CellOverride:
    """SHEET!CELL=VALUE: a number where VALUE reads as one, else text ('123 for the text 123)."""
    m = _SETTING.match(text)
    if m is None:
        raise UserError(f"--set {text!r}: expected SHEET!CELL=VALUE, e.g. --set \"tokens!B3=464\"")
    sheet, address, raw = m.groups()
    if sheet.startswith("'"):
        sheet = sheet[1:-1].replace("''", "'")
    try:
        ref = parse_range(address)
    except AddressError as e:
        raise UserError(f"--set {text!r}: {e}") from None
    if raw.startswith("="):
        raise UserError(f"--set {text!r}: a value, not a formula (for the text itself write '{raw})")
    return CellOverride(sheet, ref.row0, ref.col0, _value(raw))


def _value(raw: str) -> float | str:
    if raw.startswith("'"):
        return raw[1:]
    try:
        number = float(raw)
    except ValueError:
        return raw
    return number if math.isfinite(number) else raw
