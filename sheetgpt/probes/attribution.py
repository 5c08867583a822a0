"""Direct logit attribution: which parts of the model pushed the target token's logit up.

The final stream of the last filled position is a sum of pieces: the embedding, each
attention head's output through its slice of c_proj, each attention projection's bias,
each MLP's output (and the steering vector, if one is pushed in after the embedding).
The final layer norm is linear in the stream once its scale 1 / sqrt(var + eps) is taken
from the final stream as it is (the usual "frozen" layer norm), so the target's logit is

    logit = sum over pieces c of  c . dir  +  ln_f.bias . wte[target]
    dir   = scale * ln_f.gain * wte[target], minus its mean (the layer norm centres)

and each piece's contribution c . dir adds up exactly to the logit minus the bias term.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from ..layout import FIRST_ROW, Block, Layout
from ..steps.attention import AttentionProjection, MixValues
from ..steps.base import (BuildInputs, CellFormulas, Cells, Chart, Component, Constants, Formula, Positions, Shown,
                          Values, column, header, labels_column, numbered_header)
from ..steps.guide import GUIDE_SHEET, TOP_ROW
from ..steps.mlp import MlpDown
from ..xlsx import Style
from .base import Forward, Probe

if TYPE_CHECKING:
    from ..lesson import Figure
    from ..readback import BookContents


TOP = 3  # the largest contributions, named on the sheet and the Guide
GUIDE_COL = 6  # where the Guide names them: beside its top tokens


class AttributionPieces(Component):
    """Row 0 the embedding, then each layer's heads side by side (before c_proj), then each
    layer's MLP output: the last filled position's row of each."""

    stage, kind, short_title = "output", "dla_pieces", "Attribution: the pieces of the last stream"
    lesson = """
<p>The residual stream of the last position is a sum: the embedding, plus what each
layer's attention adds, plus what each layer's MLP adds. This sheet copies the last
filled position's row of each piece (for attention, the heads' outputs side by side,
before the projection <code>c_proj</code> mixes them), so the next sheet can ask how much
each one pushes the predicted token.</p>
"""

    def __init__(self, layout: Layout, positions: Positions, embed: Block, heads: list[Block], mlps: list[Block]):
        super().__init__(layout)
        self.positions, self.sources = positions, [embed, *heads, *mlps]
        L, D = len(heads), embed.n_cols
        self.add_sheet("dla_pieces", f"Attribution 1: the last position's embedding, heads (before c_proj) and "
                                     f"MLP outputs [{1 + 2 * L} x {D}]")
        self.out = self.add_block("dla_pieces", 1 + 2 * L, D, note=(
            "The last filled position's row of this piece of the residual stream (INDEX picks it)."))
        self.read(*self.sources)

    def compute(self, v: Values) -> None:
        t = self.positions.last_row(v)
        v[self.out.name] = np.stack([v[b.name][t] for b in self.sources])  # [1 + 2L, D]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        last = self.positions.last_position()
        for r, b in enumerate(self.sources):
            yield Formula(self.out.part(row0=r, n_rows=1), f"INDEX({b.col_ref(0)},{last})")
        L = (self.out.n_rows - 1) // 2
        yield column(labels_column(self.out), ["embedding"] + [f"layer {i} heads" for i in range(L)]
                     + [f"layer {i} MLP" for i in range(L)])
        yield numbered_header(self.out)


class AttributionDirection(Component):
    """The target token and the direction its logit reads the stream along: its row of wte,
    times ln_f's gain and frozen scale, minus the mean; and what each heads' column gives
    through c_proj."""

    stage, kind, short_title = "output", "dla_dir", "Attribution: the target's direction"
    lesson = """
