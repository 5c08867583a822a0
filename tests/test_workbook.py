"""Workbook tests at build level: the .xlsx read back by openpyxl and as raw OOXML parts,
never evaluated (see test_check.py for that)."""
from __future__ import annotations

import os
import re
import stat
import zipfile
from xml.etree import ElementTree

import numpy as np
import openpyxl
import pytest
from openpyxl.formula.tokenizer import Token, Tokenizer as FormulaTokenizer
from openpyxl.utils.cell import get_column_letter, range_boundaries
from openpyxl.worksheet.formula import ArrayFormula

from helpers import (NS_MAIN, SMALL_PROMPT, SMALL_SHAPE, TINY_PROMPT, _cell_span, bpe_encode, bytes_to_unicode,
                     defined_names, formula_texts, gpt2_encoder_json, gpt2_param_names, offline_tiktoken_gpt2,
                     ooxml_unescape, range_box, sheet_parts, token_bytes_of, token_text_of)

ALLOWED_FUNCTIONS = {"MMULT", "SUMPRODUCT", "INDEX", "MATCH", "MAX", "LARGE", "SQRT", "EXP", "TANH", "PI",
                     "IF", "SUM", "AVERAGE", "AND", "ISNUMBER", "RANK",
                     "MIN", "ABS", "LEN", "MID", "CODE", "CHAR", "EXACT", "TRANSPOSE"}  # the last: the selftest sheet's too
# what each layer computes, in forward order (a sheet may be added in between, never reordered)
LAYER_STEPS = ["ln_1", "qkv", "scores", "probs", "attn", "attn_proj", "resid_1", "ln_2", "fc", "gelu",
               "mlp_proj", "resid_2"]


@pytest.fixture(scope="module")
def small_wb(small_book):
    wb = openpyxl.load_workbook(small_book)
    yield wb
    wb.close()


@pytest.fixture(scope="module")
def tiny_ro(tiny_book):
    """The tiny book opened once, read-only (normal mode would load a million cells)."""
    wb = openpyxl.load_workbook(tiny_book, read_only=True)
    yield wb
    wb.close()


def _subsequence(needles: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(n == h for h in it) for n in needles)


def _param_block(ws, shape: tuple[int, ...], read_only: bool) -> np.ndarray:
    """A weight sheet's data: rows from 3, columns from B (rows 1-2 and column A are labels)."""
    rows, cols = (1, shape[0]) if len(shape) == 1 else shape
    cells = list(ws.iter_rows(min_row=3, max_row=3 + rows, min_col=2, max_col=2 + cols))
    values = [[c.value for c in r] for r in cells]
    # read-only mode stops at the sheet's last row, normal mode pads with empty cells
    assert len(values) == rows or all(v is None for v in values[rows]), "numbers below the weight block"
    assert all(r[cols] is None for r in values[:rows]), "numbers right of the weight block"
    data = [r[:cols] for r in values[:rows]]
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for r in data for v in r), \
        f"{ws.title}: a weight cell is not a number"
    assert all(c.data_type == "n" for r in cells[:rows] for c in r[:cols])
    return np.array(data, dtype=np.float64).reshape(shape)


# --- weights ----------------------------------------------------------------------------------

@pytest.mark.parametrize("read_only", [False, True], ids=["normal", "read_only"])
def test_small_weights_read_back_as_the_same_float32(small_book, small_model, read_only):
    wb = openpyxl.load_workbook(small_book, read_only=read_only)
    try:
        names = gpt2_param_names(SMALL_SHAPE["n_layer"])
        assert set(names) == set(small_model.weights.params)
        for name in names:
            expected = np.asarray(small_model.weights[name])
            assert expected.dtype == np.float32
            got = _param_block(wb[name], expected.shape, read_only)
            same = got.astype(np.float32) == expected
            assert same.all(), f"{name}: {int((~same).sum())} cells differ, e.g. {got[~same][:3]} vs {expected[~same][:3]}"
    finally:
        wb.close()


