"""Write a GPT-2 forward pass as an .xlsx workbook: every weight a cell, every step a formula.

Each step is a block of formulas that are the same in relative (R1C1) terms, written as
one shared formula group per block (per head where a head picks other columns), so the
file stays small and a reader sees one formula that explains the whole block.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from . import __version__
from .errors import UserError
from .guide import BACK_LINK, STEP_NOTES
from .layout import (FIRST_COL, FIRST_ROW, GUIDE_SHEET, META_SHEET, VOCAB_SHEET, Block, Layout,
                     Sheet, col_letter, quote_sheet)
from .load import LoadedModel
from .parallel import WeightFormatter, default_workers
from .progress import Progress
from .xlsx import (SheetOptions, Style, WorkbookWriter, formula_cell, number_cells, row_xml,
                   shared_formula_cells, shared_formula_master, string_cell)

COMPRESS_LEVEL = 3  # deflate: level 3 is ~12% smaller than 1 for 50% more time
TAB_COLORS = {"guide": "FFC000", "input": "FFC000", "embedding": "70AD47", "attention": "4472C4",
              "mlp": "ED7D31", "output": "7030A0", "vocab": "A5A5A5", "weights": "A5A5A5"}

Rows = dict[int, list]  # sheet row -> runs (first col, n cells, xml)


@dataclass
class BuildResult:
    path: Path
    ids: list[int]
    n_cells: int
    n_formulas: int


def build_workbook(model: LoadedModel, prompt: str, path: str | Path, progress: bool | None = None,
                   workers: int | None = None, compresslevel: int = COMPRESS_LEVEL) -> BuildResult:
    """Tokenize `prompt` and write the workbook for `model` to `path` (atomically).

    workers: processes formatting weight sheets (None: one per core for big models).
    """
    if not prompt:
        raise UserError("the prompt is empty: give some text, e.g. sheetgpt build \"Hello, my name is\"")
    ids = model.tokenizer.encode(prompt)
    cfg = model.weights.config
    if len(ids) > cfg.n_ctx:
        raise UserError(f"the prompt is {len(ids)} tokens long; this model reads at most {cfg.n_ctx}")
    for name, arr in model.weights.params.items():
        if not np.isfinite(arr).all():
            raise UserError(f"weight {name} holds NaN or infinity, which a spreadsheet cannot store")
    layout = Layout(cfg, len(ids))
    book = _Book(layout, model, prompt, ids)
    arrays = {p: model.weights[p].reshape(layout.weight(p).shape) for p in model.weights.params}
    formatter = WeightFormatter(arrays, FIRST_ROW, Style.HEADER,
                                default_workers(model.weights.n_params) if workers is None else workers)
    try:
        with Progress(total=book.count_cells(), desc="writing workbook", enabled=progress) as bar:
            with WorkbookWriter(path, compresslevel) as wb:
                formatter.start()
                for sheet in layout.sheets:
                    book.write_sheet(wb, sheet.name, bar, formatter)
                for block in layout.blocks.values():
                    wb.define_name(block.name, block.ref())
    finally:
        formatter.close()
    return BuildResult(Path(path), ids, book.n_cells, book.n_formulas)


class _Book:
    """The content of every sheet; one method per kind of sheet."""

    def __init__(self, layout: Layout, model: LoadedModel, prompt: str, ids: list[int]):
        self.L, self.model, self.prompt, self.ids = layout, model, prompt, ids
        self.cfg, self.T = layout.cfg, layout.T
        self.B = layout.blocks
        self.n_cells = self.n_formulas = 0
        self._si: dict[str, int] = {}  # last shared-formula index used, per sheet

    def count_cells(self) -> int:
        return sum(b.n_rows * b.n_cols for b in self.B.values())

    # -- dispatch ---------------------------------------------------------------
    def write_sheet(self, wb: WorkbookWriter, name: str, bar: Progress, formatter: WeightFormatter) -> None:
        sheet = self.L.sheet(name)
        back = [("A2", f"{quote_sheet(GUIDE_SHEET)}!A1", "back to the Guide")]
        opt = SheetOptions(tab_color=TAB_COLORS.get(sheet.stage), freeze=(FIRST_ROW, FIRST_COL),
                           col_widths=[(1, 1, 16)], hyperlinks=back)
        if sheet.stage == "weights":
            self._write_weights(wb, sheet.name, sheet.title, opt, bar, formatter)
            return
        if sheet.name == GUIDE_SHEET:
            rows, opt = self._guide()
        elif sheet.name == META_SHEET:
            rows, opt = self._meta(), SheetOptions(hidden=True)
        else:
            rows = self._rows_for(sheet.name)
            _put(rows, 1, 1, string_cell(sheet.title, Style.TITLE))
            _put(rows, 2, 1, string_cell(BACK_LINK, Style.LINK))
            if sheet.stage in ("embedding", "attention", "mlp", "output"):
                _put_labels(rows, sheet, self.L)
            steps = [b for b in sheet.blocks if b.name in STEP_NOTES or _step_kind(b.name) in STEP_NOTES]
            opt.notes = [(b.row, b.col, STEP_NOTES.get(b.name) or STEP_NOTES[_step_kind(b.name)]) for b in steps]
            opt.color_scales = [_a1_range(b) for b in sheet.blocks if _step_kind(b.name) in ("probs", "top_probs")]
        with wb.sheet(name, opt) as write:
            for r in sorted(rows):
                write(row_xml(r, rows[r]))
        bar.update(sum(b.n_rows * b.n_cols for b in sheet.blocks))

    def _rows_for(self, sheet: str) -> Rows:
        rows: Rows = {}
        for block in self.L.sheet(sheet).blocks:
            self.n_cells += block.n_rows * block.n_cols
            self._step(block, rows)
        return rows

    # -- steps ------------------------------------------------------------------
    def _step(self, blk: Block, rows: Rows) -> None:
        B, T, D, H = self.B, self.T, self.cfg.n_embd, self.cfg.n_head
        dh = self.cfg.head_dim
        name = blk.name
        layer, _, step = name.partition("_") if name.startswith("h") and name[1].isdigit() else ("", "", name)
        p = f"h.{layer[1:]}." if layer else ""
        prev = _previous_stream(self.L, name)  # residual stream feeding this step
        if name == "tokens":
            self._tokens(blk, rows)
        elif name == "vocab_text":
            self._vocab(blk, rows)
        elif name == "embed_tok":
            wte = self.L.weight("wte.weight")
            self._shared(rows, blk, f"INDEX({wte.col_ref(0)},{B['tokens'].span(0, 0, 0, 0, False, True)}+1)")
        elif name == "embed":
            self._shared(rows, blk, f"{B['embed_tok'].at(0, 0)}+{self.L.weight('wpe.weight').at(0, 0)}")
        elif step.endswith("_mean") or name == "ln_f_mean":
            self._shared(rows, blk, f"AVERAGE({B[prev].rows_ref(0)})")
        elif step.endswith("_var") or name == "ln_f_var":
            mean = B[name[:-4] + "_mean"].cell(0, 0, abs_col=True)
            self._shared(rows, blk, f"SUMPRODUCT(({B[prev].rows_ref(0)}-{mean})^2)/{D}")
        elif step in ("ln_1", "ln_2") or name == "ln_f":
            ln = "ln_f." if name == "ln_f" else f"{p}{step}."
            mean, var = B[name + "_mean"].cell(0, 0, abs_col=True), B[name + "_var"].cell(0, 0, abs_col=True)
            g, b = self.L.weight(ln + "weight"), self.L.weight(ln + "bias")
            eps = repr(float(self.cfg.layer_norm_epsilon)).upper()
            self._shared(rows, blk, f"({B[prev].at(0, 0)}-{mean})/SQRT({var}+{eps})"
                                    f"*{g.span(0, 0, 0, 0, True, False)}+{b.span(0, 0, 0, 0, True, False)}")
            _put_column_labels(rows, B[name + "_mean"], ["mean"])
            _put_column_labels(rows, B[name + "_var"], ["variance"])
        elif step == "qkv":
            self._linear(rows, blk, B[f"{layer}_ln_1"], p + "attn.c_attn")
            _put_column_labels(rows, blk, [f"{k}{j}" for k in "qkv" for j in range(D)])
        elif step == "kT":
            self._transpose(rows, blk, B[f"{layer}_qkv"], col_offset=D)
        elif step == "scores":
            qkv, kT = B[f"{layer}_qkv"], B[f"{layer}_kT"]
            causal = np.tril(np.ones((T, T), dtype=bool))
            for h in range(H):
                q = qkv.span(0, h * dh, 0, (h + 1) * dh - 1, False, True)
                k = kT.span(h * dh, 0, (h + 1) * dh - 1, 0, True, False)
                self._shared(rows, blk, f"MMULT({q},{k})/SQRT({dh})", row0=h * T, n_rows=T,
                             mask=causal, fill=None)
        elif step == "softmax_max":
            self._shared(rows, blk, f"MAX({B[f'{layer}_scores'].rows_ref(0)})")
            _put_column_labels(rows, blk, ["max"])
        elif step == "softmax_exp":
            mx = B[f"{layer}_softmax_max"].cell(0, 0, abs_col=True)
            self._shared(rows, blk, f"EXP({B[f'{layer}_scores'].at(0, 0)}-{mx})",
                         mask=np.tile(np.tril(np.ones((T, T), dtype=bool)), (H, 1)), fill=0.0)
        elif step == "softmax_sum":
            self._shared(rows, blk, f"SUM({B[f'{layer}_softmax_exp'].rows_ref(0)})")
            _put_column_labels(rows, blk, ["sum of exp"])
        elif step == "probs":
            e, total = B[f"{layer}_softmax_exp"], B[f"{layer}_softmax_sum"]
            self._shared(rows, blk, f"{e.at(0, 0)}/{total.span(0, 0, 0, 0, False, True)}",
                         mask=np.tile(np.tril(np.ones((T, T), dtype=bool)), (H, 1)), fill=0.0,
                         style=Style.PERCENT)
        elif step == "attn":
            probs, qkv = B[f"{layer}_probs"], B[f"{layer}_qkv"]
            for h in range(H):
                w = probs.span(h * T, 0, h * T, T - 1, False, True)
                v = qkv.span(0, 2 * D + h * dh, T - 1, 2 * D + h * dh, True, False)
                self._shared(rows, blk, f"MMULT({w},{v})", col0=h * dh, n_cols=dh)
        elif step == "attn_proj":
            self._linear(rows, blk, B[f"{layer}_attn"], p + "attn.c_proj")
        elif step in ("resid_1", "resid_2"):
            delta = B[f"{layer}_attn_proj" if step == "resid_1" else f"{layer}_mlp_proj"]
            self._shared(rows, blk, f"{B[prev].at(0, 0)}+{delta.at(0, 0)}")
        elif step == "fc":
            self._linear(rows, blk, B[f"{layer}_ln_2"], p + "mlp.c_fc")
        elif step == "gelu":
            x = B[f"{layer}_fc"].at(0, 0)
            self._shared(rows, blk, f"0.5*{x}*(1+TANH(SQRT(2/PI())*({x}+0.044715*{x}^3)))")
        elif step == "mlp_proj":
            self._linear(rows, blk, B[f"{layer}_gelu"], p + "mlp.c_proj")
        elif name == "logits":
            last = B["ln_f"].span(T - 1, 0, T - 1, D - 1, True, True)
            self._shared(rows, blk, f"SUMPRODUCT({last},{self.L.weight('wte.weight').rows_ref(0)})")
            ids = np.arange(blk.n_rows)
            for i in range(blk.n_rows):  # id and token text beside each logit
                _put(rows, blk.row + i, 1, number_cells([ids[i]]))
            self._shared(rows, Block("", blk.sheet, blk.row, 2, blk.n_rows, 1), f"{B['vocab_text'].at(0, 0)}",
                         count=False)
            _put_column_labels(rows, Block("", blk.sheet, blk.row, 2, 1, 3), ["token", "logit", "probability"])
        elif name == "next_probs":
            mx, total = B["next_max"].cell(0, 0, True, True), B["next_sum"].cell(0, 0, True, True)
            sheet = quote_sheet(B["next_max"].sheet)
            self._shared(rows, blk, f"EXP({B['logits'].cell(0, 0)}-{sheet}!{mx})/{sheet}!{total}",
                         style=Style.PERCENT)
        elif name == "next_max":
            self._shared(rows, blk, "MAX(logits)")
            _put(rows, blk.row, 1, string_cell("largest logit"))
        elif name == "next_sum":
            self._shared(rows, blk, f"SUMPRODUCT(EXP(logits-{B['next_max'].cell(0, 0, True, True)}))")
            _put(rows, blk.row, 1, string_cell("sum of exp(logit - max)"))
        elif name == "top_logits":
            self._shared(rows, blk, f"LARGE(logits,$A{blk.row})")
            for k in range(blk.n_rows):
                _put(rows, blk.row + k, 1, number_cells([k + 1]))
            _put(rows, blk.row - 1, 1, b"".join(string_cell(t, Style.HEADER) for t in
                                                 ["rank", "token id", "logit", "probability", "token"]))
            ids = B["top_ids"]
            self._shared(rows, Block("", blk.sheet, blk.row, 5, blk.n_rows, 1),
                         f"INDEX(vocab_text,{ids.cell(0, 0)}+1)", count=False)
        elif name == "top_ids":
            self._shared(rows, blk, f"MATCH({B['top_logits'].cell(0, 0)},logits,0)-1", style=Style.INTEGER)
        elif name == "top_probs":
            mx, total = B["next_max"].cell(0, 0, True, True), B["next_sum"].cell(0, 0, True, True)
            self._shared(rows, blk, f"EXP({B['top_logits'].cell(0, 0)}-{mx})/{total}", style=Style.PERCENT)
        else:
            raise AssertionError(f"no formula for step {name}")

    # -- formula helpers ----------------------------------------------------------
    def _shared(self, rows: Rows, blk: Block, formula: str, row0: int = 0, n_rows: int | None = None,
                col0: int = 0, n_cols: int | None = None, mask: np.ndarray | None = None,
                fill: float | None = None, style: int = Style.NUMBER, count: bool = True) -> None:
        """One shared formula over blk[row0:row0+n_rows, col0:col0+n_cols], written for its
        top-left cell. Where `mask` is False the cell holds `fill` (None: left empty)."""
        n_rows = blk.n_rows - row0 if n_rows is None else n_rows
        n_cols = blk.n_cols - col0 if n_cols is None else n_cols
        if mask is None:
            mask = np.ones((n_rows, n_cols), dtype=bool)
        assert mask[0, 0], "the master cell of a shared formula must hold it"
        r, c = blk.row + row0, blk.col + col0
        if n_rows * n_cols == 1:
            _put(rows, r, c, formula_cell(formula, style))
            self.n_formulas += count
            return
        si = self._next_si(blk.sheet)
        ref = f"{col_letter(c)}{r}:{col_letter(c + n_cols - 1)}{r + n_rows - 1}"
        for i in range(n_rows):
            for j0, j1, on in _segments(mask[i]):
                if on:
                    if i == 0 and j0 == 0:
                        xml = shared_formula_master(formula, ref, si, style, c, r) + \
                            shared_formula_cells(c + 1, j1 - 1, r, si, style)
                    else:
                        xml = shared_formula_cells(c + j0, j1 - j0, r + i, si, style)
                    _put(rows, r + i, c + j0, xml, j1 - j0)
                elif fill is not None:
                    _put(rows, r + i, c + j0, number_cells(np.full(j1 - j0, fill), Style.MASKED), j1 - j0)
        if count:
            self.n_formulas += int(mask.sum())

    def _next_si(self, sheet: str) -> int:
        self._si[sheet] = self._si.get(sheet, -1) + 1
        return self._si[sheet]

    def _linear(self, rows: Rows, blk: Block, x: Block, param: str) -> None:
        """blk = x @ W + b, one MMULT of a row of x by a column of W per cell."""
        w, b = self.L.weight(param + ".weight"), self.L.weight(param + ".bias")
        self._shared(rows, blk, f"MMULT({x.rows_ref(0)},{w.col_ref(0)})+{b.span(0, 0, 0, 0, True, False)}")

    def _transpose(self, rows: Rows, blk: Block, src: Block, col_offset: int) -> None:
        """blk[d, s] = src[s, col_offset + d]: one plain reference per cell."""
        for d in range(blk.n_rows):
            xml = b"".join(formula_cell(src.at(s, col_offset + d), Style.NUMBER) for s in range(blk.n_cols))
            _put(rows, blk.row + d, blk.col, xml, blk.n_cols)
        self.n_formulas += blk.n_rows * blk.n_cols

    # -- input, vocabulary, weights, guide, metadata -----------------------------
    def _tokens(self, blk: Block, rows: Rows) -> None:
        vocab = self.B["vocab_text"]
        for t, token_id in enumerate(self.ids):
            _put(rows, blk.row + t, 1, number_cells([t]))
            _put(rows, blk.row + t, blk.col, number_cells([token_id], Style.INPUT))
        self._shared(rows, Block("", blk.sheet, blk.row, blk.col + 1, blk.n_rows, 1),
                     f"INDEX({vocab.span(0, 0, vocab.n_rows - 1, 0, True, True)},{blk.cell(0, 0)}+1)",
                     style=Style.DEFAULT, count=False)
        _put_column_labels(rows, Block("", blk.sheet, blk.row, 2, 1, 2), ["token id (edit)", "token"])

    def _vocab(self, blk: Block, rows: Rows) -> None:
        tok = self.model.tokenizer
        for i in range(blk.n_rows):
            _put(rows, blk.row + i, 1, number_cells([i]) + string_cell(tok.token_text(i))
                 + string_cell(tok.token_string(i)), 3)
        _put_column_labels(rows, Block("", blk.sheet, blk.row, 2, 1, 2), ["text", "GPT-2 byte-level string"])

    def _write_weights(self, wb: WorkbookWriter, param: str, title: str, opt: SheetOptions,
                       bar: Progress, formatter: WeightFormatter) -> None:
        blk = self.L.weight(param)
        self.n_cells += blk.n_rows * blk.n_cols
        with wb.sheet(param, opt, size_hint=blk.n_rows * blk.n_cols * 20) as write:
            write(row_xml(1, [(1, 1, string_cell(title, Style.TITLE))]))
            write(row_xml(2, [(1, 1, string_cell(BACK_LINK, Style.LINK)),
                              (2, blk.n_cols, number_cells(np.arange(blk.n_cols), Style.HEADER))]))
            for xml, cells in formatter.chunks(param):
                write(xml)
                bar.update(cells)

    def _guide(self) -> tuple[Rows, SheetOptions]:
        from .guide import guide_rows
        return guide_rows(self.L, self.model, self.prompt, self.ids)

    def _meta(self) -> Rows:
        cfg = self.cfg
        items = {"format": "sheetgpt-workbook", "format_version": 1, "sheetgpt_version": __version__,
                 "model": self.model.name, "random_weights": int(self.model.random),
                 "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd, "n_ctx": cfg.n_ctx,
                 "vocab_size": cfg.vocab_size, "layer_norm_epsilon": cfg.layer_norm_epsilon,
                 "n_tokens": self.T, "prompt": self.prompt}
        rows: Rows = {}
        for r, (key, value) in enumerate(items.items(), 1):
            cell = string_cell(value) if isinstance(value, str) else number_cells([value])
            _put(rows, r, 1, string_cell(key) + cell, 2)
        return rows


def _step_kind(name: str) -> str:
    """h3_ln_1_mean -> ln_mean, ln_f -> ln, h0_qkv -> qkv."""
    kind = name.split("_", 1)[1] if name[:1] == "h" and name[1:2].isdigit() else name
    for ln in ("ln_1", "ln_2", "ln_f"):
        if kind.startswith(ln):
            return "ln" + kind[len(ln):]
    return kind


def _a1_range(blk: Block) -> str:
    return f"{col_letter(blk.col)}{blk.row}:{col_letter(blk.col + blk.n_cols - 1)}{blk.row + blk.n_rows - 1}"


# -- row assembly helpers ---------------------------------------------------------
def _put(rows: Rows, row: int, col: int, xml: bytes, n: int = 1) -> None:
    rows.setdefault(row, []).append((col, n, xml))


def _segments(mask_row: np.ndarray) -> Iterable[tuple[int, int, bool]]:
    """Runs of equal values in a boolean row: (start, stop, value)."""
    edges = np.flatnonzero(np.diff(mask_row.astype(np.int8))) + 1
    bounds = [0, *edges.tolist(), len(mask_row)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield a, b, bool(mask_row[a])


def _put_column_labels(rows: Rows, blk: Block, labels: list) -> None:
    if all(isinstance(x, (int, np.integer)) for x in labels):
        xml = number_cells(labels, Style.HEADER)
    else:
        xml = b"".join(string_cell(str(x), Style.HEADER) for x in labels)
    _put(rows, blk.row - 1, blk.col, xml, len(labels))


def _put_labels(rows: Rows, sheet: Sheet, layout: Layout) -> None:
    """Column A names each row (live token text, or head and query); row 2 numbers columns."""
    T, H, D = layout.T, layout.cfg.n_head, layout.cfg.n_embd
    tokens = layout.blocks["tokens"]
    wide = [b for b in sheet.blocks if b.n_cols > 1]
    per_head = sheet.name.endswith((" scores", " softmax", " probs"))
    keys_t = sheet.name.endswith(" kT")
    if keys_t:
        for d in range(D):
            _put(rows, FIRST_ROW + d, 1, string_cell(f"head {d // layout.cfg.head_dim}, k{d}"))
    elif per_head:
        for h in range(H):
            for t in range(T):
                _put(rows, FIRST_ROW + h * T + t, 1, string_cell(f"head {h}, query {t}"))
    elif wide and wide[0].n_rows == T:
        for t in range(T):
            _put(rows, FIRST_ROW + t, 1, formula_cell(f"{quote_sheet(tokens.sheet)}!$C${tokens.row + t}"))
    for blk in wide:
        if not any(c == blk.col for c, _, _ in rows.get(blk.row - 1, [])):
            labels = [f"key {s}" for s in range(blk.n_cols)] if per_head or keys_t else list(range(blk.n_cols))
            _put_column_labels(rows, blk, labels)


def _previous_stream(layout: Layout, name: str) -> str:
    """The residual-stream block that a layer norm reads (or a residual add extends)."""
    if name.startswith("ln_f"):
        return f"h{layout.cfg.n_layer - 1}_resid_2" if layout.cfg.n_layer else "embed"
    if not (name.startswith("h") and name[1].isdigit()):
        return ""
    layer = int(name[1:name.index("_")])
    if "ln_2" in name or "resid_2" in name:
        return f"h{layer}_resid_1"
    return f"h{layer - 1}_resid_2" if layer else "embed"
