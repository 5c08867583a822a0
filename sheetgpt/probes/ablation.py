"""Switching a head off, as a lesson picture on the controls' page: every head of the last
layer is switched off in turn (in the reference, which check proves equal to the book's
formulas) and the one that moves the prediction most is drawn, before and after. The book
itself needs no cells for it: its head switches are the controls."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..steps.controls import Controls
from .base import Probe

if TYPE_CHECKING:
    from ..lesson import Figure
    from ..readback import BookContents


def head_off(book: BookContents, step: Controls, facts: dict, out: Path) -> list[tuple[str, Figure]]:
    """The prediction before and after switching off the last layer's head that moves it most."""
    from .. import figures
    from ..lesson import BARS, IMG_DIR, Figure, visible
    from ..reference import forward
    from ..steps.prediction import Prediction, top_k

    prediction = book.layout.find(Prediction).probs
    layer, before = book.layout.cfg.n_layer - 1, book[prediction.name][:, 0]
    best = None
    for head in range(book.layout.cfg.n_head):
        given = book.given()
        switches = given[step.switches.name] = given[step.switches.name].copy()
        switches[layer, head] = 0.0
        after = forward(book.weights, book.ids, layout=book.layout, given=given)[prediction.name][:, 0]
        change = float(np.abs(after - before).sum())
        if best is None or change > best[0]:
            best = (change, head, after)
    _, head, after = best
    top = top_k(before, BARS)
    src = f"{IMG_DIR}/controls-before-after.png"
    what = f"head {head} of layer {layer} switched off"
    figures.before_after([visible(book.token_text(int(i))) for i in top], [float(before[i]) for i in top],
                         [float(after[i]) for i in top], what, out / src)
    return [(step.sheet.name, Figure(src, f"The prediction before and after switching off head {head} of layer "
                                          f"{layer}", f"Type 0 into head_switches for layer {layer}, head {head}: "
                                          f"the top {BARS} tokens' probabilities move like this (of the last "
                                          "layer's heads, the one that moves them most)."))]


PROBE = Probe("head_off", "a lesson picture: the last layer's head that moves the prediction most, switched off",
              option=False, figures={Controls.kind: head_off})