<p>Which token to take apart: the model's prediction, unless you type another token id
into the yellow cell. Its logit is its row of <code>wte</code> dotted with the final
layer norm's output. Hold the layer norm's scale 1&nbsp;/&nbsp;&radic;(variance&nbsp;+&nbsp;&epsilon;)
at what the final stream has (the usual "frozen" layer norm) and the layer norm becomes
linear: the logit is then the stream dotted with one direction, the row times the gain and
the scale, minus its mean (the layer norm subtracts the stream's mean), plus a bias term.
The last block turns the direction back through each layer's <code>c_proj</code>, so that
a head's output can be dotted with it directly.</p>
"""

    def __init__(self, layout: Layout, model: Forward, projections: list[Block]):
        super().__init__(layout)
        cfg, w = layout.cfg, model.inputs.weights
        L, D = cfg.n_layer, cfg.n_embd
        self.positions, self.projections, self.eps = model.positions, projections, cfg.layer_norm_epsilon
        self.var, self.wte, self.gain = model.ln_f.var, w["wte.weight"], w["ln_f.weight"]
        self.vocab = model.inputs.vocab.text
        self.top_id = model.prediction.top_ids
        self.add_sheet("dla_dir", f"Attribution 2: the target token and the direction its logit reads [{D}], "
                                  f"through each layer's c_proj [{D} x {L}]")
        block = lambda name, row, n_rows=1, n_cols=1, note=None, **kw: self.add_block(
            name, n_rows, n_cols, row=row, note=note, **kw)
        self.choice = block("dla_choice", FIRST_ROW, step=False, given=True, note=(
            "Type a token id here to ask about that token; empty: the model's prediction."))
        self.target = block("dla_target", FIRST_ROW + 1, note="The token whose logit is taken apart.")
        self.scale = block("dla_scale", FIRST_ROW + 2, note=(
            "1 / sqrt(variance + eps) of the last position's final stream: the final layer norm's scale, held fixed."))
        self.wte_row = block("dla_wte", FIRST_ROW + 4, n_cols=D, note="The target's row of wte.")
        self.unit = block("dla_unit", FIRST_ROW + 5, n_cols=D, note="scale * ln_f gain * the target's row of wte.")
        self.dir = block("dla_dir", FIRST_ROW + 6, n_cols=D, note="The direction: the row above minus its mean.")
        self.proj = block("dla_proj", FIRST_ROW + 9, n_rows=D, n_cols=L, note=(
            "Row i of this layer's c_proj dotted with the direction: what one unit in the heads' column i gives."))
        self.read(self.var, self.wte, self.gain, self.top_id, *projections)

    def steps(self) -> list[Block]:
        return [self.target, self.scale, self.wte_row, self.unit, self.dir, self.proj]

    def valid(self, target: float) -> bool:
        """Whether a target is a token id of the vocabulary."""
        return bool(np.isfinite(target) and target == int(target) and 0 <= target < self.wte.n_rows)

    def _target_text(self, v: Values, vocab) -> list[str]:
        """The target's text; a target that is no token id shows INDEX's error."""
        target = v[self.target.name][0, 0]
        return [vocab(int(target)) if self.valid(target) else "#REF!"]

    def compute(self, v: Values) -> None:
        choice = v.get(self.choice.name, np.full((1, 1), np.nan))[0, 0]  # empty unless the learner typed one
        target = v[self.top_id.name][0, 0] if np.isnan(choice) else choice
        t = self.positions.last_row(v)
        scale = 1 / np.sqrt(v[self.var.name][t, 0] + self.eps)
        if not self.valid(target):  # the sheet looks it up in vain and shows errors: check says where
            v.update({blk.name: np.full(blk.shape, np.nan) for blk in self.steps()})
            v[self.target.name], v[self.scale.name] = np.array([[target]]), np.array([[scale]])
            return
        wte = v[self.wte.name][int(target)]  # [D]
        unit = scale * v[self.gain.name][0] * wte  # [D]
        d = unit - unit.mean()  # [D]
        proj = np.stack([v[w.name] @ d for w in self.projections], axis=1)  # [D, L]
        for blk, x in zip(self.steps(), (target, scale, wte, unit, d, proj)):
            v[blk.name] = np.asarray(x, dtype=np.float64).reshape(blk.shape)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        choice, target, V, D = self.choice.cell(0, 0), self.target.cell(0, 0), self.vocab.n_rows, self.dir.n_cols
        yield Constants(self.choice, [[None]], Style.INPUT, given=True)
        yield Formula(self.target, f"IF({choice}=\"\",{self.top_id.at(0, 0)},{choice})", Style.INTEGER)
        yield Formula(self.target.part(col=3), f"INDEX({self.vocab.span(0, 0, V - 1, 0, True, True)},{target}+1)",
                      Style.DEFAULT, shows=Shown("dla_target_text", self._target_text))
        eps = repr(float(self.eps)).upper()
        yield Formula(self.scale, f"1/SQRT(INDEX({self.var.col_ref(0)},{self.positions.last_position()})+{eps})")
        target = self.target.cell(0, 0, True, True)
        yield Formula(self.wte_row, f"INDEX({self.wte.col_ref(0)},{target}+1)")
        yield Formula(self.unit, f"{self.scale.cell(0, 0, True, True)}*{self.gain.span(0, 0, 0, 0, True, False)}"
                                 f"*{self.wte_row.cell(0, 0)}")
        yield Formula(self.dir, f"{self.unit.cell(0, 0)}-AVERAGE({self.unit.ref()})")
        for layer, w in enumerate(self.projections):
            yield Formula(self.proj.part(col0=layer, n_cols=1), f"SUMPRODUCT({w.rows_ref(0)},{self.dir.ref()})")
        yield column(labels_column(self.choice.part(n_rows=3)), ["your target id (type one)", "target id",
                                                                 "ln_f scale of the last position"], Style.HEADER)
        yield column(labels_column(self.wte_row.part(n_rows=3)), ["target's wte row", "scale * gain * wte row",
                                                                  "direction (minus its mean)"], Style.HEADER)
        yield header(self.wte_row, list(range(D)))
        yield header(self.proj, [f"layer {i}" for i in range(self.proj.n_cols)])
        yield column(labels_column(self.proj), (f"c_proj row {i}" for i in range(D)))


class Attribution(Component):
    """Each piece's contribution to the target token's logit: embedding, heads, attention
    biases, MLPs, steering; their sum beside the logit; the largest, named."""

    stage, kind, short_title = "output", "dla", "Attribution: who voted for the token"
    lesson = """
<p>Which parts of the model pushed the predicted token up? Each piece of the last
position's stream is dotted with the direction of the previous sheet. Since the frozen
layer norm is linear, the contributions add up exactly to the target's logit minus the
layer norm's bias term: the sheet shows both.</p>
<p>The grid gives every head of every layer (its slice of the heads' row times its
slice of <code>c_proj</code>), beside it each layer's projection bias and MLP; the three
largest contributions are named at the top, and on the Guide. Switch a head off on
<code>controls</code> and its cell becomes 0.</p>
"""

    def __init__(self, layout: Layout, model: Forward, pieces: AttributionPieces, direction: AttributionDirection,
                 biases: list[Block]):
        super().__init__(layout)
        cfg = layout.cfg
        L, H = cfg.n_layer, cfg.n_head
        self.pieces, self.direction, self.biases, self.controls = pieces.out, direction, biases, model.inputs.controls
        self.wte, self.ln_bias, self.logits = direction.wte, model.inputs.weights["ln_f.bias"], model.prediction.logits
        self.add_sheet("dla", f"Attribution 3: each piece's contribution to the target token's logit "
                              f"[{L} layers x {H} heads, {L} MLPs]")
        block = lambda name, row, col=2, n_rows=1, n_cols=1, note=None, **kw: self.add_block(
            name, n_rows, n_cols, row=row, col=col, note=note, **kw)
        self.logit = block("dla_logit", FIRST_ROW, note="The target's logit, from sheet logits.")
        self.bias_term = block("dla_bias_term", FIRST_ROW + 1, note=(
            "ln_f's bias . the target's row of wte: the part of the logit no piece of the stream gives."))
        self.sum = block("dla_sum", FIRST_ROW + 2, note="The contributions added up: the logit minus the bias term.")
        self.embed = block("dla_embed", FIRST_ROW + 3, note=(
            "The embedding's contribution (with the steering vector at layer 0)."))
        self.steer = block("dla_steer", FIRST_ROW + 4, note="The steering vector's, pushed in after a layer.")
        self.top = block("dla_top", FIRST_ROW, col=7, n_rows=TOP, note="The largest contributions (LARGE).")
        grid = FIRST_ROW + 7
        self.heads = block("dla_heads", grid, n_rows=L, n_cols=H, note=(
            "Head h of layer l: its output at the last position (its slice of the heads' row) times its slice of "
            "c_proj, dotted with the direction."))
        self.attn_bias = block("dla_attn_bias", grid, col=3 + H, n_rows=L, note="The attention projection's bias.")
        self.mlp = block("dla_mlp", grid, col=4 + H, n_rows=L, note="The MLP's output (with its bias).")
        self.attn = block("dla_attn", grid, col=5 + H, n_rows=L, note="The layer's attention: its heads and bias.")
        parts = [f"head {h}" for h in range(H)] + ["attn bias", "MLP"]
        self.labels = ["embedding"] + [f"layer {i} {part}" for i in range(L) for part in parts] + ["steering"]
        self.all = block("dla_all", grid + L + 2, n_rows=len(self.labels), step=False, note=(
            "Every contribution in one column (its name beside it), for the largest ones."))
        self.signed_scales += [self.heads, self.attn_bias, self.mlp, self.attn]
        self.charts.append(Chart(Block("", self.sheet.name, FIRST_ROW, 7 + H, 16, 8),
                                 "Each layer's push on the target's logit", labels_column(self.heads),
                                 [("attention (heads + bias)", self.attn), ("MLP", self.mlp)], kind="column"))
        self.read(self.pieces, direction.dir, direction.proj, direction.wte_row, direction.target, *biases,
                  self.ln_bias, self.logits, self.controls.coef, self.controls.layer, self.controls.vector)

    def compute(self, v: Values) -> None:
        L, H = self.heads.shape
        target, d = v[self.direction.target.name][0, 0], v[self.direction.dir.name][0]  # [D]
        mine = [self.logit, self.bias_term, self.sum, self.embed, self.steer, self.heads, self.attn_bias, self.mlp,
                self.attn, self.top]
        if not self.direction.valid(target):  # the sheet looks it up in vain and shows errors, check says where
            v.update({blk.name: np.full(blk.shape, np.nan) for blk in mine})
            return
        pieces, proj, dh = v[self.pieces.name], v[self.direction.proj.name], d.size // H  # [1 + 2L, D], [D, L]
        heads = np.array([[pieces[1 + l, h * dh:(h + 1) * dh] @ proj[h * dh:(h + 1) * dh, l] for h in range(H)]
                          for l in range(L)])  # [L, H]
        layer = v[self.controls.layer.name][0, 0]
        steer = v[self.controls.coef.name][0, 0] * (v[self.controls.vector.name][0] @ d) if 1 <= layer <= L else 0.0
        parts = {self.logit: v[self.logits.name][int(target), 0],
                 self.bias_term: v[self.ln_bias.name][0] @ v[self.direction.wte_row.name][0],
                 self.embed: pieces[0] @ d, self.steer: steer, self.heads: heads,
                 self.attn_bias: np.array([v[b.name][0] @ d for b in self.biases]), self.mlp: pieces[1 + L:] @ d}
        for blk, x in parts.items():
            v[blk.name] = np.asarray(x, dtype=np.float64).reshape(blk.shape)
        v[self.attn.name] = heads.sum(axis=1, keepdims=True) + v[self.attn_bias.name]
        v[self.sum.name] = np.array([[v[self.embed.name][0, 0] + heads.sum() + v[self.attn_bias.name].sum()
                                      + v[self.mlp.name].sum() + steer]])
        v[self.top.name] = np.sort(self._flat(v))[::-1][:TOP, None]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        yield from self._logit_and_sum()
        yield from self._contributions()
        yield from self._largest()

    def _logit_and_sum(self) -> Iterable[Cells]:
        target = self.direction.target.at(0, 0)
        yield Formula(self.logit, f"INDEX({self.logits.ref()},{target}+1)")
        yield Formula(self.bias_term, f"SUMPRODUCT({self.ln_bias.ref()},{self.direction.wte_row.ref()})")
        yield Formula(self.sum, f"{self.embed.cell(0, 0)}+SUM({self.heads.ref()})+SUM({self.attn_bias.ref()})"
                                f"+SUM({self.mlp.ref()})+{self.steer.cell(0, 0)}")
        yield column(labels_column(self.logit.part(n_rows=5)), ["logit of the target", "ln_f bias term",
                                                                "sum of the contributions", "embedding", "steering"],
                     Style.HEADER)

    def _flat(self, v: Values) -> np.ndarray:
        """Every contribution in the order of dla_all."""
        L = self.heads.n_rows
        rows = [np.concatenate([v[self.heads.name][i], v[self.attn_bias.name][i], v[self.mlp.name][i]])
                for i in range(L)]
        return np.concatenate([v[self.embed.name][0], *rows, v[self.steer.name][0]])

    def _top_names(self, v: Values) -> list[str]:
        """The names of the largest contributions, as LARGE and MATCH (the first of equals) find them."""
        flat = self._flat(v)
        if np.isnan(flat).any():  # no target to take apart: the sheet shows the lookup's error
            return ["#REF!"] * TOP
        return [self.labels[int(np.flatnonzero(flat == x)[0])] for x in np.sort(flat)[::-1][:TOP]]

    def _largest(self) -> Iterable[Cells]:
        (L, H), sources = self.heads.shape, [self.embed.cell(0, 0)]
        for i in range(L):
            sources += [self.heads.cell(i, h) for h in range(H)] + [self.attn_bias.cell(i, 0), self.mlp.cell(i, 0)]
        yield CellFormulas(self.all, [[s] for s in sources + [self.steer.cell(0, 0)]], Style.NUMBER,
                           Shown("dla_all", lambda v, vocab: list(self._flat(v))))
        yield column(self.all.part(col=self.all.col - 1), self.labels)
        yield header(self.all.part(col=self.all.col - 1, n_cols=2), ["piece", "contribution"])
        rank = self.top.part(col=self.top.col - 2).cell(0, 0, abs_col=True)
        yield Formula(self.top, f"LARGE({self.all.ref()},{rank})")
        yield column(self.top.part(col=self.top.col - 2), range(1, TOP + 1))
        names = self.all.span(0, -1, self.all.n_rows - 1, -1, True, True)
        yield Formula(self.top.part(col=self.top.col - 1), f"INDEX({names},MATCH({self.top.cell(0, 0)},"
                                                           f"{self.all.ref()},0))", Style.DEFAULT,
                      shows=Shown("dla_top_names", lambda v, vocab: self._top_names(v)))
        yield header(self.top.part(col=self.top.col - 2, n_cols=3), ["rank", "piece", "contribution"])
        yield from self._on_the_guide()

    def _on_the_guide(self) -> Iterable[Cells]:
        """The largest contributions, named, beside the Guide's top tokens."""
        yield Constants(Block("", GUIDE_SHEET, TOP_ROW, GUIDE_COL, 1, 2), [["Pushed it up most", "contribution"]],
                        Style.HEADER)
        yield CellFormulas(Block("", GUIDE_SHEET, TOP_ROW + 1, GUIDE_COL, TOP, 1),
                           [[self.top.at(k, -1)] for k in range(TOP)], Style.DEFAULT,
                           Shown("guide_dla_names", lambda v, vocab: self._top_names(v)))
        yield CellFormulas(Block("", GUIDE_SHEET, TOP_ROW + 1, GUIDE_COL + 1, TOP, 1),
                           [[self.top.at(k, 0)] for k in range(TOP)], Style.NUMBER,
                           Shown("guide_dla_top", lambda v, vocab: list(v[self.top.name][:, 0])))

    def _contributions(self) -> Iterable[Cells]:
        direction = self.direction
        (L, H), D, d = self.heads.shape, direction.dir.n_cols, direction.dir.ref()
        dh = D // H
        yield Formula(self.embed, f"SUMPRODUCT({self.pieces.span(0, 0, 0, D - 1, True, True)},{d})")
        c = self.controls
        yield Formula(self.steer, f"IF(AND({c.layer.name}>=1,{c.layer.name}<={L}),"
                                  f"{c.coef.name}*SUMPRODUCT({c.vector.ref()},{d}),0)")
        head_row = lambda l, h: self.pieces.span(1 + l, h * dh, 1 + l, (h + 1) * dh - 1, True, True)
        head_proj = lambda l, h: direction.proj.span(h * dh, l, (h + 1) * dh - 1, l, True, True)
        yield CellFormulas(self.heads, [[f"MMULT({head_row(l, h)},{head_proj(l, h)})" for h in range(H)]
                                        for l in range(L)])
        yield CellFormulas(self.attn_bias, [[f"SUMPRODUCT({b.ref()},{d})"] for b in self.biases])
        yield Formula(self.mlp, f"SUMPRODUCT({self.pieces.rows_ref(1 + L)},{d})")
        yield Formula(self.attn, f"SUM({self.heads.rows_ref(0)})+{self.attn_bias.cell(0, 0)}")
        yield column(labels_column(self.heads), (f"layer {i}" for i in range(L)))
        yield header(self.heads.part(n_cols=H + 4), [f"head {h}" for h in range(H)] + ["", "attn bias", "MLP",
                                                                                       "attention"])


def attribution(layout: Layout, model: Forward, on: int) -> list[Component]:
    """The pieces of the last stream, then their contributions to the target's logit."""
    def find(kind, layer):
        return next(c for c in layer if isinstance(c, kind))

    heads = [find(MixValues, layer).out for layer in model.layers]
    if not heads:
        raise ValueError("attribution needs the layers' components")
    mlps = [find(MlpDown, layer).out for layer in model.layers]
    projections = [find(AttentionProjection, layer).weight for layer in model.layers]
    biases = [find(AttentionProjection, layer).bias for layer in model.layers]
    pieces = AttributionPieces(layout, model.positions, model.streams[0], heads, mlps)
    direction = AttributionDirection(layout, model, projections)
    return [pieces, direction, Attribution(layout, model, pieces, direction, biases)]


def attribution_grid(book: BookContents, step: Attribution, facts: dict, out: Path) -> list[tuple[str, Figure]]:
    """The heads' contributions as a grid, with the MLPs and the embedding beside them."""
    from .. import figures
    from ..lesson import IMG_DIR, Figure, visible

    target = visible(book.token_text(int(book[step.direction.target.name][0, 0])))
    src = f"{IMG_DIR}/dla-grid.png"
    figures.attribution_grid(book[step.heads.name], book[step.attn_bias.name][:, 0], book[step.mlp.name][:, 0],
                             float(book[step.embed.name][0, 0]), target, out / src)
    return [(step.sheet.name, Figure(src, f"Who pushed \u201c{target}\u201d up: every head, projection bias and MLP",
                                     "Red pushes the target's logit up, blue pushes it down; the number in each "
                                     "square is the contribution on sheet dla."))]


PROBE = Probe("dla", "direct logit attribution: each head's, MLP's and the embedding's push on the predicted token's "
                     "logit (default: on; --no-dla leaves it out)",
              attribution, default=1,
              guide=lambda layout, on: ["Sheet 'dla' takes the prediction's logit apart: what each head, MLP and the "
                                        "embedding adds to it (type another token id into sheet 'dla_dir' to ask about it)."],
              figures={Attribution.kind: attribution_grid})
