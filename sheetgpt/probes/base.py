"""The seam every probe plugs into. A probe is an optional part of a book that reads the
model (the logit lens), writes on after the prompt (generation), or only draws a lesson
picture (switching a head off). It is one module, declaring one `Probe`: its option, its
components, its lines on the Guide and its lesson pictures; and one line in
`probes/__init__.py` that registers it. The architecture composes the probes a book asks
for after its forward pass, the metadata records their options, the lesson draws their
pictures, and check compares their cells like every other cell.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from ..layout import Block, Layout
from ..steps.base import Component, Positions

if TYPE_CHECKING:
    from ..lesson import Figure
    from ..readback import BookContents
    from ..steps.controls import Controls
    from ..steps.guide import Guide
    from ..steps.layer_norm import LayerNorm
    from ..steps.prediction import Prediction
    from ..steps.prompt import PromptIds
    from ..steps.tokens import TokenIds, Vocabulary
    from ..steps.weights import Weights


@dataclass(frozen=True)
class Inputs:
    """What every part of the model reads besides the stream: weights, vocabulary, token ids
    and their positions, the controls; the typed prompt's tokenizer; and the Guide, which
    holds a typed prompt and shows the prediction."""

    weights: Weights
    vocab: Vocabulary
    tokens: TokenIds
    controls: Controls
    guide: Guide
    prompt: PromptIds | None = None

    @property
    def positions(self) -> Positions:
        return self.tokens.positions


@dataclass(frozen=True)
class Forward:
    """The composed forward pass, as a probe reads it."""

    inputs: Inputs
    positions: Positions  # the positions filled (after a probe that writes: the prompt's and its)
    streams: Sequence[Block]  # the residual stream entering each layer, then the last layer's output
    layers: Sequence[Sequence[Component]]  # each layer's components, in forward order
    ln_f: LayerNorm  # the final layer norm
    prediction: Prediction | None = None  # None for a probe that writes: it comes before the prediction

    @property
    def layer_outputs(self) -> Sequence[Block]:
        return self.streams[1:]


@dataclass(frozen=True)
class Written:
    """What a probe that writes composes: its components, and the positions then filled."""

    components: list[Component]
    positions: Positions


# (the book, the page's component, the lesson's facts, its directory) -> (sheet, picture) pairs
FigureMaker = Callable[["BookContents", Component, dict, Path], list[tuple[str, "Figure"]]]


def _no_lines(layout: Layout, value: int) -> list[str]:
    return []


@dataclass(frozen=True)
class Probe:
    """One optional part of a book; see the module docstring."""

    name: str  # its option: --NAME on the command line, a row of the metadata sheet, BookOptions.probes
    help: str  # the option's help on the command line
    compose: Callable[[Layout, Forward, int], list[Component] | Written] | None = None  # None: no cells
    default: int = 0  # build's value when the command line does not say (0: off)
    count: bool = False  # the option is a number (--generate K), not a switch (--lens / --no-lens)
    short: str | None = None  # a one-letter flag too (-g)
    writes: bool = False  # it writes `value` tokens after the prompt: composed before the prediction
    option: bool = True  # False: in every book, with no option (a lesson picture of the controls)
    guide: Callable[[Layout, int], list[str]] = _no_lines  # its lines in the Guide's how-to
    figures: Mapping[str, FigureMaker] = field(default_factory=dict)  # lesson pictures, by page kind
    written: Callable[["BookContents"], list[int]] | None = None  # the ids it wrote (eval shows their text)
    needs: str | None = None  # the probe it is an option of (sampling: generation)
