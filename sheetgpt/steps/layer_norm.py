"""Layer norm of the residual stream, in three visible pieces: mean, variance, normalised row."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..layout import Block, Layout
from .base import (BuildInputs, Cells, Component, Formula, Positions, Values, column, header, labels_column,
                   numbered_header)


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float):
    """x [T, D] -> mean [T, 1], population variance [T, 1], normalised x*g+b [T, D]."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return mean, var, (x - mean) / np.sqrt(var + eps) * g + b


class LayerNorm(Component):
    """Mean in column B, variance in C, the normalised row from D on."""

    lesson = """
<p>Layer norm rescales each token's row on its own: subtract the row's mean, divide by
its standard deviation, so that the {{ m.D }} numbers have mean 0 and variance 1; then
multiply each column by a learned gain and add a learned bias. Column B holds each
row's mean, column C its variance, and from column D on
(x &minus; mean) / &radic;(variance + &epsilon;) &times; gain + bias, with
&epsilon; = {{ m.eps }} so that nothing divides by zero.</p>
<p>{{ c.purpose }} It keeps the numbers in a steady range however much the layers have
added to the stream. No information moves between tokens here.</p>
"""

    def __init__(self, layout: Layout, name: str, sheet: str, title: str, x: Block, gain: Block, bias: Block, *,
                 stage: str, kind: str, short_title: str, purpose: str, layer: int | None = None,
                 positions: Positions | None = None, row_names: Sequence[str] = ()):
        """positions: the token positions its rows are; else row_names says what column A calls them."""
        super().__init__(layout)
        self.positions = positions
        T, D = x.n_rows, layout.cfg.n_embd
        self.row_names = row_names
        self.stage, self.kind, self.short_title, self.purpose, self.layer = stage, kind, short_title, purpose, layer
        self.x, self.gain, self.bias, self.eps = x, gain, bias, layout.cfg.layer_norm_epsilon
        self.add_sheet(sheet, f"{title} [{T} x {D}]")
        self.mean = self.add_block(name + "_mean", T, 1, col=2, note=(
            "Layer norm, step 1: the mean of this row of the residual stream."))
        self.var = self.add_block(name + "_var", T, 1, col=3, note=(
            "Layer norm, step 2: the population variance of the row, the mean of squared distances from the mean."))
        self.out = self.add_block(name, T, D, col=4, note=(
            "Layer norm, step 3: subtract the mean, divide by sqrt(variance + 1e-5), then scale by the learned gain "
            "and add the learned bias (one per column)."))
        self.read(x, gain, bias)

    def compute(self, v: Values) -> None:
        mean, var, out = layer_norm(v[self.x.name], v[self.gain.name], v[self.bias.name], self.eps)
        v[self.mean.name], v[self.var.name], v[self.out.name] = mean, var, out

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        x, D = self.x, self.x.n_cols
        mean, var = self.mean.cell(0, 0, abs_col=True), self.var.cell(0, 0, abs_col=True)
        eps = repr(float(self.eps)).upper()
        yield Formula(self.mean, f"AVERAGE({x.rows_ref(0)})")
        yield Formula(self.var, f"SUMPRODUCT(({x.rows_ref(0)}-{mean})^2)/{D}")
        yield Formula(self.out, f"({x.at(0, 0)}-{mean})/SQRT({var}+{eps})"
                                f"*{self.gain.span(0, 0, 0, 0, True, False)}+{self.bias.span(0, 0, 0, 0, True, False)}")
        yield header(self.mean, ["mean"])
        yield header(self.var, ["variance"])
        yield (self.positions.labels(self.out) if self.positions is not None
               else column(labels_column(self.out), self.row_names))
        yield numbered_header(self.out)
