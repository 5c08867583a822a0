"""The command line, run as `python -m sheetgpt ...` in a fresh directory: exit codes, one-line
errors without tracebacks, --json output, and the files it writes."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pytest

from helpers import (SMALL_PROMPT, TINY_PROMPT, bpe_encode, bytes_to_unicode, cell_address, defined_names, edit_formula, edit_number,
                     gpt2_forward, offline_tiktoken_gpt2, range_box, read_weight_sheets, rel_err, rewrite_part,
                     run_cli, sheet_parts, softmax, token_text_of)


def _one_line_error(r, code: int = 2) -> str:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {r.stderr!r}"
    assert r.stdout == "", r.stdout
    return lines[0]


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


# --- tokenize -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["Hello world", "naïve café, 日本語 👋 <|endoftext|> 1234567"])
def test_tokenize_json(tmp_path, text):
    r = run_cli("tokenize", text, "--json", cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert len(r.stdout.strip().splitlines()) == 1
    out = json.loads(r.stdout)
    enc = offline_tiktoken_gpt2()
    ids = enc.encode_ordinary(text)
    assert out["ids"] == ids
    assert len(out["tokens"]) == len(ids)
    for i, tok in zip(ids, out["tokens"]):
        raw = enc.decode_single_token_bytes(i)
        spelled = "".join(bytes_to_unicode()[x] for x in raw)
        assert tok in (raw.decode("utf-8", errors="replace"), spelled), (i, tok)


def test_tokenize_text(tmp_path):
    r = run_cli("tokenize", "Hello world", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "15496" in lines[0] and "Hello" in lines[0]
    assert "995" in lines[1] and "world" in lines[1]


# --- build ----------------------------------------------------------------------------------------

LONG_PROMPT = " a" * 200  # 200 tokens; tiny reads 128


@pytest.mark.parametrize("case, args", [
    ("empty prompt", ["build", "", "-o", "out.xlsx"]),
    ("longer than the context", ["build", LONG_PROMPT, "--model", "tiny", "-o", "out.xlsx"]),
    ("unknown model", ["build", "Hello", "--model", "no-such-model", "-o", "out.xlsx"]),
    ("output is a directory", ["build", "Hello", "-o", "taken.xlsx"]),
    ("output is a plain directory", ["build", "Hello", "-o", "adir"]),
    ("output not .xlsx", ["build", "Hello", "-o", "foo.txt"]),
])
def test_build_bad_input(tmp_path, case, args):
    (tmp_path / "taken.xlsx").mkdir()
    (tmp_path / "adir").mkdir()
    before = _files(tmp_path)
    _one_line_error(run_cli(*args, cwd=tmp_path))
    assert _files(tmp_path) == before, "nothing may be written"


def test_long_prompt_is_longer_than_tiny_context():
    assert len(offline_tiktoken_gpt2().encode_ordinary(LONG_PROMPT)) == 200 > 128


def test_failed_build_keeps_existing_file(tmp_path):
    (tmp_path / "out.xlsx").write_bytes(b"my work")
    line = _one_line_error(run_cli("build", LONG_PROMPT, "-o", "out.xlsx", cwd=tmp_path))
    assert "200" in line and "128" in line
    assert (tmp_path / "out.xlsx").read_bytes() == b"my work"
    assert _files(tmp_path) == ["out.xlsx"]


def test_build_readme_command(tmp_path, tiny_book):
    r = run_cli("build", TINY_PROMPT, "--model", "tiny", "--fixed", "--no-lens", "--no-dla", "-o", "out/t.xlsx",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert _files(tmp_path) == ["out", "out/t.xlsx"]
    book = tmp_path / "out" / "t.xlsx"
    assert "random" in r.stdout.lower(), "tiny's predictions must be said to be random"
    # same model, prompt and options: byte-identical to the book built in this process
    assert book.read_bytes() == tiny_book.read_bytes()
    wb = openpyxl.load_workbook(book, read_only=True)
    try:
        sheet, ref = defined_names(book, wb)["tokens"]
        r0, c0, n, _ = range_box(ref)
        got = [row[0] for row in wb[sheet].iter_rows(min_row=r0, max_row=r0 + n - 1, min_col=c0, max_col=c0,
                                                      values_only=True)]
    finally:
        wb.close()
    assert got == offline_tiktoken_gpt2().encode_ordinary(TINY_PROMPT)


def test_build_from_model_directory(tmp_path, small_model_dir, small_model, small_vocab_dir):
    r = run_cli("build", SMALL_PROMPT, "--model", str(small_model_dir), "--fixed", "-o", "small.xlsx", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    book = tmp_path / "small.xlsx"
    params = small_model.weights.params
    got = read_weight_sheets(book, {k: v.shape for k, v in params.items()})
    for name, w in params.items():
        assert (got[name].astype(np.float32) == w).all(), name
    sheet, ref = defined_names(book)["tokens"]
    r0, c0, n, _ = range_box(ref)
    wb = openpyxl.load_workbook(book, read_only=True)
    try:
        ids = [row[0] for row in wb[sheet].iter_rows(min_row=r0, max_row=r0 + n - 1, min_col=c0, max_col=c0,
                                                      values_only=True)]
    finally:
        wb.close()
    assert ids == bpe_encode(SMALL_PROMPT, small_vocab_dir)


# --- check and eval: bad files -------------------------------------------------------------------

def _bad_book(tmp_path: Path, kind: str) -> str:
    if kind == "missing":
        return "missing.xlsx"
    if kind == "not a zip":
        (tmp_path / "notzip.xlsx").write_text("hello, I am text")
        return "notzip.xlsx"
    if kind == "zip, not xlsx":
        with zipfile.ZipFile(tmp_path / "plain.xlsx", "w") as z:
            z.writestr("readme.txt", "not a workbook")
        return "plain.xlsx"
    if kind == "xlsx not by sheetgpt":
        wb = openpyxl.Workbook()
        wb.active["A1"] = "tokens"
        wb.active["B2"] = "=1+1"
        wb.save(tmp_path / "other.xlsx")
        return "other.xlsx"
    if kind == "directory":
        (tmp_path / "dir.xlsx").mkdir()
        return "dir.xlsx"
    raise AssertionError(kind)


@pytest.mark.parametrize("command", ["check", "eval"])
@pytest.mark.parametrize("kind", ["missing", "not a zip", "zip, not xlsx", "xlsx not by sheetgpt", "directory"])
def test_bad_book(tmp_path, command, kind):
    name = _bad_book(tmp_path, kind)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    line = _one_line_error(run_cli(command, name, cwd=tmp_path))
    assert name in line
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


# --- check and eval on the small book ------------------------------------------------------------

@pytest.mark.parametrize("engine", [None, "formulas"], ids=["default engine", "formulas"])
def test_check_json_passes(tmp_path, small_book, small_cells_book, engine):
    book = small_cells_book if engine == "formulas" else small_book  # it refuses array formulas
    r = run_cli("check", str(book), "--json", *(["--engine", engine] if engine else []), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stdout.strip().splitlines()) == 1
    out = json.loads(r.stdout)
    assert {"ok", "steps", "first_failure"} <= set(out)
    assert out["ok"] is True and out["first_failure"] is None
    assert len(out["steps"]) > 25
    for s in out["steps"]:
        assert {"name", "max_abs_err", "max_rel_err", "ok"} <= set(s)
        assert s["ok"] is True and 0 <= s["max_rel_err"] <= 1e-9
    assert {"embed", "h0_scores", "h0_gelu", "logits"} <= {s["name"] for s in out["steps"]}


def test_check_json_tampered(tmp_path, scores_tampered_book):
    r = run_cli("check", str(scores_tampered_book), "--json", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    out = json.loads(r.stdout)
    sheet, ref = defined_names(scores_tampered_book)["h0_scores"]
    r0, c0, _, _ = range_box(ref)
    assert out["ok"] is False
    assert out["first_failure"] == {"step": "h0_scores", "sheet": sheet, "cell": cell_address(r0, c0)}
    steps = {s["name"]: s for s in out["steps"]}
    assert steps["h0_qkv"]["ok"] is True and steps["h0_scores"]["ok"] is False


def test_check_prints_a_summary_and_the_table_with_verbose(tmp_path, small_book):
    """A passing book: a few lines (the verdict, the counts, the largest error); --verbose adds
    one line per step and formula block, as --json lists them."""
    out = json.loads(run_cli("check", str(small_book), "--json", cwd=tmp_path).stdout)
    r = run_cli("check", str(small_book), cwd=tmp_path)
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and len(lines) <= 15 and lines[-1].startswith("PASS"), r.stdout
    assert f"all {len(out['steps'])} steps agree" in r.stdout
    worst = max(out["steps"], key=lambda s: s["max_rel_err"])
    assert f"largest error: step {worst['name']} " in r.stdout
    verbose = run_cli("check", str(small_book), "--verbose", cwd=tmp_path).stdout.strip().splitlines()
    named = {line.split()[0] for line in verbose}
    assert {s["name"] for s in out["steps"] + out["shown"]} <= named and verbose[-len(lines):] == lines


def test_check_junit_names_each_failing_step_and_its_cell(tmp_path, scores_tampered_book):
    """The tampered scores formula and every step after it fail in the JUnit report, at the cells
    --json names; earlier steps pass; the summary lists the same failures."""
    import xml.etree.ElementTree as ET

    report = tmp_path / "check.xml"
    r = run_cli("check", str(scores_tampered_book), "--junit", str(report), cwd=tmp_path)
    out = json.loads(run_cli("check", str(scores_tampered_book), "--json", cwd=tmp_path).stdout)
    assert r.returncode == 1 and r.stdout.strip().splitlines()[-1].startswith("FAIL: first difference in step h0_scores")
    suite = ET.parse(report).getroot().find("testsuite")
    cases = {(c.get("classname"), c.get("name")): c.find("failure") for c in suite.iter("testcase")}
    failed_steps = {s["name"]: s for s in out["steps"] if not s["ok"]}
    assert int(suite.get("failures")) == len(failed_steps) + sum(not s["ok"] for s in out["shown"]) >= 2
    for name, step in failed_steps.items():
        failure = cases["sheetgpt.check.steps", name]
        assert failure is not None and f"DIFFERS at {step['cell']}" in failure.get("message")
        assert f"{name} (sheet {step['sheet']!r}) DIFFERS at {step['cell']}" in r.stdout
    assert cases["sheetgpt.check.steps", "h0_qkv"] is None and cases["sheetgpt.check.book", "foreign formulas"] is None


def test_check_junit_into_a_missing_folder_is_one_line(tmp_path, small_book):
    r = run_cli("check", str(small_book), "--junit", str(tmp_path / "no" / "check.xml"), cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no folder" in r.stderr


def test_eval_json_top_and_logits(tmp_path, small_book, small_model, small_vocab_dir):
    r = run_cli("eval", str(small_book), "--json", "--top", "3", "--logits", "f.npy", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stdout.strip().splitlines()) == 1
    top = json.loads(r.stdout)["top"]
    saved = np.load(tmp_path / "f.npy")
    V = small_model.weights.config.vocab_size
    assert saved.shape == (V,) and saved.dtype == np.float64
    # the saved logits are the workbook's, as an independent forward pass on its cells computes them
    weights = read_weight_sheets(small_book, {k: v.shape for k, v in small_model.weights.params.items()})
    ids = bpe_encode(SMALL_PROMPT, small_vocab_dir)
    expected = gpt2_forward(weights, ids, small_model.weights.config.n_head)["logits"]
    assert rel_err(saved, expected) <= 1e-9
    probs = softmax(saved)
    assert len(top) == 3
    assert [t["id"] for t in top] == np.argsort(-expected, kind="stable")[:3].tolist()
    assert [t["prob"] for t in top] == sorted((t["prob"] for t in top), reverse=True)
    vocab = json.loads((small_vocab_dir / "vocab.json").read_text(encoding="utf-8"))
    text_of = {i: token_text_of(s) for s, i in vocab.items()}
    for t in top:
        assert t["prob"] == pytest.approx(probs[t["id"]], rel=1e-12)
        assert t["logit"] == pytest.approx(saved[t["id"]], rel=1e-15)
        assert t["token"] == text_of[t["id"]]


# --- check: inputs a spreadsheet user can break ---------------------------------------------------

@pytest.fixture
def out_of_range_book(tmp_path, small_book, small_model) -> tuple[str, str, int]:
    """A copy of small_book whose second token id is the vocabulary size: (file, cell, id)."""
    V = small_model.weights.config.vocab_size
    sheet, ref = defined_names(small_book)["tokens"]
    r0, c0, _, _ = range_box(ref)
    address = cell_address(r0 + 1, c0)
    rewrite_part(small_book, tmp_path / "bad.xlsx", sheet_parts(small_book)[sheet],
                 lambda xml: edit_number(xml, address, str(V)))
    return "bad.xlsx", address, V


def test_out_of_range_token_id(tmp_path, out_of_range_book):
    name, address, V = out_of_range_book
    r = run_cli("check", name, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert address in last and str(V) in last, last


def test_out_of_range_token_id_one_line(tmp_path, out_of_range_book):
    _one_line_error(run_cli("check", out_of_range_book[0], cwd=tmp_path))


def _unsupported_function_book(small_book, tmp_path) -> str:
    sheet, ref = defined_names(small_book)["h0_gelu"]
    r0, c0, _, _ = range_box(ref)
    address = cell_address(r0, c0)
    rewrite_part(small_book, tmp_path / "bad.xlsx", sheet_parts(small_book)[sheet],
                 lambda xml: edit_formula(xml, address, "TANH(", "WEBSERVICE("))
    return address


def test_unsupported_function_is_a_changed_cell(tmp_path, small_book):
    """Our engine shows #VALUE! where it cannot compute a formula (as a spreadsheet shows an
    error): check fails (exit 1) naming the cell, and says why."""
    address = _unsupported_function_book(small_book, tmp_path)
    r = run_cli("check", "bad.xlsx", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr == "", r.stderr
    assert f"first difference in step h0_gelu, sheet 'h0 gelu', cell {address}" in r.stdout, r.stdout[-500:]
    assert any("WEBSERVICE" in line and address in line and "#VALUE!" in line for line in r.stdout.splitlines())
    line = _one_line_error(run_cli("eval", "bad.xlsx", cwd=tmp_path))  # eval has no cell to name it by
    assert "WEBSERVICE" in line and address in line, line


def test_unsupported_function_is_named_by_formulas(tmp_path, small_book):
    address = _unsupported_function_book(small_book, tmp_path)
    line = _one_line_error(run_cli("check", "bad.xlsx", "--engine", "formulas", cwd=tmp_path))
    assert "WEBSERVICE" in line and address in line, line
