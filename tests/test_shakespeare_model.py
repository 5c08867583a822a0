"""The bundled Shakespeare model (sheetgpt/data/shakespeare, made by training/train_shakespeare.py):
transformers and sheetgpt's reference agree on it, it reaches its held-out loss, and the ids it
never saw share one embedding row."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import assert_close
from sheetgpt import reference
from sheetgpt.load import load_model
from sheetgpt.tokenizer import Tokenizer

DIR = Path(__file__).resolve().parents[1] / "sheetgpt" / "data" / "shakespeare"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "tinyshakespeare.txt"
PROMPT = "ROMEO:\nWhat light"
MAX_HELDOUT_LOSS = 4.8  # nats/token, the target of issue #11
N_CTX = 128


@pytest.fixture(scope="module")
def hf_model():
    import transformers

    model, info = transformers.GPT2LMHeadModel.from_pretrained(DIR, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model.eval()


@pytest.fixture(scope="module")
def corpus_ids() -> np.ndarray | None:
    """GPT-2 ids of the training corpus, or None if it is not at <repo>/../shared/corpus."""
    if not CORPUS.is_file():
        return None
    return np.array(Tokenizer.gpt2().encode(CORPUS.read_text(encoding="utf-8")), dtype=np.int64)


def test_files():
    assert sorted(p.name for p in DIR.iterdir()) == ["config.json", "model.safetensors"]


def test_reference_matches_transformers(hf_model):
    loaded = load_model(str(DIR))
    cfg = loaded.weights.config
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_ctx, cfg.vocab_size) == (4, 4, 64, 128, 50257)
    ids = loaded.tokenizer.encode(PROMPT)
    ours = reference.forward(loaded.weights, ids)["logits"][:, 0]
    model64 = hf_model.to(torch.float64)
    try:
        with torch.no_grad():
            theirs = model64(torch.tensor([ids])).logits[0, -1].numpy()
    finally:
        hf_model.to(torch.float32)
    assert_close(ours, theirs, 1e-9, "logits")


def test_heldout_loss(hf_model, corpus_ids):
    """Mean cross-entropy over the last 10% of the tokens (all but the first), in non-overlapping
    128-token windows, float32 — as training/train_shakespeare.py measures it."""
    if corpus_ids is None:
        pytest.skip(f"corpus not found at {CORPUS} (it is not part of the repository)")
    heldout = corpus_ids[int(len(corpus_ids) * 0.9):]
    total, count = 0.0, 0
    starts = list(range(0, len(heldout) - 1, N_CTX))
    with torch.no_grad():
        for i in range(0, len(starts), 16):
            for group in ([s for s in starts[i:i + 16] if s + N_CTX <= len(heldout) - 1],
                          [s for s in starts[i:i + 16] if s + N_CTX > len(heldout) - 1]):
                if not group:
                    continue
                n = min(N_CTX, len(heldout) - 1 - group[0])
                x = torch.from_numpy(np.stack([heldout[s:s + n] for s in group]))
                y = torch.from_numpy(np.stack([heldout[s + 1:s + n + 1] for s in group]))
                logits = hf_model(x).logits
                total += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
                count += y.numel()
    assert count == len(heldout) - 1
    loss = total / count
    assert loss <= MAX_HELDOUT_LOSS, f"held-out loss {loss:.4f} > {MAX_HELDOUT_LOSS}"


def test_unseen_ids_share_one_row(corpus_ids):
    from safetensors.numpy import load_file

    wte = load_file(DIR / "model.safetensors")["transformer.wte.weight"]
    assert wte.shape == (50257, 64)
    occurs = np.zeros(len(wte), dtype=bool)
    if corpus_ids is not None:
        occurs[corpus_ids] = True
    else:  # without the corpus: the ids of the most common row never occur, and it has them all
        rows, inverse, counts = np.unique(wte, axis=0, return_inverse=True, return_counts=True)
        occurs = inverse.ravel() != counts.argmax()
        assert occurs.sum() <= 11706  # distinct GPT-2 ids in tiny Shakespeare
        assert occurs[Tokenizer.gpt2().encode(PROMPT)].all()
    never = wte[~occurs]
    assert len(never) > 38000
    assert (never == never[0]).all(), "ids that never occur in the corpus have different rows"
    seen = wte[occurs]
    assert not (seen == never[0]).all(axis=1).all(), "every id that occurs has the unseen row"
    assert len(np.unique(seen, axis=0)) > 11000  # nearly every id that occurs has its own row
