"""reference.forward against transformers' GPT2LMHeadModel (float64, same weights), plus
independent checks of its building blocks against torch."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import HF_N_POSITIONS
from helpers import SAMPLE_TEXT, assert_close
from sheetgpt import reference
from sheetgpt.load import load_model

RTOL = 1e-9
PROMPT_LENGTHS = [1, 7, HF_N_POSITIONS]


@pytest.fixture(scope="module")
def loaded(hf_model_dir):
    return load_model(str(hf_model_dir))


@pytest.fixture(scope="module")
def hf_model64(hf_model):
    return copy.deepcopy(hf_model).double()


@pytest.fixture(scope="module", params=PROMPT_LENGTHS, ids=lambda n: f"T{n}")
def run(request, loaded, hf_model64):
    """(ours, HF outputs, last block's output) for one prompt of the given length."""
    ids = loaded.tokenizer.encode(SAMPLE_TEXT * 2)[: request.param]
    assert len(ids) == request.param
    ours = reference.forward(loaded.weights, ids)
    last_block = []  # HF returns the last hidden state after ln_f: capture the block's own output
    hook = hf_model64.transformer.h[-1].register_forward_hook(
        lambda mod, args, out: last_block.append(out[0] if isinstance(out, tuple) else out))
    try:
        with torch.no_grad():
            hf = hf_model64(torch.tensor([ids]), output_hidden_states=True, output_attentions=True)
    finally:
        hook.remove()
    return ours, hf, last_block[0][0].numpy()


def test_logits(run):
    ours, hf, _ = run
    assert_close(ours["logits"][:, 0], hf.logits[0, -1].numpy(), RTOL, "logits")


def test_hidden_states(run, loaded):
    ours, hf, last_block = run
    n_layer = loaded.weights.config.n_layer
    hs = [h[0].numpy() for h in hf.hidden_states]
    assert len(hs) == n_layer + 1
    assert_close(ours["embed"], hs[0], RTOL, "embed")
    for i in range(n_layer - 1):
        assert_close(ours[f"h{i}_resid_2"], hs[i + 1], RTOL, f"h{i}_resid_2")
    last = f"h{n_layer - 1}_resid_2"
    assert_close(ours[last], last_block, RTOL, last)
    assert_close(ours["ln_f"], hs[-1], RTOL, "ln_f")  # transformers' last hidden state is after ln_f


def test_attention_probs(run, loaded):
    ours, hf, _ = run
    cfg = loaded.weights.config
    assert len(hf.attentions) == cfg.n_layer
    for i, att in enumerate(hf.attentions):
        att = att[0].numpy()  # [H, T, T]
        assert_close(ours[f"h{i}_probs"], att.reshape(cfg.n_head * att.shape[1], -1), RTOL, f"h{i}_probs")


def test_softmax_and_mask(run, loaded):
    ours, _, _ = run
    cfg = loaded.weights.config
    for i in range(cfg.n_layer):
        probs, scores = ours[f"h{i}_probs"], ours[f"h{i}_scores"]
        T = probs.shape[1]
        future = np.tile(np.triu(np.ones((T, T), dtype=bool), k=1), (cfg.n_head, 1))  # [H*T, T]
        np.testing.assert_array_equal(np.isnan(scores), future)
        assert (probs[future] == 0).all() and (probs[~future] > 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)


def test_next_token_probabilities(run):
    ours, _, _ = run
    logits = torch.tensor(ours["logits"][:, 0])
    assert_close(ours["next_probs"][:, 0], torch.softmax(logits, dim=0).numpy(), 1e-12, "next_probs")
    top = torch.topk(logits, 5)
    np.testing.assert_array_equal(ours["top_ids"][:, 0], top.indices.numpy())


def test_gelu_matches_torch():
    x = np.concatenate([np.linspace(-12, 12, 2001), [-1e3, -40.0, 0.0, 40.0, 1e3]])
    expected = torch.nn.functional.gelu(torch.tensor(x), approximate="tanh").numpy()
    # far left both are ~0 with different rounding (1 + tanh cancels): hence the atol
    np.testing.assert_allclose(reference.gelu(x), expected, rtol=1e-13, atol=1e-15)


def test_layer_norm_matches_torch():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(5, 48))
    g, b = rng.normal(1.0, 0.1, 48), rng.normal(0.0, 0.1, 48)
    mean, var, y = reference.layer_norm(x, g, b, 1e-5)
    t = torch.tensor(x)
    expected = torch.nn.functional.layer_norm(t, (48,), torch.tensor(g), torch.tensor(b), eps=1e-5)
    assert_close(y, expected.numpy(), 1e-13, "layer_norm")
    assert_close(mean, t.mean(dim=-1, keepdim=True).numpy(), 1e-13, "mean")
    assert_close(var, t.var(dim=-1, unbiased=False, keepdim=True).numpy(), 1e-13, "var")
