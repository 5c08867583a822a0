"""Causal multi-head self-attention, one visible piece per sheet: queries, keys and values,
keys transposed, scores, softmax, weights, the mix of values, the projection, the residual.

Per-head matrices are stacked along the rows ([n_head * T, T]); masked (future) scores
are empty cells (NaN in the NumPy arrays) and their exp and weight cells hold 0.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..layout import Block, Layout
from ..xlsx import Style
from .base import (BuildInputs, CellFormulas, Cells, Component, Formula, Positions, Values, causal_mask, head_rows,
                   header, key_header, labels_column, column, numbered_header)
from .controls import Controls
from .linear import Linear, Residual, layer_sheet


def split_heads(x: np.ndarray, n_head: int) -> np.ndarray:
    """[T, n_head * dh] -> [n_head, T, dh]."""
    T = x.shape[0]
    return x.reshape(T, n_head, -1).transpose(1, 0, 2)


class QKV(Linear):
    stage, kind, short_title = "attention", "qkv", "Queries, keys and values"
    title = "Layer {layer}: queries | keys | values = ln_1 @ c_attn.weight + bias"
    note = ("One output of a linear layer: this position's normalised row times one column of c_attn.weight, "
            "plus the bias. The first third of the columns are queries, then keys, then values.")
    lesson = """
<p>One matrix multiplication gives every token three new vectors:</p>
<ul>
  <li>a <b>query</b>: what am I looking for?</li>
  <li>a <b>key</b>: what do I offer to those who look?</li>
  <li>a <b>value</b>: what do I pass on to those who attend to me?</li>
</ul>
<p>Each cell is <code>MMULT</code> of the token's normalised row ({{ m.D }} numbers) by one
column of <code>c_attn.weight</code>, plus a bias: {{ m.D }} query columns, then
{{ m.D }} key columns, then {{ m.D }} value columns. The {{ m.H }} heads share them out:
each head uses its own slice of {{ m.dh }} columns of each.</p>
"""

    def column_labels(self) -> Cells:
        D = self.out.n_cols // 3
        return header(self.out, [f"{k}{j}" for k in "qkv" for j in range(D)])


class KeysT(Component):
    stage, kind, short_title = "attention", "kT", "Keys, turned on their side"
    lesson = """
<p>To compare every query with every key by matrix multiplication, the keys are laid on
their side: this sheet is the key columns of the previous sheet, transposed, so that
each position becomes a column. Nothing is computed: each cell simply points at one cell
of the keys, which is why every cell has its own little formula.</p>
"""

    def __init__(self, layout: Layout, layer: int, qkv: Block):
        super().__init__(layout)
        self.layer, self.qkv = layer, qkv
        T, D = layout.T, layout.cfg.n_embd
        sheet, name = layer_sheet(layer, self.kind)
        self.add_sheet(sheet, f"Layer {layer}: keys transposed, one column per position [{D} x {T}]")
        self.out = self.add_block(name, D, T, note=(
            "A plain reference: the keys, transposed so that each position's key is a column (MMULT needs a "
            "row times a column)."))
        self.read(qkv)

    def compute(self, v: Values) -> None:
        D = self.out.n_rows
        v[self.out.name] = v[self.qkv.name][:, D:2 * D].T  # [D, T]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        D, T, dh = self.out.n_rows, self.out.n_cols, self.layout.cfg.head_dim
        yield CellFormulas(self.out, [[self.qkv.at(s, D + d) for s in range(T)] for d in range(D)])
        yield column(labels_column(self.out), (f"head {d // dh}, k{d}" for d in range(D)))
        yield key_header(self.out)


class Scores(Component):
    stage, kind, short_title = "attention", "scores", "Attention scores"
    lesson = """