def test_tiny_wte_rows_read_back_as_the_same_float32(tiny_book, tiny_model, tiny_ro):
    wte = np.asarray(tiny_model.weights["wte.weight"])
    ws = tiny_ro["wte.weight"]
    got = np.array([[c.value for c in r] for r in ws.iter_rows(min_row=3, max_row=8, min_col=2, max_col=1 + wte.shape[1])],
                   dtype=np.float64)
    assert (got.astype(np.float32) == wte[:6]).all()
    # the last row, straight from the sheet's XML (openpyxl would parse all 50,257 rows to get there)
    with zipfile.ZipFile(tiny_book) as z:
        xml = z.read(sheet_parts(tiny_book)["wte.weight"]).decode()
    row = 3 + wte.shape[0] - 1
    last = []
    for j in range(wte.shape[1]):
        a, b = _cell_span(xml, f"{get_column_letter(2 + j)}{row}")
        last.append(float(re.search(r"<v>([^<]*)</v>", xml[a:b]).group(1)))
    assert (np.float32(last) == wte[-1]).all()
    assert f'<row r="{row + 1}"' not in xml


# --- structure --------------------------------------------------------------------------------

@pytest.mark.parametrize("book, n_layer", [("small_wb", SMALL_SHAPE["n_layer"]), ("tiny_ro", 2)])
def test_sheet_order(request, book, n_layer):
    wb = request.getfixturevalue(book)
    names = wb.sheetnames
    states = {ws.title: ws.sheet_state for ws in wb.worksheets}
    assert names[:5] == ["Guide", "controls", "tokens", "embed_tok", "embed"]
    params = gpt2_param_names(n_layer)
    weight_sheets = [n for n in names if n.endswith((".weight", ".bias"))]
    assert sorted(weight_sheets) == sorted(params), "one sheet per GPT-2 parameter, named after it"
    first_weight = names.index(weight_sheets[0])
    assert all(names.index(w) >= first_weight for w in weight_sheets)
    compute = names[:first_weight]
    position = -1
    for i in range(n_layer):
        layer = [n for n in compute if n.startswith(f"h{i} ")]
        idx = [compute.index(n) for n in layer]
        assert idx == list(range(idx[0], idx[0] + len(idx))), f"layer {i}'s sheets are not together"
        assert idx[0] > position, f"layer {i} comes before layer {i - 1}"
        position = idx[-1]
        steps = [n.split(" ", 1)[1] for n in layer]
        assert _subsequence(LAYER_STEPS, steps), f"layer {i} sheets out of forward order: {steps}"
    tail = compute[position + 1:]
    assert _subsequence(["ln_f", "logits", "prediction"], tail), tail
    assert states.pop("_meta") == "hidden"
    assert set(states.values()) == {"visible"}


@pytest.mark.parametrize("book", ["small_book", "tiny_book"])
def test_sheet_names_are_valid_in_excel(request, book):
    path = request.getfixturevalue(book)
    names = list(sheet_parts(path))
    assert len({n.lower() for n in names}) == len(names)
    for n in names:
        assert 1 <= len(n) <= 31, n
        assert not set(n) & set("[]:*?/\\"), n
        assert not n.startswith("'") and not n.endswith("'"), n
        assert n.lower() != "history"


def test_every_sheet_has_a_title(small_wb):
    for ws in small_wb.worksheets:
        if ws.sheet_state == "hidden":
            continue
        title = ws["A1"].value
        assert isinstance(title, str) and len(title) > 3 and ws["A1"].data_type == "s", ws.title


