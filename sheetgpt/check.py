"""Check a workbook: evaluate it from its formulas alone, recompute the NumPy reference from
the weights and token ids found in it, and compare every step."""
from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from .engines import CellValueError, EvaluatedBook, evaluate
from .errors import UserError
from .layout import META_SHEET, Block, Layout
from .lint import Finding, lint_path, lint_workbook, to_json
from .load import LoadedModel
from .model import GPT2Config, GPT2Weights, param_shapes
from .reference import forward

DEFAULT_TOL = 1e-9  # relative to the block's largest value: a few ulps of float64 accumulation
NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


@dataclass
class StepResult:
    name: str
    sheet: str
    max_abs_err: float
    max_rel_err: float
    ok: bool
    cell: str | None = None  # first cell over tolerance
    detail: str | None = None


@dataclass
class CheckReport:
    ok: bool
    steps: list[StepResult]
    first_failure: dict | None
    inputs: list[str] = field(default_factory=list)  # --model / --prompt findings
    lint: list[Finding] = field(default_factory=list)  # portability problems

    def to_json(self) -> dict:
        return {"ok": self.ok, "steps": [asdict(s) for s in self.steps],
                "first_failure": self.first_failure, "inputs": self.inputs, "lint": to_json(self.lint)}


@dataclass
class BookContents:
    """What a sheetgpt workbook holds as inputs: its config, weights and token ids."""

    layout: Layout
    weights: GPT2Weights  # float64, exactly as the spreadsheet computes with them
    ids: list[int]
    values: EvaluatedBook


