"""Test helpers: a small byte-level BPE vocabulary learned from sample text, and array comparison.

Kept independent of sheetgpt.tokenizer, so fixtures built here can check it.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import regex

# OpenAI's GPT-2 pre-tokenization pattern (words with their leading space, numbers, punctuation).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
END_OF_TEXT = "<|endoftext|>"

SAMPLE_TEXT = """\
The spreadsheet holds every weight of the model in a cell, and every step of the forward
pass is a formula. When you change the prompt, the sheet recalculates: the tokens flow
through the embedding, the attention heads and the feed-forward layers, and the next token
appears at the bottom. The model is small, the sheet is large, and the formulas are many.
Attention compares each token with the tokens before it; the softmax turns the scores into
weights that sum to one. Layer norm keeps the numbers in range. Then the unembedding turns
the last hidden state into a score for every token in the vocabulary: 50,257 of them.
"""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (as in OpenAI's encoder.py)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


def learn_bpe(text: str, n_merges: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE: 256 byte tokens, then up to n_merges learned merges, then <|endoftext|>.

    Ties between equally frequent pairs go to the smallest pair, so the result is deterministic.
    """
    spell = bytes_to_unicode()
    words = Counter(tuple(spell[b] for b in w.encode("utf-8")) for w in regex.findall(GPT2_PATTERN, text))
    vocab = {spell[b]: b for b in range(256)}
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        vocab.setdefault(best[0] + best[1], len(vocab))  # two merges may spell the same token
        words = Counter({_merge(w, best): c for w, c in words.items()})
    vocab[END_OF_TEXT] = len(vocab)
    return vocab, merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(word):
        if word[i:i + 2] == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def write_bpe_vocab(directory: Path, text: str = SAMPLE_TEXT, n_merges: int = 100) -> int:
    """Write vocab.json + merges.txt (Hugging Face layout) into directory; return the vocab size."""
    vocab, merges = learn_bpe(text, n_merges)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(vocab)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max|b| over a whole block (b is the trusted side)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    scale = np.abs(b).max()
    return float(np.abs(a - b).max() / scale) if scale else float(np.abs(a).max())


def assert_close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-9, what: str = "") -> None:
    err = rel_err(a, b)
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}"


# --- workbook tests: independent encoder, forward pass, xlsx reading and editing ------------
# Everything below is written from the specification (GPT-2, OOXML), not from sheetgpt's code.

import functools
import math
import os
import re
import subprocess
import sys
import zipfile
from xml.etree import ElementTree

NS_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
NS_DOC_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
NS_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
REPO_ROOT = Path(__file__).resolve().parents[1]


def gpt2_param_names(n_layer: int) -> list[str]:
    """GPT-2's parameter names (Hugging Face keys without the `transformer.` prefix)."""
    names = ["wte.weight", "wpe.weight"]
    for i in range(n_layer):
        for sub in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"):
            names += [f"h.{i}.{sub}.weight", f"h.{i}.{sub}.bias"]
    return names + ["ln_f.weight", "ln_f.bias"]