def test_defined_names_small(small_book, small_model, small_vocab_dir, small_wb):
    from sheetgpt.architectures import lay_out
    from sheetgpt.reference import forward

    names = defined_names(small_book)
    ids = bpe_encode(SMALL_PROMPT, small_vocab_dir)
    assert len(ids) == 3

    sheet, ref = names["tokens"]
    r0, c0, n, m = range_box(ref)
    assert (n, m) == (len(ids), 1)
    cells = [small_wb[sheet].cell(r0 + t, c0) for t in range(n)]
    assert [c.value for c in cells] == ids and all(c.data_type == "n" for c in cells)

    sheet, ref = names["logits"]
    r0, c0, n, m = range_box(ref)
    assert (n, m) == (small_model.weights.config.vocab_size, 1)
    master = small_wb[sheet].cell(r0, c0).value  # one array formula over the whole block
    assert isinstance(master, ArrayFormula) and master.ref == f"C3:C{2 + n}", master
    assert master.text == "=MMULT('wte.weight'!$B$3:$I$359,TRANSPOSE('ln_f'!$D$5:$K$5))"  # wte @ the last row

    # every checked step has a name, on its own sheet in forward order, shaped like its tensor
    steps = lay_out(small_model.weights.config, len(ids)).steps
    shapes = {k: v.shape for k, v in forward(small_model.weights, ids).items()}
    sheet_order = small_wb.sheetnames
    last = 0
    for step in steps:
        assert step in names, f"no defined name for step {step}"
        sheet, ref = names[step]
        r0, c0, n, m = range_box(ref)
        assert (n, m) == shapes[step], step
        ws = small_wb[sheet]
        kinds = {ws.cell(r0 + i, c0 + j).data_type for i in range(n) for j in range(m)
                 if ws.cell(r0 + i, c0 + j).value is not None}
        assert "f" in kinds, f"{step}: no formula in its block {sheet}!{ref}"
        if step not in ("next_exp", "next_probs"):  # the softmax over the vocabulary sits beside the logits
            assert sheet_order.index(sheet) >= last, f"{step} on {sheet} is out of forward order"
            last = sheet_order.index(sheet)


def test_defined_names_tiny(tiny_book, tiny_ro):
    names = defined_names(tiny_book, tiny_ro)
    ids = offline_tiktoken_gpt2().encode_ordinary(TINY_PROMPT)
    sheet, ref = names["tokens"]
    c0, r0, c1, r1 = range_boundaries(ref)
    assert c0 == c1 and r1 - r0 + 1 == len(ids)
    got = [r[0].value for r in tiny_ro[sheet].iter_rows(min_row=r0, max_row=r1, min_col=c0, max_col=c0)]
    assert got == ids
    c0, r0, c1, r1 = range_boundaries(names["logits"][1])
    assert c0 == c1 and r1 - r0 + 1 == 50257


# --- formulas ---------------------------------------------------------------------------------

def _functions_and_refs(formula: str) -> tuple[set[str], set[str]]:
    items = FormulaTokenizer("=" + formula).items
    funcs = {t.value[:-1].upper() for t in items if t.type == Token.FUNC and t.subtype == Token.OPEN}
    refs = {t.value for t in items if t.type == Token.OPERAND and t.subtype == Token.RANGE}
    return funcs, refs


def _sheet_of(ref: str) -> str | None:
    if "!" not in ref:
        return None
    sheet = ref.rsplit("!", 1)[0]
    return sheet[1:-1].replace("''", "'") if sheet.startswith("'") else sheet


@pytest.mark.parametrize("book", ["small_book", "tiny_book"])
def test_formulas_use_only_portable_functions(request, book):
    path = request.getfixturevalue(book)
    wb = request.getfixturevalue("small_wb" if book == "small_book" else "tiny_ro")
    sheets, names = set(sheet_parts(path)), set(defined_names(path, wb))
    funcs: set[str] = set()
    n = 0
    big = {"vocab", *(n for n in sheets if n.endswith((".weight", ".bias")))}
    # the tiny book's million constants hold no formula (the small book's are all scanned)
    for sheet, _, text, _ in formula_texts(path, None if book == "small_book" else sheets - big):
        if not text:  # a cell following a shared formula
            continue
        n += 1
        assert len(text) < 8192, f"{sheet}: formula of {len(text)} characters"
        f, refs = _functions_and_refs(text)
        funcs |= f
        for ref in refs:
            target = _sheet_of(ref)
            if target is not None:
                assert target in sheets, f"{sheet}: {text} refers to a missing sheet {target!r}"
            elif not re.fullmatch(r"\$?[A-Z]{1,3}\$?\d+(:\$?[A-Z]{1,3}\$?\d+)?", ref):
                assert ref in names, f"{sheet}: {text} uses an undefined name {ref!r}"
    assert n > 20
    assert funcs <= ALLOWED_FUNCTIONS, f"not allowed: {funcs - ALLOWED_FUNCTIONS}"
    assert {"MMULT", "EXP", "TANH", "SQRT"} <= funcs


