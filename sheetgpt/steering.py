"""Steering vectors for the controls sheet: made from the model itself (activation
addition: the difference of two texts' residual streams entering a layer) or read from
a .npy file (a direction found elsewhere, e.g. a sparse-autoencoder feature)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UserError
from .architectures import lay_out
from .load import LoadedModel
from .reference import forward


def stream_entering(model: LoadedModel, text: str, layer: int) -> np.ndarray:
    """The mean over a text's positions of the residual stream entering `layer` ([D];
    layer n_layer: leaving the last layer)."""
    cfg = model.weights.config  # the layer is checked where the options are read (jobs.Steering)
    ids = model.tokenizer.encode(text)
    if not 1 <= len(ids) <= cfg.n_ctx:
        raise UserError(f"--steer text {text!r}: give 1 to {cfg.n_ctx} tokens of text")
    steps = forward(model.weights, ids, layout=lay_out(cfg, len(ids)))
    return steps["embed" if layer == 0 else f"h{layer - 1}_resid_2"].mean(axis=0)  # [T, D] -> [D]


def steering_vector(model: LoadedModel, toward: str, away: str, layer: int) -> np.ndarray:
    """From `away` towards `toward`: their streams' difference entering `layer` ([D])."""
    return stream_entering(model, toward, layer) - stream_entering(model, away, layer)


def read_vector(path: Path, width: int) -> np.ndarray:
    """A steering vector from a .npy file: `width` finite numbers."""
    try:
        vector = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"--steer-vector {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise UserError(f"--steer-vector {path}: not a NumPy .npy array ({e})") from None
    if vector.dtype.kind not in "iuf" or vector.size != width or vector.squeeze().ndim > 1:
        raise UserError(f"--steer-vector {path}: need {width} numbers (the model's width), got an array of shape "
                        f"{vector.shape} and type {vector.dtype}")
    vector = vector.astype(np.float64).reshape(width)
    if not np.isfinite(vector).all():
        raise UserError(f"--steer-vector {path}: holds NaN or infinity, which a spreadsheet cannot store")
    return vector
