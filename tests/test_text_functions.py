"""The text and logical functions a tokenizer in formulas needs (MID, LEN, LEFT, RIGHT,
CODE, ISNUMBER, AND, OR, NOT), computed by our engine exactly as LibreOffice computes
them, and as worked out by hand for a few."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sheetgpt.engines import evaluate

from test_engine import write_book

INPUTS = {"A1": "He's here", "A2": "  two  spaces", "A3": 12.5, "A4": True, "A6": "don't", "A7": "x", "A8": 0,
          "A9": "abc"}  # A5 stays empty
FORMULAS = {  # formula -> the value worked out by hand (Excel's documented rules)
    "LEN(A1)": 9, "LEN(A3)": 4, "LEN(A4)": 4, "LEN(A5)": 0, "LEN(A2)": 13,
    "MID(A1,1,2)": "He", "MID(A1,3,1)": "'", "MID(A1,0,1)": "#VALUE!", "MID(A1,2,-1)": "#VALUE!",
    "MID(A1,50,2)": "", "MID(A1,2.9,1.9)": "e", "MID(A3,2,2)": "2.", "MID(A1,1,100)": "He's here",
    "MID(A5,1,1)": "", "MID(A4,2,2)": "RU",
    "LEFT(A1)": "H", "LEFT(A1,3)": "He'", "LEFT(A1,0)": "", "LEFT(A1,-1)": "#VALUE!", "RIGHT(A1,2)": "re",
    "RIGHT(A1)": "e", "RIGHT(A1,100)": "He's here", "RIGHT(A1,0)": "",
    "CODE(A1)": 72, "CODE(MID(A1,3,1))": 39, "CODE(A5)": "#VALUE!", "CODE(A3)": 49, "CODE(MID(A2,1,1))": 32,
    "CODE(A9)": 97,
    "ISNUMBER(A3)": True, "ISNUMBER(A1)": False, "ISNUMBER(A5)": False, "ISNUMBER(A4)": False,
    "ISNUMBER(1/0)": False,
    "AND(A4,1)": True, "AND(A8,A4)": False, "AND(A5)": "#VALUE!", "AND(A1)": "#VALUE!", "AND(A5,1)": True,
    "OR(A8,0)": False, "OR(A8,A4)": True, "OR(A5,A8)": False, "OR(1/0,1)": "#DIV/0!",
    "NOT(A8)": True, "NOT(A5)": True, "NOT(A4)": False, "NOT(A3)": False,
    'IF(AND(CODE(MID(A1,3,1))=39,LEN(A1)>3),"apos","no")': "apos",
    "MID(A1,1,1)&MID(A1,2,1)": "He", 'MID(A1,1,1)="h"': True, "CODE(MID(A6,4,1))": 39,
    "LEN(MID(A2,3,3))": 3, "MID(A1,LEN(A1),1)": "e",
}


# Where LibreOffice differs from Excel (our engine follows Excel; a tokenizer in formulas
# must avoid these): a boolean is the number 1 or 0 to LibreOffice, so its text is "1" and
# ISNUMBER says TRUE; CODE of empty text is 0 there, #VALUE! in Excel.
LIBREOFFICE_DIFFERS = {"LEN(A4)": 1, "MID(A4,2,2)": "", "ISNUMBER(A4)": True, "CODE(A5)": 0}


@pytest.fixture(scope="module")
def text_book(tmp_path_factory) -> tuple[Path, list[tuple[str, object]]]:
    cells: dict[str, object] = dict(INPUTS)
    where = []
    for k, (formula, want) in enumerate(FORMULAS.items(), 1):
        cells[f"C{k}"] = "=" + formula
        where.append((formula, want))
    return write_book(tmp_path_factory.mktemp("text") / "text.xlsx", {"S": cells}), where


def _shown(v, typed: bool = True):
    """A value as a reader sees it: booleans apart from numbers (unless not `typed`: our
    LibreOffice engine reads TRUE back as 1), empty text as empty, and LibreOffice's
    Err:502 (invalid argument) by the name Excel gives it."""
    if v is None or v == "":
        return ""
    if v == "Err:502":
        return "#VALUE!"
    if isinstance(v, bool) and typed:
        return ("bool", v)
    return float(v) if isinstance(v, (int, float)) else v


def test_text_functions_as_worked_out_by_hand(text_book):
    path, where = text_book
    values = evaluate(path, "fast")
    got = {formula: _shown(values.value("S", k, 3)) for k, (formula, _) in enumerate(where, 1)}
    assert got == {formula: _shown(want) for formula, want in where}


@pytest.mark.libreoffice
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) is not installed")
def test_text_functions_as_libreoffice_computes_them(text_book):
    path, where = text_book
    ours, theirs = evaluate(path, "fast"), evaluate(path, "libreoffice")
    differ = {formula: theirs.value("S", k, 3) for k, (formula, _) in enumerate(where, 1)
              if _shown(ours.value("S", k, 3), False) != _shown(theirs.value("S", k, 3), False)}
    assert {f: _shown(v, False) for f, v in differ.items()} == \
        {f: _shown(v, False) for f, v in LIBREOFFICE_DIFFERS.items()}