def test_every_cell_formula_after_shared_formula_expansion(small_wb):
    """openpyxl expands shared formulas into each cell: every one must parse and stay portable."""
    n = 0
    for ws in small_wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                if c.data_type == "f":
                    text = c.value if isinstance(c.value, str) else c.value.text
                    assert text.startswith("=") and len(text) <= 8192
                    funcs, _ = _functions_and_refs(text[1:])
                    assert funcs <= ALLOWED_FUNCTIONS, f"{ws.title}!{c.coordinate}: {text}"
                    n += 1
    assert n > 1000


@pytest.mark.parametrize("book", ["small_book", "tiny_book"])
def test_recalculates_on_load_and_caches_no_values(request, book):
    path = request.getfixturevalue(book)
    with zipfile.ZipFile(path) as z:
        wb = ElementTree.fromstring(z.read("xl/workbook.xml"))
    calc = wb.find(NS_MAIN + "calcPr")
    assert calc is not None and calc.get("fullCalcOnLoad") in ("1", "true")
    big = {"vocab", *(n for n in sheet_parts(path) if n.endswith((".weight", ".bias")))}
    sheets = None if book == "small_book" else set(sheet_parts(path)) - big  # tiny: skip the constants
    count = 0
    for sheet, attrs, text, has_value in formula_texts(path, sheets):
        assert not has_value, f"{sheet}!{attrs.get('r', '?')} caches a value for {text!r}"
        count += 1
    assert count > 1000


def test_token_text_beside_each_id_is_a_vocabulary_lookup(small_book, small_wb):
    sheet, ref = defined_names(small_book)["tokens"]
    r0, c0, n, _ = range_box(ref)
    for t in range(n):
        c = small_wb[sheet].cell(r0 + t, c0 + 1)
        id_cell = rf"\$?{get_column_letter(c0)}\$?{r0 + t}"
        assert c.data_type == "f" and "'vocab'!" in c.value and re.search(rf"(?<![A-Z$]){id_cell}(?!\d)", c.value), c.value


# --- files --------------------------------------------------------------------------------------

def test_deterministic(small_model, small_book, tmp_path):
    from sheetgpt.builder import build_workbook

    a, b = tmp_path / "a.xlsx", tmp_path / "sub" / "b.xlsx"
    build_workbook(small_model, SMALL_PROMPT, a, progress=False)
    build_workbook(small_model, SMALL_PROMPT, b, progress=False)
    assert a.read_bytes() == b.read_bytes() == small_book.read_bytes()


def test_deterministic_with_worker_processes(small_model, small_book, tmp_path):
    import inspect

    from sheetgpt.builder import build_workbook

    if "workers" not in inspect.signature(build_workbook).parameters:
        pytest.skip("build_workbook has no worker processes")
    build_workbook(small_model, SMALL_PROMPT, tmp_path / "w.xlsx", progress=False, workers=2)
    assert (tmp_path / "w.xlsx").read_bytes() == small_book.read_bytes()


def test_deterministic_tiny(tiny_model, tiny_book, tmp_path):
    from sheetgpt.builder import build_workbook

    build_workbook(tiny_model, TINY_PROMPT, tmp_path / "again.xlsx", progress=False)
    assert (tmp_path / "again.xlsx").read_bytes() == tiny_book.read_bytes()


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("existing", [None, b"the user's own file"], ids=["new", "existing"])
@pytest.mark.parametrize("fail_at", ["tokens", "wte.weight", "_meta"])
def test_failed_build_leaves_nothing_behind(small_model, tmp_path, monkeypatch, exc, existing, fail_at):
    from sheetgpt import builder

    target = tmp_path / "book.xlsx"
    if existing is not None:
        target.write_bytes(existing)
    before = sorted(p.name for p in tmp_path.iterdir())
    real = builder._SheetWriter.write
    calls = []

    def failing(self, wb, sheet, *args, **kwargs):
        calls.append(sheet.name)
        if sheet.name == fail_at:
            raise exc("disk full, say")
        return real(self, wb, sheet, *args, **kwargs)

    monkeypatch.setattr(builder._SheetWriter, "write", failing)
    with pytest.raises(exc):
        builder.build_workbook(small_model, SMALL_PROMPT, target, progress=False)
    assert calls[-1] == fail_at and len(calls) > 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a temporary file was left behind"
    if existing is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == existing