<p>How well does each token's query match each other token's key? For a head, the score
of query position <i>t</i> against key position <i>s</i> is the dot product of their
{{ m.dh }}-number vectors, divided by &radic;{{ m.dh }} so that the scores do not grow
with the size of the head. Rows are (head, query), columns are keys.</p>
<p>A token may look only at itself and at the tokens before it: the model learns to
predict what comes next, so it must not peek. The cells for later positions are left
empty. This is the <em>causal mask</em>.</p>
"""

    def __init__(self, layout: Layout, layer: int, qkv: Block, kT: Block):
        super().__init__(layout)
        self.layer, self.qkv, self.kT = layer, qkv, kT
        T, H, dh = layout.T, layout.cfg.n_head, layout.cfg.head_dim
        sheet, name = layer_sheet(layer, self.kind)
        self.add_sheet(sheet, f"Layer {layer}: attention scores q.k / sqrt({dh}) per head; future positions "
                              f"masked (empty) [{H} heads x {T} x {T}]")
        self.out = self.add_block(name, H * T, T, heads=H, note=(
            "How well this query matches this key: the dot product of the head's query row and key column, "
            "divided by sqrt(head size). Cells right of the diagonal stay empty: a token cannot see the future."))
        self.read(qkv, kT)

    def compute(self, v: Values) -> None:
        H, T = self.out.heads, self.out.n_cols
        D = v[self.kT.name].shape[0]
        q = split_heads(v[self.qkv.name][:, :D], H)  # [H, T, dh]
        kT = v[self.kT.name].reshape(H, D // H, T)  # [H, dh, T]
        scores = q @ kT / np.sqrt(D // H)  # [H, T, T]
        scores[:, ~causal_mask(T)] = np.nan
        v[self.out.name] = scores.reshape(H * T, T)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        T, H, dh = self.out.n_cols, self.out.heads, self.layout.cfg.head_dim
        for h in range(H):
            q = self.qkv.span(0, h * dh, 0, (h + 1) * dh - 1, False, True)
            k = self.kT.span(h * dh, 0, (h + 1) * dh - 1, 0, True, False)
            yield Formula(self.out.part(h * T, T), f"MMULT({q},{k})/SQRT({dh})", mask=causal_mask(T))
        yield head_rows(self.out, H)
        yield key_header(self.out)


class Softmax(Component):
    """Each row's max in column B, sum of exps in C, exp(score - max) from D on."""

    stage, kind, short_title = "attention", "softmax", "Softmax, piece by piece"
    lesson = """
<p>Scores can be any number; attention needs weights that are positive and add up to 1.
The softmax does that: exp(score) divided by the sum of exp over the row. Here it is
taken apart into visible pieces: the row's largest score (column B), exp(score &minus;
max) for every cell (from column D), and the row's sum of those (column C).</p>
<p>Subtracting the maximum changes nothing in the result (it cancels in the division),
but it keeps <code>EXP</code> from overflowing on large scores. Masked cells hold 0:
a future token gets no weight at all.</p>
"""

    def __init__(self, layout: Layout, layer: int, scores: Block):
        super().__init__(layout)
        self.layer, self.scores = layer, scores
        T, H = layout.T, layout.cfg.n_head
        sheet, name = layer_sheet(layer, self.kind)
        self.add_sheet(sheet, f"Layer {layer}: softmax pieces per row: max, sum of exp, exp(score - max); "
                              f"masked cells are 0 [{H * T} x {T}]")
        self.max = self.add_block(name + "_max", H * T, 1, col=2, heads=H, note=(
            "Softmax, step 1: the largest score in the row (subtracted next so EXP cannot overflow)."))
        self.exp = self.add_block(name + "_exp", H * T, T, col=4, heads=H, note=(
            "Softmax, step 2: exp(score - max). Masked (future) cells are 0."))
        self.sum = self.add_block(name + "_sum", H * T, 1, col=3, heads=H, note=(
            "Softmax, step 3: the sum of the row's exps."))
        self.read(scores)

    def compute(self, v: Values) -> None:
        scores = v[self.scores.name]  # [H*T, T], NaN where masked
        row_max = np.nanmax(scores, axis=-1, keepdims=True)  # [H*T, 1]
        e = np.where(np.isnan(scores), 0.0, np.exp(scores - row_max))  # [H*T, T]
        v[self.max.name], v[self.exp.name], v[self.sum.name] = row_max, e, e.sum(axis=-1, keepdims=True)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        H, T = self.exp.heads, self.exp.n_cols
        yield Formula(self.max, f"MAX({self.scores.rows_ref(0)})")
        yield header(self.max, ["max"])
        yield Formula(self.exp, f"EXP({self.scores.at(0, 0)}-{self.max.cell(0, 0, abs_col=True)})",
                      mask=causal_mask(T, H), fill=0.0)
        yield Formula(self.sum, f"SUM({self.exp.rows_ref(0)})")
        yield header(self.sum, ["sum of exp"])
        yield head_rows(self.exp, H)
        yield key_header(self.exp)