def read_bpe_files(directory: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
    lines = (directory / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines[1:] if line]
    return vocab, merges


def bpe_encode(text: str, directory: Path) -> list[int]:
    """Encode with the vocab.json + merges.txt in `directory` by applying the merges one after
    another in learned order (Sennrich's formulation; equal to GPT-2's rank-based loop for
    merges learned by `learn_bpe`)."""
    vocab, merges = read_bpe_files(directory)
    spell = bytes_to_unicode()
    ids: list[int] = []
    for piece in regex.findall(GPT2_PATTERN, text):
        word = tuple(spell[b] for b in piece.encode("utf-8"))
        for pair in merges:
            word = _merge(word, pair)
        ids += [vocab[s] for s in word]
    return ids


def token_bytes_of(token_string: str) -> bytes:
    """The bytes a byte-level token string spells."""
    return bytes(_BYTE_OF[c] for c in token_string)


def token_text_of(token_string: str) -> str:
    """Readable text of a byte-level token string: its bytes as UTF-8, bad sequences as U+FFFD."""
    return token_bytes_of(token_string).decode("utf-8", errors="replace")


_BYTE_OF = {c: b for b, c in bytes_to_unicode().items()}


def gpt2_forward(params: dict[str, np.ndarray], ids: list[int], n_head: int,
                 eps: float = 1e-5) -> dict[str, np.ndarray]:
    """A plain float64 GPT-2 forward pass (one head at a time, -inf causal mask).

    Returns the logits of the last position ("logits", [V]) and some intermediates keyed
    "h{i}.<step>": scores [H, T, T] with NaN where masked, attn_proj, resid_1, fc, gelu.
    """
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    n_layer = sum(1 for k in p if k.endswith(".ln_1.weight"))
    T = len(ids)
    D = p["wte.weight"].shape[1]
    dh = D // n_head
    out: dict[str, np.ndarray] = {}

    def norm(x, g, b):
        mu = x.mean(axis=1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * g + b

    x = p["wte.weight"][list(ids)] + p["wpe.weight"][:T]
    causal = np.tri(T, dtype=bool)
    for i in range(n_layer):
        w = lambda name: p[f"h.{i}.{name}"]
        h = norm(x, w("ln_1.weight"), w("ln_1.bias"))
        qkv = h @ w("attn.c_attn.weight") + w("attn.c_attn.bias")
        q, k, v = qkv[:, :D], qkv[:, D:2 * D], qkv[:, 2 * D:]
        att = np.zeros((T, D))
        scores = np.full((n_head, T, T), np.nan)
        for hd in range(n_head):
            cols = slice(hd * dh, (hd + 1) * dh)
            s = q[:, cols] @ k[:, cols].T / math.sqrt(dh)
            scores[hd][causal] = s[causal]
            s = np.where(causal, s, -np.inf)
            e = np.exp(s - s.max(axis=1, keepdims=True))
            att[:, cols] = (e / e.sum(axis=1, keepdims=True)) @ v[:, cols]
        proj = att @ w("attn.c_proj.weight") + w("attn.c_proj.bias")
        x = x + proj
        out[f"h{i}.scores"], out[f"h{i}.attn_proj"], out[f"h{i}.resid_1"] = scores, proj, x
        h = norm(x, w("ln_2.weight"), w("ln_2.bias"))
        fc = h @ w("mlp.c_fc.weight") + w("mlp.c_fc.bias")
        g = 0.5 * fc * (1 + np.tanh(math.sqrt(2 / math.pi) * (fc + 0.044715 * fc ** 3)))
        out[f"h{i}.fc"], out[f"h{i}.gelu"] = fc, g
        x = x + g @ w("mlp.c_proj.weight") + w("mlp.c_proj.bias")
    x = norm(x, p["ln_f.weight"], p["ln_f.bias"])
    out["logits"] = p["wte.weight"] @ x[-1]
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def save_model_dir(directory: Path, n_layer: int, n_head: int, n_embd: int, n_ctx: int,
                   params: dict[str, np.ndarray], vocab_dir: Path) -> Path:
    """A Hugging Face style GPT-2 directory: config.json, model.safetensors, vocab.json, merges.txt."""
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    vocab_size = len(json.loads((vocab_dir / "vocab.json").read_text(encoding="utf-8")))
    config = {"model_type": "gpt2", "n_layer": n_layer, "n_head": n_head, "n_embd": n_embd,
              "n_positions": n_ctx, "vocab_size": vocab_size, "activation_function": "gelu_new",
              "layer_norm_epsilon": 1e-5}
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()},
              str(directory / "model.safetensors"))
    for name in ("vocab.json", "merges.txt"):
        (directory / name).write_bytes((vocab_dir / name).read_bytes())
    return directory


# --- .xlsx as a zip of XML parts ------------------------------------------------------------

