"""The MLP of a layer: widen to 4x, GELU, narrow back, add to the stream."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..layout import Block, Layout
from .base import BuildInputs, Cells, Component, Formula, Positions, Values, numbered_header
from .linear import Linear, Residual, layer_sheet


def gelu(x: np.ndarray) -> np.ndarray:
    """tanh approximation, as in GPT-2."""
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


class MlpUp(Linear):
    stage, kind, short_title = "mlp", "fc", "MLP: widen"
    title = "Layer {layer}: MLP up-projection = ln_2 @ c_fc.weight + bias"
    note = "MLP up-projection to 4x the width: the normalised row times one column of mlp.c_fc.weight, plus bias."
    lesson = """
<p>The MLP (multi-layer perceptron) is the second half of every layer. It works on each
token on its own, like a small two-layer network applied row by row. First it widens each
row from {{ m.D }} to {{ 4 * m.D }} numbers with <code>c_fc</code>: think of each of the
{{ 4 * m.D }} columns as a detector that responds to some pattern in the token's vector.</p>
"""


class Gelu(Component):
    stage, kind, short_title = "mlp", "gelu", "MLP: GELU"
    lesson = """
<p>The non-linearity. GELU lets positive numbers through almost unchanged and squashes
negative ones towards zero, smoothly:
0.5&middot;x&middot;(1 + tanh(&radic;(2/&pi;)&middot;(x + 0.044715&middot;x&sup3;))), the
tanh form GPT-2 uses. It is what makes the detectors switch on and off: without it the
two linear layers of the MLP would collapse into a single one.</p>
"""

    def __init__(self, layout: Layout, positions: Positions, layer: int, x: Block):
        super().__init__(layout)
        self.positions, self.layer, self.x = positions, layer, x
        sheet, name = layer_sheet(layer, self.kind)
        self.add_sheet(sheet, f"Layer {layer}: GELU (tanh form) of the up-projection [{layout.T} x {x.n_cols}]")
        self.out = self.add_block(name, layout.T, x.n_cols, note=(
            "GELU activation (GPT-2's tanh form): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."))
        self.read(x)

    def compute(self, v: Values) -> None:
        v[self.out.name] = gelu(v[self.x.name])  # [T, 4D]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        x = self.x.at(0, 0)
        yield Formula(self.out, f"0.5*{x}*(1+TANH(SQRT(2/PI())*({x}+0.044715*{x}^3)))")
        yield self.positions.labels(self.out)
        yield numbered_header(self.out)


class MlpDown(Linear):
    stage, kind, short_title = "mlp", "mlp_proj", "MLP: narrow back"
    title = "Layer {layer}: MLP down-projection = gelu @ c_proj.weight + bias"
    note = ("MLP down-projection back to the model width: the GELU row times one column of "
            "mlp.c_proj.weight, plus bias.")
    lesson = """
<p>Back from {{ 4 * m.D }} to {{ m.D }} numbers with the MLP's <code>c_proj</code>: the
detectors that fired write their contribution into the token's vector.</p>
"""


class MlpResidual(Residual):
    stage, kind, short_title = "mlp", "resid_2", "Residual add: MLP"
    title = "Layer {layer}: residual: resid_1 + MLP output = the layer's output"
    note = ("Residual connection: the stream plus what the MLP adds (plus the steering vector, if the next layer "
            "is the steering layer). This is the layer's output.")

    @property
    def steers(self) -> int:
        return self.layer + 1
    lesson = """
<p>The MLP's output is added to the stream. This sum is the output of layer {{ layer }}
and the input of {% if layer + 1 < m.n_layer %}layer {{ layer + 1 }}{% else %}the final
layer norm{% endif %}. If the steering layer on sheet <code>controls</code> is
{{ layer + 1 }}, the steering vector times its coefficient is added here too.</p>
"""