def test_failed_build_with_worker_processes_leaves_nothing_behind(small_model, tmp_path, monkeypatch):
    import inspect

    from sheetgpt import builder

    if "workers" not in inspect.signature(builder.build_workbook).parameters:
        pytest.skip("build_workbook has no worker processes")
    target = tmp_path / "book.xlsx"
    target.write_bytes(b"keep me")
    real = builder._SheetWriter.write

    def failing(self, wb, sheet, *args, **kwargs):
        if sheet.name == "h.0.attn.c_attn.weight":
            raise OSError(28, "No space left on device")
        return real(self, wb, sheet, *args, **kwargs)

    monkeypatch.setattr(builder._SheetWriter, "write", failing)
    with pytest.raises(OSError):
        builder.build_workbook(small_model, SMALL_PROMPT, target, progress=False, workers=2)
    assert [p.name for p in tmp_path.iterdir()] == ["book.xlsx"]
    assert target.read_bytes() == b"keep me"


def test_built_file_has_normal_permissions(small_model, tmp_path):
    from sheetgpt.builder import build_workbook

    old = os.umask(0o022)
    try:
        build_workbook(small_model, SMALL_PROMPT, tmp_path / "book.xlsx", progress=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "book.xlsx").stat().st_mode) == 0o644


# --- vocabulary -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_vocab_rows(tiny_ro):
    """(id, text cell, byte-level string cell) of every row of the `vocab` sheet whose column A is an id."""
    out = {}
    for a, b, c in tiny_ro["vocab"].iter_rows(min_col=1, max_col=3):
        if isinstance(a.value, int) and not isinstance(a.value, bool):
            out[a.value] = (b.data_type, b.value, c.data_type, c.value)
    return out


@pytest.fixture(scope="module")
def encoder_json():
    return gpt2_encoder_json()


def test_vocab_byte_level_strings_all_survive(tiny_vocab_rows, encoder_json):
    assert sorted(tiny_vocab_rows) == list(range(50257))
    for s, i in encoder_json.items():
        _, _, kind, value = tiny_vocab_rows[i]
        assert kind == "s" and value == s, (i, s, value)


def _special_ids(encoder_json) -> dict[str, list[int]]:
    """Token ids whose text is hard to keep as text: control bytes, text that a spreadsheet would
    take for a formula, and pieces of a multi-byte UTF-8 character."""
    spell = bytes_to_unicode()
    tokens = {i: token_bytes_of(s) for s, i in encoder_json.items() if s != "<|endoftext|>"}
    control = [encoder_json[spell[b]] for b in range(0x20)]
    formula_like = [i for i, b in tokens.items() if b[:1] in (b"=", b"+", b"-", b"@")]
    partial = []
    for i, b in tokens.items():
        try:
            b.decode("utf-8")
        except UnicodeDecodeError:
            partial.append(i)
    return {"control": control, "formula_like": formula_like, "partial_utf8": partial}


@pytest.mark.parametrize("kind", ["control", "formula_like", "partial_utf8"])
def test_vocab_text_survives(tiny_vocab_rows, encoder_json, kind):
    ids = _special_ids(encoder_json)[kind]
    assert len(ids) >= {"control": 32, "formula_like": 50, "partial_utf8": 300}[kind]
    string_of = {i: s for s, i in encoder_json.items()}
    for i in ids:
        if i == encoder_json[bytes_to_unicode()[0x0D]]:
            continue  # carriage return: see test_vocab_carriage_return_survives
        data_type, value, _, _ = tiny_vocab_rows[i]
        expected = token_text_of(string_of[i])
        assert data_type == "s" and isinstance(value, str), (i, data_type, value)
        # openpyxl hands back OOXML's _xHHHH_ escapes undecoded; Excel and LibreOffice decode them
        assert ooxml_unescape(value) == expected, (i, value, expected)


