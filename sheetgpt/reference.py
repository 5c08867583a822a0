"""NumPy reference forward pass of GPT-2, in float64 from the float32 weights.

Returns the logits and every intermediate, keyed by step name and already shaped as
the workbook block that holds it (see layout.py): per-head matrices are stacked along
rows ([n_head * T, T]), keys are transposed ([D, T]), per-row statistics are columns.
Masked (future) attention scores are NaN: the workbook leaves those cells empty.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .model import GPT2Weights

TOP_K = 5


def gelu(x: np.ndarray) -> np.ndarray:
    """tanh approximation, as in GPT-2."""
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float):
    """x [T, D] -> mean [T, 1], population variance [T, 1], normalised x*g+b [T, D]."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return mean, var, (x - mean) / np.sqrt(var + eps) * g + b


def attention(qkv: np.ndarray, n_head: int) -> dict[str, np.ndarray]:
    """qkv [T, 3D] -> causal multi-head attention steps."""
    T, D = qkv.shape[0], qkv.shape[1] // 3
    dh = D // n_head
    q, k, v = np.split(qkv, 3, axis=-1)  # [T, D] each
    heads = lambda x: x.reshape(T, n_head, dh).transpose(1, 0, 2)  # [T, D] -> [H, T, dh]
    qh, kh, vh = heads(q), heads(k), heads(v)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)  # [T, T], True where s > t
    scores = qh @ kh.transpose(0, 2, 1) / np.sqrt(dh)  # [H, T, T]
    scores[:, future] = np.nan
    row_max = np.nanmax(scores, axis=-1, keepdims=True)  # [H, T, 1]
    e = np.where(future, 0.0, np.exp(scores - row_max))  # [H, T, T]
    row_sum = e.sum(axis=-1, keepdims=True)  # [H, T, 1]
    probs = e / row_sum  # [H, T, T]
    out = (probs @ vh).transpose(1, 0, 2).reshape(T, D)  # [H, T, dh] -> [T, D]
    stack = lambda x: x.reshape(n_head * T, -1)  # [H, T, n] -> [H*T, n]
    return {
        "kT": k.T,  # [D, T]
        "scores": stack(scores),
        "softmax_max": stack(row_max),
        "softmax_exp": stack(e),
        "softmax_sum": stack(row_sum),
        "probs": stack(probs),
        "attn": out,
    }


def forward(weights: GPT2Weights, ids: Sequence[int]) -> dict[str, np.ndarray]:
    """Run GPT-2 on token ids; return every step as a float64 2-D array, in forward order."""
    cfg, w = weights.config, {k: np.asarray(v, dtype=np.float64) for k, v in weights.params.items()}  # no copy if float64
    ids = np.asarray(ids, dtype=np.int64)
    T = len(ids)
    if T < 1 or T > cfg.n_ctx:
        raise ValueError(f"need 1 to {cfg.n_ctx} tokens, got {T}")
    if ids.min() < 0 or ids.max() >= cfg.vocab_size:
        raise ValueError(f"token ids must be in 0..{cfg.vocab_size - 1}")
    eps = cfg.layer_norm_epsilon
    out: dict[str, np.ndarray] = {}
    out["embed_tok"] = w["wte.weight"][ids]  # [T, D]
    x = out["embed"] = out["embed_tok"] + w["wpe.weight"][:T]  # [T, D]
    for i in range(cfg.n_layer):
        p, s = f"h.{i}.", f"h{i}_"
        out[s + "ln_1_mean"], out[s + "ln_1_var"], h = layer_norm(
            x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        out[s + "ln_1"] = h
        qkv = out[s + "qkv"] = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]  # [T, 3D]
        for name, arr in attention(qkv, cfg.n_head).items():
            out[s + name] = arr
        a = out[s + "attn_proj"] = out[s + "attn"] @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        x = out[s + "resid_1"] = x + a  # [T, D]
        out[s + "ln_2_mean"], out[s + "ln_2_var"], h = layer_norm(
            x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        out[s + "ln_2"] = h
        f = out[s + "fc"] = h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]  # [T, 4D]
        g = out[s + "gelu"] = gelu(f)  # [T, 4D]
        m = out[s + "mlp_proj"] = g @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]  # [T, D]
        x = out[s + "resid_2"] = x + m  # [T, D]
    out["ln_f_mean"], out["ln_f_var"], out["ln_f"] = layer_norm(x, w["ln_f.weight"], w["ln_f.bias"], eps)
    logits = out["ln_f"][-1] @ w["wte.weight"].T  # [V], tied unembedding, last position only
    out["logits"] = logits[:, None]  # [V, 1]
    out.update(next_token(logits))
    return out


def next_token(logits: np.ndarray, k: int = TOP_K) -> dict[str, np.ndarray]:
    """Softmax over the vocabulary and the top-k next tokens, each a column [k, 1]."""
    m = logits.max()
    e = np.exp(logits - m)  # [V]
    total = e.sum()
    # ties: the spreadsheet's MATCH finds the lowest id, and a stable sort on -logit does too
    top = np.argsort(-logits, kind="stable")[:k]  # [k]
    return {
        "next_max": np.array([[m]]),
        "next_sum": np.array([[total]]),
        "next_probs": (e / total)[:, None],  # [V, 1]
        "top_logits": logits[top][:, None],
        "top_ids": top.astype(np.float64)[:, None],
        "top_probs": (e[top] / total)[:, None],
    }
