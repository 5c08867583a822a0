"""NumPy reference forward pass of GPT-2, in float64 from the float32 weights: the
components' own computations (see steps/), composed in the architecture's order.

Returns every step keyed by its block name, in forward order, already shaped as the
workbook block that holds it: per-head matrices are stacked along rows ([n_head * T, T]),
keys are transposed ([D, T]), per-row statistics are columns. Masked (future) attention
scores are NaN: the workbook leaves those cells empty.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .architectures import lay_out
from .layout import Layout
from .model import GPT2Weights
from .steps.layer_norm import layer_norm
from .steps.mlp import gelu

__all__ = ["forward", "gelu", "layer_norm"]


def forward(weights: GPT2Weights, ids: Sequence[int], layout: Layout | None = None,
            given: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Run the model on token ids; return every step as a float64 2-D array, in forward order.

    given: a typed-prompt book's inputs besides the weights (the prompt text, the merge
    table, the override cells): the steps then start from the prompt, `ids` only sets T.
    What the components worked out for the cells outside the steps (keys starting "_")
    and `given` come back too."""
    cfg = weights.config
    ids = np.asarray(ids, dtype=np.int64)
    if not 1 <= len(ids) <= cfg.n_ctx:
        raise ValueError(f"need 1 to {cfg.n_ctx} tokens, got {len(ids)}")
    if ids.min() < 0 or ids.max() >= cfg.vocab_size:
        raise ValueError(f"token ids must be in 0..{cfg.vocab_size - 1}")
    layout = layout or lay_out(cfg, len(ids))
    v = {block.name: np.asarray(weights[param], dtype=np.float64).reshape(block.shape)  # no copy if float64
         for param, block in layout.weights.items()}
    v[layout.blocks["tokens"].name] = ids.astype(np.float64)[:, None]  # [T, 1]
    if layout.typed_prompt and (given is None or "prompt" not in given):
        raise ValueError("a typed-prompt layout computes from its prompt: pass given=")
    v.update(given or {})
    components = layout.components
    for component in components:
        component.compute(v)
    if layout.loops:  # the generated ids feed the model again until they stop changing
        start = next(k for k, c in enumerate(components) if c.kind == "tokens")  # the prompt is tokenized once
        for _ in range(layout.T):  # each pass settles one more position at least
            before = v["tokens"].copy()
            for component in components[start:]:
                component.compute(v)
            if np.array_equal(before, v["tokens"]):
                break
    out = {name: v[name] for name in layout.steps}
    out.update((k, x) for k, x in v.items() if k.startswith("_") or k in (given or {}))
    return out