def read_defined_names(path: Path) -> tuple[list[str], dict[str, str]]:
    """Sheet names and workbook-level defined names, straight from xl/workbook.xml."""
    try:
        with zipfile.ZipFile(path) as z:
            root = ElementTree.fromstring(z.read("xl/workbook.xml"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not an .xlsx file") from None
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, OSError) as e:
        raise UserError(f"{path} is not a readable .xlsx workbook ({e})") from None
    sheets = [s.get("name", "") for s in root.iter(NS + "sheet")]
    names = {n.get("name", ""): (n.text or "") for n in root.iter(NS + "definedName")
             if n.get("localSheetId") is None}
    return sheets, names


def load_book(path: str | Path, engine: str = "fast", progress: bool | None = None) -> BookContents:
    """Evaluate a sheetgpt workbook and read its config, weights and token ids."""
    path = Path(path)
    sheets, names = read_defined_names(path)
    if META_SHEET not in sheets or "tokens" not in names or "logits" not in names:
        raise UserError(f"{path} was not made by sheetgpt (no {META_SHEET} sheet or tokens/logits names)")
    values = evaluate(path, engine, progress)
    meta = _read_meta(values)
    try:
        cfg = GPT2Config(n_layer=int(meta["n_layer"]), n_head=int(meta["n_head"]), n_embd=int(meta["n_embd"]),
                         n_ctx=int(meta["n_ctx"]), vocab_size=int(meta["vocab_size"]),
                         layer_norm_epsilon=float(meta["layer_norm_epsilon"]))
        layout = Layout(cfg, int(meta["n_tokens"]))
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: the {META_SHEET} sheet is damaged ({e})") from None
    for name, block in layout.blocks.items():
        if not _same_range(names.get(name), block):
            raise UserError(f"{path}: defined name {name!r} should be {block.ref()}, found "
                            f"{names.get(name)!r}; the workbook's structure was changed")
    params = {}
    for param in param_shapes(cfg):
        blk = layout.weight(param)
        params[param] = _numbers(values, blk, "weight").reshape(param_shapes(cfg)[param])
    weights = GPT2Weights(cfg, params)
    ids = _read_ids(values, layout.blocks["tokens"], cfg.vocab_size)
    return BookContents(layout, weights, ids, values)


def check_workbook(path: str | Path, model: LoadedModel | None = None, prompt: str | None = None,
                   tol: float = DEFAULT_TOL, engine: str = "fast",
                   progress: bool | None = None) -> CheckReport:
    book = load_book(path, engine, progress)
    inputs: list[str] = []
    first: dict | None = None
    if model is not None:
        msg, where = _compare_weights(book, model)
        inputs.append(msg)
        first = first or where
    if prompt is not None:
        tokenizer = model.tokenizer if model is not None else None
        msg, where = _compare_prompt(book, prompt, tokenizer)
        inputs.append(msg)
        first = first or where
    ref = forward(book.weights, book.ids)
    steps = []
    for name in book.layout.steps:
        result = compare_block(book.values, book.layout.blocks[name], ref[name], tol)
        steps.append(result)
        if not result.ok and first is None:
            first = {"step": name, "sheet": result.sheet, "cell": result.cell}
    wb = getattr(book.values, "wb", None)
    findings = lint_workbook(wb, cycles=False) if wb is not None else lint_path(path)
    if findings and first is None:  # computes right here, but may not in Excel or LibreOffice
        first = {"step": "lint", "sheet": findings[0].sheet, "cell": findings[0].cell}
    return CheckReport(ok=first is None, steps=steps, first_failure=first, inputs=inputs, lint=findings)


def compare_block(values: EvaluatedBook, blk: Block, ref: np.ndarray, tol: float) -> StepResult:
    """Max absolute and relative error of one block; NaN in `ref` means the cell must be empty."""
    got, not_number = values.numbers(blk.sheet, blk.row, blk.col, blk.n_rows, blk.n_cols)
    ref_empty, got_empty = np.isnan(ref), np.isnan(got)
    err = np.where(ref_empty | got_empty, 0.0, np.abs(got - ref))
    err[ref_empty != got_empty] = np.inf
    err[not_number] = np.inf  # an error value or text where a number belongs
    scale = float(np.nanmax(np.abs(ref))) if not ref_empty.all() else 0.0
    max_abs = float(err.max())
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    bad = err > tol * scale
    if not bad.any():
        return StepResult(blk.name, blk.sheet, max_abs, max_rel, True)
    i, j = np.unravel_index(np.argmax(bad), bad.shape)  # first bad cell, row by row
    detail = (f"holds {values.value(blk.sheet, blk.row + int(i), blk.col + int(j))!r}, not a number"
              if not_number[i, j] else
              f"is empty, expected {ref[i, j]:.17g}" if got_empty[i, j] else
              f"holds {got[i, j]:.17g}, expected empty" if ref_empty[i, j] else
              f"holds {got[i, j]:.17g}, expected {ref[i, j]:.17g}")
    return StepResult(blk.name, blk.sheet, max_abs, max_rel, False, blk.cell(int(i), int(j)), detail)


def _same_range(text: str | None, block: Block) -> bool:
    """Whether a defined name's reference is the block's (programs spell it differently:
    LibreOffice drops the quotes around a plain sheet name)."""
    from .engines.fast.parser import FormulaError, parse_ref
    try:
        ref = parse_ref(text.lstrip("=")) if text else None
    except FormulaError:
        return False
    return (ref is not None and ref.sheet is not None and ref.sheet.upper() == block.sheet.upper()
            and (ref.r0, ref.c0, ref.r1, ref.c1) == (block.row - 1, block.col - 1, block.row + block.n_rows - 2,
                                                     block.col + block.n_cols - 2))


# -- inputs -------------------------------------------------------------------------
def _read_meta(values: EvaluatedBook) -> dict[str, object]:
    meta = {}
    for r in range(1, 64):
        key = values.value(META_SHEET, r, 1)
        if key is None:
            break
        meta[str(key)] = values.value(META_SHEET, r, 2)
    if meta.get("format") != "sheetgpt-workbook":
        raise UserError(f"the {META_SHEET} sheet does not describe a sheetgpt workbook")
    return meta


def _numbers(values: EvaluatedBook, blk: Block, what: str) -> np.ndarray:
    try:
        arr = values.block(blk.sheet, blk.row, blk.col, blk.n_rows, blk.n_cols)
    except CellValueError as e:
        raise UserError(f"{what} cell {e.sheet}!{e.cell} holds {e.value!r}, not a number") from None
    if np.isnan(arr).any():
        i, j = np.argwhere(np.isnan(arr))[0]
        raise UserError(f"{what} cell {blk.sheet}!{blk.cell(int(i), int(j))} is empty")
    return arr


def _read_ids(values: EvaluatedBook, blk: Block, vocab_size: int) -> list[int]:
    ids = _numbers(values, blk, "token id")[:, 0]
    for t, v in enumerate(ids):
        if v != int(v) or not 0 <= v < vocab_size:
            raise UserError(f"token id cell {blk.sheet}!{blk.cell(t, 0)} holds {v:g}: "
                            f"token ids are whole numbers from 0 to {vocab_size - 1}")
    return [int(v) for v in ids]


def _compare_weights(book: BookContents, model: LoadedModel) -> tuple[str, dict | None]:
    """The workbook's weights must read back as exactly the model's float32 values."""
    if model.weights.config != book.weights.config:
        return (f"model {model.name} has config {model.weights.config}, the workbook "
                f"{book.weights.config}", {"step": "weights", "sheet": None, "cell": None})
    for param, expected in model.weights.params.items():
        got = book.weights[param].astype(np.float32)
        differs = got != expected.astype(np.float32)
        if differs.any():
            blk = book.layout.weight(param)
            i, j = np.argwhere(differs.reshape(blk.shape))[0]
            cell = blk.cell(int(i), int(j))
            return (f"weight {param} differs from model {model.name} at {blk.sheet}!{cell}: "
                    f"{float(got.reshape(blk.shape)[i, j]):.9g} instead of "
                    f"{float(expected.reshape(blk.shape)[i, j]):.9g}",
                    {"step": "weights", "sheet": blk.sheet, "cell": cell})
    return f"weights are exactly those of model {model.name}", None


def _compare_prompt(book: BookContents, prompt: str, tokenizer) -> tuple[str, dict | None]:
    if tokenizer is None:
        from .tokenizer import Tokenizer
        tokenizer = Tokenizer.gpt2()
    want = tokenizer.encode(prompt)
    blk = book.layout.blocks["tokens"]
    for t in range(max(len(want), len(book.ids))):
        a = book.ids[t] if t < len(book.ids) else None
        b = want[t] if t < len(want) else None
        if a != b:
            cell = blk.cell(t, 0) if t < blk.n_rows else None
            return (f"token {t} is {a} in the workbook but {b} for the prompt {prompt!r} "
                    f"({len(book.ids)} vs {len(want)} tokens)",
                    {"step": "tokens", "sheet": blk.sheet, "cell": cell})
    return f"token ids are exactly those of the prompt ({len(want)} tokens)", None
