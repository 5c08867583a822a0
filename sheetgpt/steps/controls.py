"""The controls every book has, one edit away from plain GPT-2: a switch per attention head,
a steering vector with its coefficient and layer, and the prediction's temperature."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..layout import FIRST_COL, FIRST_ROW, Block, Layout
from ..xlsx import Style
from .base import BuildInputs, Cells, Component, Constants, Formula, Shown, Values, column, header, labels_column

CONTROLS = ("head_switches", "steer_coef", "steer_layer", "steer_vector", "temperature")  # their block names
TEMPERATURE_OK = "OK"
TEMPERATURE_BAD = "the temperature must be a number above 0: the prediction divides the logits by it"


def defaults(layout: Layout) -> Values:
    """The controls of plain GPT-2: every head on, no steering, temperature 1."""
    cfg = layout.cfg
    return {"head_switches": np.ones((cfg.n_layer, cfg.n_head)), "steer_coef": np.zeros((1, 1)),
            "steer_layer": np.zeros((1, 1)), "steer_vector": np.zeros((1, cfg.n_embd)),
            "temperature": np.ones((1, 1))}


class Controls(Component):
    stage, kind, short_title = "input", "controls", "Controls: switches, steering, temperature"
    lesson = """
<p>Interpretability researchers learn what a model does by changing it and watching.
This sheet holds the changes that teach the most, each one cell away:</p>
<ul>
  <li><b>Head switches</b>: one cell per layer (row) and head (column). 1 keeps the head,
  0 switches it off, any number in between turns it down. The head's output is multiplied
  by it before the attention projection.</li>
  <li><b>Steering</b>: a vector of {{ m.D }} numbers added, times the coefficient, to the
  residual stream at every position as it enters the chosen layer (layer {{ m.n_layer }}:
  after the last one). Built with <code>--steer "TEXT A" "TEXT B"</code> it is the
  difference of the two texts' streams there: push the model from B towards A.</li>
  <li><b>Temperature</b>: the prediction divides the logits by it before the softmax.
  Below 1 the favourite grows more certain, above 1 the choice spreads out. The greedy
  choice itself does not change; a book that draws its tokens (<code>--sample</code>)
  draws them at this temperature.</li>
</ul>
<p>At 1, 0 and 1 the book computes plain GPT-2.</p>
"""

    def __init__(self, layout: Layout):
        super().__init__(layout)
        cfg = layout.cfg
        L, H, D = cfg.n_layer, cfg.n_head, cfg.n_embd
        self.add_sheet("controls", f"Controls: head switches [{L} layers x {H} heads], steering vector [{D}], "
                                   "temperature (yellow cells: edit them)")
        self.switches = self.add_block("head_switches", L, H, step=False, note=(
            "1: the head works as trained; 0: switched off; in between: turned down. The head's output is "
            "multiplied by this before the attention projection."))
        row = FIRST_ROW + L + 1
        self.coef = self.add_block("steer_coef", 1, 1, row=row, step=False, note=(
            "How much of the steering vector is added to the residual stream (0: none)."))
        self.layer = self.add_block("steer_layer", 1, 1, row=row + 1, step=False, note=(
            f"The layer whose input gets the steering vector: 0 to {L} ({L}: after the last layer)."))
        self.temperature = self.add_block("temperature", 1, 1, row=row + 2, step=False, note=(
            "The prediction's softmax divides the logits by this (above 0; 1: as trained)."))
        self.temperature_status = self.temperature.part(col=FIRST_COL + 1)
        self.vector = self.add_block("steer_vector", 1, D, row=row + 5, step=False, note=(
            "Added to every position's residual stream, times the coefficient, as it enters the steering layer."))

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        given = defaults(self.layout) | dict(inputs.controls or {})
        for blk in (self.switches, self.coef, self.layer, self.temperature, self.vector):
            yield from _inputs(blk, given[blk.name])
        L = self.switches.n_rows
        yield column(labels_column(self.switches), (f"layer {i}" for i in range(L)))
        yield header(self.switches, [f"head {h}" for h in range(self.switches.n_cols)])
        yield column(labels_column(self.coef.part(n_rows=3)), ["steering coefficient", "steering layer",
                                                               "temperature"], Style.HEADER)
        yield Formula(self.temperature_status, f'IF(AND(ISNUMBER(temperature),temperature>0),"{TEMPERATURE_OK}",'
                                               f'"{TEMPERATURE_BAD}")', Style.DEFAULT,
                      shows=Shown("temperature_status",
                                  lambda v, vocab: [temperature_status(v[self.temperature.name][0, 0])]))
        yield header(self.vector, list(range(self.vector.n_cols)))
        yield column(labels_column(self.vector), ["steering vector"], Style.HEADER)

    def compute(self, v: Values) -> None:
        for name, value in defaults(self.layout).items():
            v.setdefault(name, value)

    def switch_cell(self, layer: int, head: int) -> str:
        return self.switches.span(layer, head, layer, head, True, True)

    def steering(self, stream: Block, layer: int) -> str:
        """The term a residual-stream formula adds: the steering vector where `layer` is the
        steering layer (the stream's columns line up with the vector's)."""
        assert stream.col == self.vector.col, "a stream's column j must meet the vector's column j"
        return f"+IF({self.layer.name}={layer},{self.coef.name}*{self.vector.span(0, 0, 0, 0, True, False)},0)"

    def steering_of(self, v: Values, layer: int) -> np.ndarray | float:
        """What the steering adds to the stream entering `layer` ([1, D], or 0)."""
        return v[self.coef.name][0, 0] * v[self.vector.name] if v[self.layer.name][0, 0] == layer else 0.0


def temperature_status(t: float) -> str:
    """What the temperature cell's status says of temperature t."""
    return TEMPERATURE_OK if np.isfinite(t) and t > 0 else TEMPERATURE_BAD


def _inputs(blk: Block, values: np.ndarray) -> Iterable[Cells]:
    yield Constants(blk, np.asarray(values, dtype=np.float64).reshape(blk.shape).tolist(), Style.INPUT, given=True)

