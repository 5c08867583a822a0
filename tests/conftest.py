"""Fixtures shared by the whole test suite."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import END_OF_TEXT, write_bpe_vocab

HF_N_POSITIONS = 64


@pytest.fixture(scope="session")
def hf_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random GPT-2 saved by transformers (model.safetensors + config.json) with its own
    ~360-token byte-level BPE vocabulary (vocab.json + merges.txt)."""
    import json

    import torch
    import transformers

    path = tmp_path_factory.mktemp("hf_gpt2")
    vocab_size = write_bpe_vocab(path)
    eot = json.loads((path / "vocab.json").read_text(encoding="utf-8"))[END_OF_TEXT]
    cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=HF_N_POSITIONS,
                                  vocab_size=vocab_size, bos_token_id=eot, eos_token_id=eot)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    # HF initialises biases to 0 and layer norms to (1, 0): randomise everything so that a
    # swapped or dropped parameter cannot go unnoticed, and scale up so attention is not uniform
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name or "ln_f" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.2 if name.endswith("weight") else 0.1)
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="session")
def hf_model(hf_model_dir: Path):
    """The model saved in hf_model_dir, reloaded (float32, eval, eager attention so that
    attention probabilities can be returned)."""
    import transformers

    model = transformers.GPT2LMHeadModel.from_pretrained(hf_model_dir, attn_implementation="eager")
    return model.eval()
