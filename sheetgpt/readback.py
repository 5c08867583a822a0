"""Reading a sheetgpt workbook back: evaluate it, then find its configuration, weights and
token ids where its layout says they are. Used by check, eval and the lesson."""
from __future__ import annotations

import functools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from xml.etree import ElementTree

import numpy as np

from .a1 import parse_range
from . import probes
from .architectures import lay_out
from .engines import CellOverride, CellValueError, EvaluatedBook, evaluate
from .errors import UserError
from .layout import Block, BookOptions, Layout
from .load import LoadedModel, describe
from .model import GPT2Config, GPT2Weights, param_shapes
from .steps.base import BuildInputs
from .steps.controls import CONTROLS, defaults
from .steps.metadata import FORMAT_VERSION, META_SHEET, read_meta

NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


@dataclass
class BookContents:
    """An evaluated sheetgpt workbook and what it holds as inputs."""

    layout: Layout
    weights: GPT2Weights  # float64, exactly as the spreadsheet computes with them
    ids: list[int]
    values: EvaluatedBook
    meta: dict[str, object]

    def numbers(self, block: Block, what: str = "step") -> np.ndarray:
        """A block's evaluated values, float64; one clear error for an empty or non-number cell."""
        return _numbers(self.values, block, what)

    def __getitem__(self, name: str) -> np.ndarray:
        """A named block's evaluated values (NaN where empty)."""
        b = self.layout.blocks[name]
        return self.values.block(b.sheet, b.row, b.col, b.n_rows, b.n_cols)

    @property
    def model_name(self) -> str:
        return str(self.meta.get("model", "?"))

    @property
    def model_about(self) -> str:
        return describe(self.model_name, bool(self.meta.get("random_weights")))

    def token_text(self, token_id: int) -> str:
        """A token's text as the workbook's vocabulary sheet holds it."""
        return self._vocab_cell(token_id, 0)

    def token_string(self, token_id: int) -> str:
        """A token's GPT-2 byte-level string, as the vocabulary sheet holds it."""
        return self._vocab_cell(token_id, 1)

    def _vocab_cell(self, token_id: int, j: int) -> str:
        return self._vocab_columns[j][token_id]

    @functools.cached_property
    def _vocab_columns(self) -> tuple[list[str], list[str]]:
        """The vocabulary sheet's text and byte-level string columns, read once."""
        blk, value = self.layout.blocks["vocab_text"], self.values.value
        return tuple(["" if v is None else str(v) for v in (value(blk.sheet, blk.row + i, blk.col + j)
                                                            for i in range(blk.n_rows))] for j in (0, 1))

    @property
    def prompt(self) -> str | None:
        """The prompt cell's text in a typed-prompt book (None in a book of fixed ids)."""
        if not self.layout.typed_prompt:
            return None
        b = self.layout.blocks["prompt"]
        v = self.values.value(b.sheet, b.row, b.col)
        return "" if v is None else str(v) if not isinstance(v, float) else f"{v:g}"

    def given(self) -> dict[str, np.ndarray]:
        """The book's inputs for the reference besides weights and ids: the controls as the
        book holds them, the cells the learner may fill (NaN where empty: the typed prompt's
        override cells, its tokenizer's tables, a probe's), and the prompt text."""
        out = {name: self.numbers(self.layout.blocks[name], "control") for name in CONTROLS}
        out |= {name: self._given(self.layout.blocks[name]) for name in self.layout.given}
        if self.layout.typed_prompt:
            out["prompt"] = np.array([[self.prompt]], dtype=object)
        return out

    def _given(self, blk: Block) -> np.ndarray:
        """A block the learner may fill: its numbers, NaN where empty; one clear error for text."""
        got, other = self.values.numbers(blk.sheet, blk.row, blk.col, blk.n_rows, blk.n_cols)
        if other.any():
            i, j = (int(k) for k in np.argwhere(other)[0])
            value = self.values.value(blk.sheet, blk.row + i, blk.col + j)
            raise UserError(f"input cell {blk.sheet}!{blk.cell(i, j)} holds {value!r}, not a number")
        return got

    def controls(self) -> dict[str, np.ndarray]:
        """The controls' cells where they differ from plain GPT-2's (for building the same book)."""
        given, plain = self.given(), defaults(self.layout)
        return {k: given[k] for k in CONTROLS if not np.array_equal(given[k], plain[k])}

    def merge_table(self) -> list[tuple[int, int, int, int]]:
        """The merges as the book's table holds them: (left id, right id, merged id, rank)."""
        V, g = self.layout.cfg.vocab_size, self.given()
        rows = zip(*(g[n][1:, 0].astype(np.int64) for n in ("merge_keys", "merge_ranks", "merge_ids")))
        return sorted(((int(k) // V, int(k) % V, int(m), int(r)) for k, r, m in rows), key=lambda x: x[3])

    def byte_id(self, byte: int) -> int | None:
        i = self["byte_ids"][byte, 0]
        return None if i < 0 else int(i)

    def inputs(self) -> BuildInputs:
        """What the workbook says it was built from (its metadata, weights, token ids and
        vocabulary): the builder would write the same cells from these."""
        model = LoadedModel(self.model_name, self.weights, self, bool(self.meta.get("random_weights")))
        overrides = None
        if self.layout.typed_prompt:
            overrides = [None if np.isnan(x) else x for x in self["token_overrides"][:, 0]]
        return BuildInputs(model, str(self.meta.get("prompt", "")), self.ids, overrides, self.controls())


def prompt_cell(path: str | Path, text: str) -> CellOverride:
    """The override that types `text` into a typed-prompt book's prompt cell."""
    _, names = read_defined_names(Path(path))
    if "prompt" not in names:
        raise UserError(f"{path} has fixed token ids, not a prompt cell: --prompt needs a book built without "
                        "--fixed (on check, --prompt then compares; here it cannot)")
    ref = parse_range(names["prompt"].lstrip("="))
    return CellOverride(ref.sheet, ref.row0, ref.col0, text)


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


def load_book(path: str | Path, engine: str = "fast", progress: bool | None = None,
              overrides: Sequence[CellOverride] = (),
              values: EvaluatedBook | None = None, lenient: bool = False) -> BookContents:
    """Evaluate a sheetgpt workbook (as if the cells of `overrides` held their values) and
    read its config, weights and token ids; `values`: the book already evaluated.
    `lenient` (check): a formula the engine cannot compute shows an error value, and a
    typed-prompt book's computed ids are not required to be ids (check compares them)."""
    path = Path(path)
    sheets, names = read_defined_names(path)
    if META_SHEET not in sheets or "tokens" not in names or "logits" not in names:
        raise UserError(f"{path} was not made by sheetgpt (no {META_SHEET} sheet or tokens/logits names)")
    if values is None:
        values = evaluate(path, engine, progress, overrides, lenient)
    meta = read_meta(values)
    if "generate" not in meta:  # every book since the controls sheet records it
        raise UserError(f"{path} was made by an older sheetgpt ({meta.get('sheetgpt_version', '?')}), before the "
                        "controls sheet: build it again with this version")
    if _number(meta.get("format_version")) < FORMAT_VERSION:
        raise UserError(f"{path} was made by an older sheetgpt ({meta.get('sheetgpt_version', '?')}), before the "
                        "selftest sheet: build it again with this version")
    try:
        n_merges = int(meta["n_merges"]) if "n_merges" in meta else None
        options = BookOptions.from_meta(meta, [p.name for p in probes.options()])
        layout = lay_out(GPT2Config.from_dict(meta), int(meta["n_tokens"]), options, n_merges)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: the {META_SHEET} sheet is damaged ({e})") from None
    for name, block in layout.blocks.items():
        if not block.is_spelled(names.get(name)):
            raise UserError(f"{path}: defined name {name!r} should be {block.ref()}, found "
                            f"{names.get(name)!r}; the workbook's structure was changed")
    shapes = param_shapes(layout.cfg)
    params = {param: _numbers(values, blk, "weight").reshape(shapes[param]) for param, blk in layout.weights.items()}
    if lenient and layout.typed_prompt:  # computed by the book's tokenizer: check compares them, step by step
        ids = _computed_ids(values, layout.blocks["tokens"], layout.cfg.vocab_size)
    else:
        ids = _read_ids(values, layout.blocks["tokens"], layout.cfg.vocab_size)
    return BookContents(layout, GPT2Weights(layout.cfg, params), ids, values, meta)


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _numbers(values: EvaluatedBook, blk: Block, what: str) -> np.ndarray:
    try:
        arr = values.block(blk.sheet, blk.row, blk.col, blk.n_rows, blk.n_cols)
    except CellValueError as e:
        raise UserError(f"{what} cell {e.sheet}!{e.cell} holds {e.value!r}, not a number") from None
    if np.isnan(arr).any():
        i, j = np.argwhere(np.isnan(arr))[0]
        raise UserError(f"{what} cell {blk.sheet}!{blk.cell(int(i), int(j))} is empty")
    return arr


def _computed_ids(values: EvaluatedBook, blk: Block, vocab_size: int) -> list[int]:
    """The ids a typed-prompt book computed, 0 where a cell holds no id (its step names it)."""
    got, _ = values.numbers(blk.sheet, blk.row, blk.col, blk.n_rows, blk.n_cols)
    ids = np.nan_to_num(got[:, 0], nan=-1.0, posinf=-1.0, neginf=-1.0)
    valid = (ids == np.round(ids)) & (ids >= 0) & (ids < vocab_size)
    return [int(v) if ok else 0 for v, ok in zip(ids, valid)]


def _read_ids(values: EvaluatedBook, blk: Block, vocab_size: int) -> list[int]:
    ids = _numbers(values, blk, "token id")[:, 0]
    for t, v in enumerate(ids):
        if v != int(v) or not 0 <= v < vocab_size:
            raise UserError(f"token id cell {blk.sheet}!{blk.cell(t, 0)} holds {v:g}: "
                            f"token ids are whole numbers from 0 to {vocab_size - 1}")
    return [int(v) for v in ids]