def sheet_parts(path: Path) -> dict[str, str]:
    """Sheet name -> zip part of its XML, in workbook order (via workbook.xml and its rels)."""
    with zipfile.ZipFile(path) as z:
        wb = ElementTree.fromstring(z.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(z.read("xl/_rels/workbook.xml.rels"))
    target = {r.get("Id"): r.get("Target") for r in rels.iter(NS_PKG_REL + "Relationship")}
    parts = {}
    for s in wb.iter(NS_MAIN + "sheet"):
        t = target[s.get(NS_DOC_REL + "id")]
        parts[s.get("name")] = t.lstrip("/") if t.startswith("/") else "xl/" + t
    return parts


def defined_names(path: Path, wb=None) -> dict[str, tuple[str, str]]:
    """Workbook-level defined names -> (sheet, range without $), read with openpyxl
    (from `wb` if the workbook is open already)."""
    import openpyxl

    own = wb is None
    if own:
        wb = openpyxl.load_workbook(path, read_only=True)
    try:
        out = {}
        for name, dn in wb.defined_names.items():
            dests = list(dn.destinations)
            assert len(dests) == 1, f"defined name {name} has {len(dests)} destinations"
            sheet, ref = dests[0]
            out[name] = (sheet, ref.replace("$", ""))
        return out
    finally:
        if own:
            wb.close()


def range_box(ref: str) -> tuple[int, int, int, int]:
    """'B3:D8' -> (first row, first col, n_rows, n_cols), 1-based."""
    from openpyxl.utils.cell import range_boundaries

    c0, r0, c1, r1 = range_boundaries(ref if ":" in ref else f"{ref}:{ref}")
    return r0, c0, r1 - r0 + 1, c1 - c0 + 1


def cell_address(row: int, col: int) -> str:
    from openpyxl.utils.cell import get_column_letter

    return f"{get_column_letter(col)}{row}"


def rewrite_part(src: Path, dst: Path, part: str, edit) -> None:
    """Copy the zip `src` to `dst`, passing the text of `part` through edit(str) -> str."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == part:
                new = edit(data.decode("utf-8"))
                assert new != data.decode("utf-8"), f"edit changed nothing in {part}"
                data = new.encode("utf-8")
            zout.writestr(zipfile.ZipInfo(info.filename, info.date_time), data)


_CELL = re.compile(r"<c\b([^>]*?)(?:/>|>(.*?)</c>)", re.S)


def _cell_span(xml: str, address: str) -> tuple[int, int]:
    """Start and end offsets of the <c> element at `address` in a sheet's XML (r= is optional
    on <row> and <c>: a cell without r= follows the previous one)."""
    from openpyxl.utils.cell import column_index_from_string, coordinate_from_string

    col_letters, row = coordinate_from_string(address)
    col = column_index_from_string(col_letters)
    m = re.search(rf'<row r="{row}"[^>]*>(.*?)</row>', xml, re.S)
    assert m, f"no row {row}"
    pos = 0
    for c in _CELL.finditer(m.group(1)):
        r_attr = re.search(r'\br="([A-Z]+)\d+"', c.group(1))
        pos = column_index_from_string(r_attr.group(1)) if r_attr else pos + 1
        if pos == col:
            return m.start(1) + c.start(), m.start(1) + c.end()
    raise AssertionError(f"no cell {address}")


def edit_formula(xml: str, address: str, old: str, new: str) -> str:
    """Replace `old` (XML-escaped text) by `new` inside the formula of one cell."""
    a, b = _cell_span(xml, address)
    cell = xml[a:b]
    f = re.search(r"<f\b[^>]*>(.*?)</f>", cell, re.S)
    assert f and old in f.group(1), f"{address}: {old!r} not in its formula {cell!r}"
    cell = cell[:f.start(1)] + f.group(1).replace(old, new, 1) + cell[f.end(1):]
    return xml[:a] + cell + xml[b:]


def edit_number(xml: str, address: str, value: str) -> str:
    """Set the constant number of one cell (which must hold a number, not a formula)."""
    a, b = _cell_span(xml, address)
    cell = xml[a:b]
    assert "<f" not in cell and "t=" not in cell, f"{address} is not a plain number: {cell!r}"
    cell = re.sub(r"<v>[^<]*</v>", f"<v>{value}</v>", cell)
    return xml[:a] + cell + xml[b:]


def formula_texts(path: Path, sheets: set[str] | None = None):
    """(sheet, cell element attributes, formula text) of every <f> with text, from the XML."""
    with zipfile.ZipFile(path) as z:
        for name, part in sheet_parts(path).items():
            if sheets is not None and name not in sheets:
                continue
            with z.open(part) as f:
                for _, el in ElementTree.iterparse(f):
                    if el.tag == NS_MAIN + "c":
                        fe = el.find(NS_MAIN + "f")
                        if fe is not None:
                            yield name, dict(el.attrib), fe.text or "", el.find(NS_MAIN + "v") is not None
                        el.clear()


_OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def ooxml_unescape(text: str) -> str:
    """Decode OOXML's _xHHHH_ escapes (ECMA-376 Part 1, 22.9.2.19 ST_Xstring)."""
    return _OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


