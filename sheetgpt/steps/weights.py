"""One sheet per GPT-2 parameter, named after it, holding its values (float32 as decimals)."""
from __future__ import annotations

from typing import Iterable

from ..layout import Block, Layout
from ..model import param_shapes
from .base import BuildInputs, Cells, Component, numbered_header


def weight_block_name(param: str) -> str:
    """Defined name of a parameter: dots are not portable in names, so h.0.ln_1.weight -> h0_ln_1_weight."""
    return param.replace("h.", "h", 1).replace(".", "_") if param.startswith("h.") else param.replace(".", "_")


class Weights(Component):
    """Every parameter as a block; a vector is one row. The builder streams the values
    (nearly every cell of a big model), so `cells` yields only the column numbers."""

    stage = "weights"

    def __init__(self, layout: Layout):
        super().__init__(layout)
        self.params: dict[str, Block] = {}
        self.shapes = param_shapes(layout.cfg)
        for param, shape in self.shapes.items():
            rows, cols = (1, shape[0]) if len(shape) == 1 else shape
            self.add_sheet(param, f"Weights {param} [{' x '.join(map(str, shape))}]")
            self.params[param] = block = self.add_block(weight_block_name(param), rows, cols, step=False)
            layout.add_weight(param, block)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        for block in self.params.values():
            yield numbered_header(block)

    def __getitem__(self, param: str) -> Block:
        return self.params[param]

    def label(self, block: Block) -> str:
        return next(p for p, b in self.params.items() if b == block)

    def shape_of(self, block: Block) -> tuple[int, ...]:
        return self.shapes[self.label(block)]
