"""Linear layers and residual adds: the steps of a layer that work on each position alone."""
from __future__ import annotations

from typing import Iterable

from ..layout import Block, Layout
from .base import ArrayFormula, BuildInputs, Cells, Component, Formula, Positions, Values, numbered_header
from .controls import Controls


def layer_sheet(layer: int, kind: str) -> tuple[str, str]:
    """Sheet and block name of a layer's step: ('h0 qkv', 'h0_qkv')."""
    return f"h{layer} {kind}", f"h{layer}_{kind}"


class Linear(Component):
    """out = x @ W + b: one array formula MMULT(x, W) + b (in a book that writes, one per
    position, so no formula reaches its own later rows); in the cells form, each cell one
    MMULT of a row of x by a column of W, plus the bias."""

    title = ""  # 'Layer {layer}: ...', followed by the shape
    note = ""

    def __init__(self, layout: Layout, positions: Positions, layer: int, x: Block, weight: Block, bias: Block):
        super().__init__(layout)
        self.positions, self.layer, self.x, self.weight, self.bias = positions, layer, x, weight, bias
        sheet, name = layer_sheet(layer, self.kind)
        T, n = layout.T, weight.n_cols
        self.add_sheet(sheet, f"{self.title.format(layer=layer)} [{T} x {n}]")
        self.out = self.add_block(name, T, n, note=self.note)
        self.read(x, weight, bias)

    def compute(self, v: Values) -> None:
        v[self.out.name] = v[self.x.name] @ v[self.weight.name] + v[self.bias.name]  # [T, n]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        yield from self.products()
        yield self.positions.labels(self.out)
        yield self.column_labels()

    def products(self) -> Iterable[Cells]:
        x, w, b, options = self.x, self.weight, self.bias, self.layout.options
        if not options.arrays:
            yield Formula(self.out, f"MMULT({x.rows_ref(0)},{w.col_ref(0)})+{b.span(0, 0, 0, 0, True, False)}")
        elif not self.layout.loops:
            yield ArrayFormula(self.out, f"MMULT({x.ref()},{w.ref()})+{b.ref()}")
        else:
            for t in range(self.out.n_rows):
                yield ArrayFormula(self.out.part(row0=t, n_rows=1), f"MMULT({x.rows_ref(t, True)},{w.ref()})+{b.ref()}")

    def column_labels(self) -> Cells:
        return numbered_header(self.out)


class Residual(Component):
    """out = the stream + what a sub-layer adds to it."""

    title = ""
    note = ""

    steers: int | None = None  # the steering layer whose input this sum is, if it is one

    def __init__(self, layout: Layout, positions: Positions, layer: int, stream: Block, delta: Block,
                 controls: Controls):
        super().__init__(layout)
        self.positions, self.layer, self.stream, self.delta, self.controls = positions, layer, stream, delta, controls
        sheet, name = layer_sheet(layer, self.kind)
        self.add_sheet(sheet, f"{self.title.format(layer=layer)} [{layout.T} x {stream.n_cols}]")
        self.out = self.add_block(name, layout.T, stream.n_cols, note=self.note)
        self.read(stream, delta)
        if self.steers is not None:
            self.read(controls.vector)

    def compute(self, v: Values) -> None:
        v[self.out.name] = v[self.stream.name] + v[self.delta.name]  # [T, D]
        if self.steers is not None:
            v[self.out.name] = v[self.out.name] + self.controls.steering_of(v, self.steers)  # [T, D] + [1, D]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        steer = "" if self.steers is None else self.controls.steering(self.out, self.steers)
        yield Formula(self.out, f"{self.stream.at(0, 0)}+{self.delta.at(0, 0)}{steer}")
        yield self.positions.labels(self.out)
        yield numbered_header(self.out)