class AttentionWeights(Component):
    stage, kind, short_title = "attention", "probs", "Attention weights"
    lesson = """
<p>Each exp divided by its row's sum: the attention weights. Every row is a
distribution over the positions that token may look at: no negative numbers, total 1.</p>
<p>The pictures show one head each: a row is the token doing the looking, a column the
token looked at, and the darker the square, the more attention. The first token can
only look at itself, so its row is always a single 1. In a trained model heads
specialise: some look at the previous token, some at the first one, some at a matching
name further back.</p>
"""

    def __init__(self, layout: Layout, layer: int, softmax: Softmax):
        super().__init__(layout)
        self.layer, self.exp, self.sum = layer, softmax.exp, softmax.sum
        T, H = layout.T, layout.cfg.n_head
        sheet, name = layer_sheet(layer, self.kind)
        self.add_sheet(sheet, f"Layer {layer}: attention weights = exp / sum; each row sums to 1 "
                              f"[{H} heads x {T} x {T}]")
        self.out = self.add_block(name, H * T, T, heads=H, note=(
            "Softmax, step 4: exp / sum. Each row sums to 1: how much this query attends to each earlier position."))
        self.color_scales.append(self.out)
        self.read(self.exp, self.sum)

    def compute(self, v: Values) -> None:
        v[self.out.name] = v[self.exp.name] / v[self.sum.name]  # [H*T, T]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        H, T = self.out.heads, self.out.n_cols
        yield Formula(self.out, f"{self.exp.at(0, 0)}/{self.sum.span(0, 0, 0, 0, False, True)}",
                      Style.PERCENT, mask=causal_mask(T, H), fill=0.0)
        yield head_rows(self.out, H)
        yield key_header(self.out)


class MixValues(Component):
    stage, kind, short_title = "attention", "attn", "Mixing the values"
    lesson = """
<p>Now each head gathers information: the output for a token is the weighted average of
the value vectors of the tokens it attends to, with the weights of the previous sheet.
Each cell is <code>MMULT</code> of one row of weights ({{ m.T }} numbers) by one column
of values.</p>
<p>The {{ m.H }} heads' outputs, {{ m.dh }} columns each, are placed side by side, back to
{{ m.D }} columns. This is the only kind of step in the whole model where information
moves from one token to another. Each row reads only the values of its own and earlier
positions, so a later position (a generated token) never feeds an earlier one.</p>
<p>Each head's output is multiplied by its switch on the <code>controls</code> sheet:
type 0 there and the head is gone from the model.</p>
"""

    def __init__(self, layout: Layout, positions: Positions, layer: int, probs: Block, qkv: Block,
                 controls: Controls):
        super().__init__(layout)
        self.positions, self.layer, self.probs, self.qkv = positions, layer, probs, qkv
        T, D = layout.T, layout.cfg.n_embd
        sheet, name = layer_sheet(layer, self.kind)
        self.add_sheet(sheet, f"Layer {layer}: attention output per head = weights @ values, times the head's "
                              f"switch; heads side by side [{T} x {D}]")
        self.out = self.add_block(name, T, D, note=(
            "The attention output of one head: this position's attention weights (a row, up to this position) "
            "times one column of the values, times the head's switch on sheet controls. The heads sit side by "
            "side."))
        self.controls = controls
        self.read(probs, qkv, self.controls.switches)

    def compute(self, v: Values) -> None:
        H, (T, D) = self.probs.heads, self.out.shape
        probs = v[self.probs.name].reshape(H, T, T)  # [H, T, T]
        values = split_heads(v[self.qkv.name][:, 2 * D:], H)  # [H, T, dh]
        switches = v[self.controls.switches.name][self.layer][:, None, None]  # [H, 1, 1]
        v[self.out.name] = (probs @ values * switches).transpose(1, 0, 2).reshape(T, D)  # [H, T, dh] -> [T, D]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        (T, D), H = self.out.shape, self.probs.heads
        dh = D // H
        for h in range(H):
            switch = self.controls.switch_cell(self.layer, h)
            for t in range(T):  # causal: row t reads the values of positions 0..t only
                w = self.probs.span(h * T + t, 0, h * T + t, t, False, True)
                values = self.qkv.span(0, 2 * D + h * dh, t, 2 * D + h * dh, True, False)
                yield Formula(self.out.part(row0=t, n_rows=1, col0=h * dh, n_cols=dh),
                              f"MMULT({w},{values})*{switch}")
        yield self.positions.labels(self.out)
        yield numbered_header(self.out)


class AttentionProjection(Linear):
    stage, kind, short_title = "attention", "attn_proj", "Attention output projection"
    title = "Layer {layer}: attention projection = attn @ c_proj.weight + bias"
    note = "The attention output projection: the row of all heads times one column of attn.c_proj.weight, plus bias."
    lesson = """
<p>A linear layer (<code>c_proj</code>: {{ m.D }} &times; {{ m.D }} weights and a bias)
mixes the heads' side-by-side outputs into one {{ m.D }}-number update per token: what
attention wants to add to the residual stream.</p>
"""


class AttentionResidual(Residual):
    stage, kind, short_title = "attention", "resid_1", "Residual add: attention"
    title = "Layer {layer}: residual: x + attention projection"
    note = "Residual connection: the stream that came in plus what attention adds."
    lesson = """
<p>Add, don't replace: the attention update is added to the stream that came into the
layer. This <em>residual connection</em> lets every layer make a small edit while
keeping everything already there, and it is what lets a deep stack of layers train well.</p>
"""
