"""GPT-2 configuration and weights: one small typed structure used by every stage."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class GPT2Config:
    n_layer: int
    n_head: int
    n_embd: int
    n_ctx: int  # maximum positions (Hugging Face: n_positions)
    vocab_size: int
    layer_norm_epsilon: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "GPT2Config":
        """From a Hugging Face config.json or a workbook's metadata (n_positions or n_ctx).
        Raises KeyError for a missing field, TypeError/ValueError for a bad value."""
        n_ctx = raw["n_positions"] if "n_positions" in raw else raw["n_ctx"]
        return cls(n_layer=int(raw["n_layer"]), n_head=int(raw["n_head"]), n_embd=int(raw["n_embd"]),
                   n_ctx=int(n_ctx), vocab_size=int(raw["vocab_size"]),
                   layer_norm_epsilon=float(raw.get("layer_norm_epsilon", 1e-5)))


def param_shapes(cfg: GPT2Config) -> dict[str, tuple[int, ...]]:
    """Every parameter of a GPT-2 model in checkpoint order, keyed by its GPT-2 name.

    Conv1D weights are stored [in, out] (x @ W), as in the original checkpoints.
    """
    d, v = cfg.n_embd, cfg.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (v, d), "wpe.weight": (cfg.n_ctx, d)}
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        shapes |= {
            p + "ln_1.weight": (d,), p + "ln_1.bias": (d,),
            p + "attn.c_attn.weight": (d, 3 * d), p + "attn.c_attn.bias": (3 * d,),
            p + "attn.c_proj.weight": (d, d), p + "attn.c_proj.bias": (d,),
            p + "ln_2.weight": (d,), p + "ln_2.bias": (d,),
            p + "mlp.c_fc.weight": (d, 4 * d), p + "mlp.c_fc.bias": (4 * d,),
            p + "mlp.c_proj.weight": (4 * d, d), p + "mlp.c_proj.bias": (d,),
        }
    shapes |= {"ln_f.weight": (d,), "ln_f.bias": (d,)}
    return shapes


@dataclass
class GPT2Weights:
    """A GPT-2 checkpoint: its config and arrays named as in `param_shapes`.

    Arrays are float32 (a checkpoint) or float64 (weights read back from a workbook, which
    the spreadsheet computes with exactly as written); anything else becomes float32.
    """

    config: GPT2Config
    params: dict[str, np.ndarray] = field(repr=False)

    def __post_init__(self) -> None:
        expected = param_shapes(self.config)
        missing = sorted(set(expected) - set(self.params))
        if missing:
            raise ValueError(f"checkpoint is missing {len(missing)} parameters, e.g. {missing[0]}")
        for name, shape in expected.items():
            arr = self.params[name]
            if tuple(arr.shape) != shape:
                raise ValueError(f"parameter {name} has shape {tuple(arr.shape)}, expected {shape}")
            if arr.dtype not in (np.float32, np.float64):
                self.params[name] = arr.astype(np.float32)
        # keep only known parameters, in checkpoint order
        self.params = {name: self.params[name] for name in expected}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.params[name]

    @property
    def n_params(self) -> int:
        return sum(a.size for a in self.params.values())