# --- GPT-2's own tokenizer via tiktoken, built offline from the bundled files ---------------

@functools.lru_cache(maxsize=None)
def offline_tiktoken_gpt2():
    import tiktoken
    from tiktoken_ext.openai_public import r50k_pat_str

    data = REPO_ROOT / "sheetgpt" / "data" / "gpt2"
    encoder = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    ranks = {bytes(byte_of[c] for c in s): i for s, i in encoder.items() if s != END_OF_TEXT}
    return tiktoken.Encoding(name="gpt2-offline", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={END_OF_TEXT: 50256})


def gpt2_encoder_json() -> dict[str, int]:
    data = REPO_ROOT / "sheetgpt" / "data" / "gpt2"
    return json.loads((data / "encoder.json").read_text(encoding="utf-8"))


# --- the command line -------------------------------------------------------------------------

def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m sheetgpt ARGS` in `cwd`, with this checkout importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("SHEETGPT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "sheetgpt", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# --- evaluating a workbook once ---------------------------------------------------------------
# The `formulas` engine needs seconds per small book: evaluate each file (by content) once per
# engine and session, and let check_workbook reuse it.

import hashlib

SMALL_PROMPT = "The sheet is"  # three tokens in write_bpe_vocab's vocabulary
TINY_PROMPT = "Mike is quick. He moves"  # the README's example
SMALL_SHAPE = dict(n_layer=1, n_head=2, n_embd=8, n_ctx=8)
_EVALUATED: dict[tuple[str, str], object] = {}


def evaluated(path: Path, engine: str = "formulas"):
    """sheetgpt.check.load_book(path, engine), computed once per file content and engine."""
    key = (hashlib.sha256(Path(path).read_bytes()).hexdigest(), engine)
    if key not in _EVALUATED:
        _EVALUATED[key] = _real_load_book()(path, engine, False)
    return _EVALUATED[key]


def _real_load_book():
    from sheetgpt import check

    return getattr(check.load_book, "__wrapped_real__", check.load_book)


def check_cached(path: Path, engine: str = "formulas", **kwargs):
    """sheetgpt.check.check_workbook(path, engine=engine, **kwargs), evaluating `path` at most
    once per engine and session."""
    from sheetgpt import check

    real = check.load_book

    def cached(p, engine_=engine, progress=None, overrides=(), values=None, lenient=False):
        assert engine_ == engine and not overrides and values is None
        return evaluated(p, engine)

    cached.__wrapped_real__ = real
    check.load_book = cached
    try:
        return check.check_workbook(path, engine=engine, **kwargs)
    finally:
        check.load_book = real


def block_values(path: Path, name: str, engine: str = "formulas") -> np.ndarray:
    """The evaluated values of a defined name's block, located through openpyxl's reading of
    the defined name (not through sheetgpt's layout)."""
    sheet, ref = defined_names(path)[name]
    r0, c0, n, m = range_box(ref)
    return evaluated(path, engine).values.block(sheet, r0, c0, n, m)


def read_weight_sheets(path: Path, param_shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Every weight as the decimal its cells hold (float64), read with openpyxl from the sheet
    named after the parameter: data from row 3, column B (rows 1-2 and column A are labels)."""
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        out = {}
        for name, shape in param_shapes.items():
            rows, cols = (1, shape[0]) if len(shape) == 1 else shape
            values = [list(r) for r in wb[name].iter_rows(min_row=3, max_row=2 + rows, min_col=2,
                                                          max_col=1 + cols, values_only=True)]
            out[name] = np.array(values, dtype=np.float64).reshape(shape)
        return out
    finally:
        wb.close()


# --- reliability tests: small random models, sheet XML cells, zips, a bounded command line ----

from dataclasses import dataclass as _dataclass


@_dataclass
class XmlCell:
    """One <c> element of a sheet's XML: 1-based row and column, and its span in the text."""
    row: int
    col: int
    start: int
    end: int

    def xml(self, text: str) -> str:
        return text[self.start:self.end]


_ROW_ANY = re.compile(r"<row\b([^>]*?)(?:/>|>(.*?)</row>)", re.S)
_R_ATTR = re.compile(r'\br="([A-Z]*)(\d*)"')


def sheet_cells(xml: str) -> list[XmlCell]:
    """Every <c> of a sheet's XML with its position (r= is optional on <row> and <c>: a row or
    cell without it follows the previous one, ECMA-376 18.3.1.73 / 18.3.1.4)."""
    from openpyxl.utils.cell import column_index_from_string

    out: list[XmlCell] = []
    row = 0
    for m in _ROW_ANY.finditer(xml):
        r = _R_ATTR.search(m.group(1) or "")
        row = int(r.group(2)) if r and r.group(2) else row + 1
        if m.group(2) is None:
            continue
        col = 0
        for c in _CELL.finditer(m.group(2)):
            a = _R_ATTR.search(c.group(1) or "")
            col = column_index_from_string(a.group(1)) if a and a.group(1) else col + 1
            out.append(XmlCell(row, col, m.start(2) + c.start(), m.start(2) + c.end()))
    return out


def read_parts(path: Path) -> dict[str, bytes]:
    """Every part of a zip, in order."""
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i.filename) for i in z.infolist()}


def write_parts(path: Path, parts: dict[str, bytes], compresslevel: int = 1) -> Path:
    """A zip of these parts (deflated, fixed timestamps)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as z:
        for name, data in parts.items():
            z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return path


def small_random_model(vocab_dir: Path, seed: int = 3, name: str = "small-random-test", **shape):
    """A seeded random GPT-2 of the given shape with write_bpe_vocab's vocabulary in vocab_dir."""
    from sheetgpt.load import LoadedModel, random_weights
    from sheetgpt.model import GPT2Config
    from sheetgpt.tokenizer import Tokenizer

    vocab_size = len(json.loads((vocab_dir / "vocab.json").read_text(encoding="utf-8")))
    cfg = GPT2Config(**shape, vocab_size=vocab_size)
    tok = Tokenizer.from_files(vocab_dir / "vocab.json", vocab_dir / "merges.txt")
    return LoadedModel(name, random_weights(cfg, seed), tok, random=True)


MEMORY_LIMIT = 4 << 30  # bytes of address space for a command under test


def _limit_memory(limit: int):
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def run_cli_bounded(*args: str, cwd: Path, timeout: float = 30, memory: int = MEMORY_LIMIT,
                    env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m sheetgpt ARGS` like run_cli, but with an address-space limit; a command that
    outlives `timeout` raises subprocess.TimeoutExpired (after being killed)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [full_env.get("PYTHONPATH")])])
    full_env.pop("SHEETGPT_DEBUG", None)
    full_env.update(env or {})
    proc = subprocess.Popen([sys.executable, "-m", "sheetgpt", *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_limit_memory(memory), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        import signal

        os.killpg(proc.pid, signal.SIGKILL)  # its worker processes too (they share its new process group)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(proc.args, timeout, out, err) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def session_processes(sid: int) -> list[int]:
    """Processes (still alive, not zombies) in session `sid`, read from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(entry))
    return out


CELLS_FORM_ENGINES = ("formulas", "ironcalc")  # they compute array formulas wrong or not at all


def hf_with_book_weights(hf_model, book: Path):
    """transformers' GPT-2 in float64 with the weights as the book holds them (its cells are
    the float32 weights written to 9 digits, read back as float64)."""
    import copy

    import torch
    from sheetgpt.readback import load_book

    hf = copy.deepcopy(hf_model).double()
    weights = load_book(book).weights
    with torch.no_grad():
        for name in weights.params:
            hf.transformer.get_parameter(name).copy_(torch.from_numpy(np.asarray(weights[name], np.float64)))
    return hf


def hf_from_book(book: Path):
    """A transformers GPT-2 of the book's shape in float64, holding the book's weights."""
    import transformers
    from sheetgpt.readback import load_book

    c = load_book(book).weights.config
    cfg = transformers.GPT2Config(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, n_positions=c.n_ctx,
                                  vocab_size=c.vocab_size, layer_norm_epsilon=c.layer_norm_epsilon)
    return hf_with_book_weights(transformers.GPT2LMHeadModel(cfg).eval(), book)