def test_vocab_text_of_every_token(tiny_vocab_rows, encoder_json):
    cr = bytes_to_unicode()[0x0D]
    for s, i in encoder_json.items():
        if cr in s:
            continue
        data_type, value, _, _ = tiny_vocab_rows[i]
        assert data_type == "s" and ooxml_unescape(value) == token_text_of(s), (i, s, value)


def test_vocab_carriage_return_survives(tiny_vocab_rows, encoder_json):
    i = encoder_json[bytes_to_unicode()[0x0D]]
    data_type, value, _, _ = tiny_vocab_rows[i]
    assert data_type == "s" and ooxml_unescape(value) == "\r", repr(value)


# --- the Guide ----------------------------------------------------------------------------------

def _guide_checks(wb, prompt: str, random_weights: bool) -> None:
    assert wb.sheetnames[0] == "Guide"
    guide = wb["Guide"]
    cells = [c for row in guide.iter_rows() for c in row if c.value is not None]
    texts = [c.value for c in cells if c.data_type == "s"]
    assert prompt in texts
    if random_weights:
        assert any("random" in t.lower() for t in texts), "the Guide must say the weights are random"
    prediction = {c.coordinate: c for row in wb["prediction"].iter_rows() for c in row if c.value is not None}
    to_prediction = []
    for c in cells:
        if c.data_type != "f":
            continue
        assert c.value.startswith("=")
        _, refs = _functions_and_refs(c.value[1:])
        for ref in refs:
            if _sheet_of(ref) == "prediction":
                target = prediction.get(ref.rsplit("!", 1)[1].replace("$", ""))
                assert target is not None and target.data_type == "f", f"Guide {c.value} is not live"
                to_prediction.append(c.value)
    assert len(to_prediction) >= 6, "the predicted token and the top 5 must be live formulas"


def test_guide_small(small_wb):
    assert small_wb.active.title == "Guide"
    _guide_checks(small_wb, SMALL_PROMPT, random_weights=True)


def test_guide_tiny(tiny_ro):
    _guide_checks(tiny_ro, TINY_PROMPT, random_weights=True)


def test_row_runs_are_each_rows_runs_of_equal_values():
    """The builder's runs of a masked shared formula, against a plain scan of each row."""
    from sheetgpt.builder import _row_runs

    def scan(row) -> list[tuple[int, int, bool]]:
        runs, start = [], 0
        for j in range(1, len(row) + 1):
            if j == len(row) or row[j] != row[start]:
                runs.append((start, j, bool(row[start])))
                start = j
        return runs

    rng = np.random.default_rng(0)
    for _ in range(300):
        mask = rng.random((rng.integers(1, 7), rng.integers(1, 9))) < rng.random()
        assert list(_row_runs(mask)) == [scan(row) for row in mask], mask


def test_book_options_are_written_and_read_back_as_a_whole(tmp_path, small_model):
    """The metadata sheet holds every option (a flag as 0/1) and readback returns the same
    options; an option a book does not record takes its value for books older than it."""
    from sheetgpt.builder import build_workbook
    from sheetgpt.layout import BookOptions
    from sheetgpt.readback import load_book

    options = BookOptions("cells", probes={"generate": 2, "lens": 1})
    path = tmp_path / "options.xlsx"
    build_workbook(small_model, SMALL_PROMPT, path, progress=False, typed_prompt=True, options=options)
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        meta = {row[0]: row[1] for row in wb["_meta"].iter_rows(values_only=True)}
    finally:
        wb.close()
    assert {k: meta[k] for k in ("generate", "lens", "form")} == {"generate": 2, "lens": 1, "form": "cells"}
    assert load_book(path, progress=False).layout.options == options
    older = BookOptions.from_meta({"generate": 1.0}, ["generate", "lens"])  # before lens, form and architecture
    assert older == BookOptions("cells", "gpt2", probes={"generate": 1})
