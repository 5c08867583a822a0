"""Model loading: Hugging Face directories in every supported layout, random models, errors."""
from __future__ import annotations

import itertools
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from sheetgpt import load
from sheetgpt.errors import UserError
from sheetgpt.load import (MODEL_NAMES, SMALL_CONFIG, TINY_CONFIG, load_checkpoint_dir, load_model, random_arrays,
                           random_weights)
from sheetgpt.model import param_shapes
from helpers import SAMPLE_TEXT


def torch_params(hf_model, dtype: torch.dtype = torch.float32) -> dict[str, np.ndarray]:
    """The HF state dict named as in param_shapes, rounded through dtype, as float32."""
    return {k.removeprefix("transformer."): v.to(dtype).float().numpy()
            for k, v in hf_model.state_dict().items() if k != "lm_head.weight"}


def assert_same_params(weights, expected: dict[str, np.ndarray]) -> None:
    assert list(weights.params) == list(param_shapes(weights.config))
    for name, arr in weights.params.items():
        assert arr.dtype == np.float32
        np.testing.assert_array_equal(arr, expected[name], err_msg=name)


def copy_dir(src: Path, dst: Path, with_weights: bool = False) -> Path:
    """A copy of a model directory, without its weights unless asked."""
    shutil.copytree(src, dst, ignore=None if with_weights else shutil.ignore_patterns("*.safetensors", "*.bin"))
    return dst


def edit_config(path: Path, **changes) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


# --- Hugging Face directories --------------------------------------------------------


def test_safetensors_dir_bit_identical(hf_model_dir, hf_model):
    weights = load_checkpoint_dir(hf_model_dir)
    cfg = weights.config
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_ctx) == (2, 2, 32, 64)
    assert cfg.vocab_size == hf_model.config.vocab_size and cfg.layer_norm_epsilon == 1e-5
    assert_same_params(weights, torch_params(hf_model))


def test_load_model_dir_uses_own_tokenizer(hf_model_dir):
    m = load_model(str(hf_model_dir))
    assert m.name == str(hf_model_dir) and not m.random
    assert m.tokenizer.vocab_size == m.weights.config.vocab_size < 1000
    ids = m.tokenizer.encode(SAMPLE_TEXT)
    assert len(ids) < len(SAMPLE_TEXT.encode()) / 2  # the learned merges are used
    assert m.tokenizer.decode(ids) == SAMPLE_TEXT


def test_unprefixed_layout(hf_model_dir, hf_model, tmp_path):
    """Original GPT-2 checkpoints name parameters h.0.attn... (no transformer. prefix)."""
    path = copy_dir(hf_model_dir, tmp_path / "m")
    tensors = load_file(hf_model_dir / "model.safetensors")
    save_file({k.removeprefix("transformer."): v for k, v in tensors.items()}, path / "model.safetensors")
    assert_same_params(load_checkpoint_dir(path), torch_params(hf_model))


def causal_buffers(n_layer: int, n: int, prefix: str) -> dict[str, torch.Tensor]:
    """The attn.bias / attn.masked_bias buffers that old checkpoints carry."""
    mask = torch.tril(torch.ones(n, n, dtype=torch.bool)).view(1, 1, n, n)
    return {name: t for i in range(n_layer) for name, t in
            [(f"{prefix}h.{i}.attn.bias", mask), (f"{prefix}h.{i}.attn.masked_bias", torch.tensor(-1e4))]}


@pytest.mark.parametrize("prefix", ["transformer.", ""])
def test_pytorch_bin_dir(hf_model_dir, hf_model, tmp_path, prefix):
    path = copy_dir(hf_model_dir, tmp_path / "m")
    state = {k.replace("transformer.", prefix): v for k, v in hf_model.state_dict().items()}
    assert "lm_head.weight" in state  # tied copy: must be accepted
    torch.save(state | causal_buffers(2, 64, prefix), path / "pytorch_model.bin")
    assert_same_params(load_checkpoint_dir(path), torch_params(hf_model))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_half_precision_converts(hf_model_dir, hf_model, tmp_path, dtype, fmt):
    path = copy_dir(hf_model_dir, tmp_path / "m")
    state = {k: v.to(dtype) for k, v in hf_model.state_dict().items() if k != "lm_head.weight"}
    if fmt == "safetensors":
        from safetensors.torch import save_file as save_torch
        save_torch(state, path / "model.safetensors")
    else:
        torch.save(state, path / "pytorch_model.bin")
    assert_same_params(load_checkpoint_dir(path), torch_params(hf_model, dtype))


def test_safetensors_preferred_over_bin(hf_model_dir, hf_model, tmp_path):
    path = copy_dir(hf_model_dir, tmp_path / "m", with_weights=True)
    (path / "pytorch_model.bin").write_bytes(b"not read")
    assert_same_params(load_checkpoint_dir(path), torch_params(hf_model))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weight_rejected(hf_model_dir, tmp_path, bad):
    path = copy_dir(hf_model_dir, tmp_path / "m")
    tensors = load_file(hf_model_dir / "model.safetensors")
    tensors["transformer.h.1.mlp.c_fc.weight"][3, 5] = bad
    save_file(tensors, path / "model.safetensors")
    with pytest.raises(UserError, match=r"h\.1\.mlp\.c_fc\.weight.*cannot hold"):
        load_checkpoint_dir(path)


def test_untied_lm_head_rejected(hf_model_dir, tmp_path):
    path = copy_dir(hf_model_dir, tmp_path / "m")
    tensors = load_file(hf_model_dir / "model.safetensors")
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"] * 2
    save_file(tensors, path / "model.safetensors")
    with pytest.raises(UserError, match="untied"):
        load_checkpoint_dir(path)


def test_pytorch_bin_without_torch(hf_model_dir, hf_model, tmp_path, monkeypatch):
    path = copy_dir(hf_model_dir, tmp_path / "m")
    torch.save(hf_model.state_dict(), path / "pytorch_model.bin")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(UserError, match="pytorch_model.bin.*torch.*safetensors"):
        load_checkpoint_dir(path)


def remove(path: Path, *names: str) -> None:
    for name in names:
        (path / name).unlink()


def corrupt(path: Path, name: str) -> None:
    (path / name).write_bytes(b"\x00garbage" * 10)


@pytest.mark.parametrize("damage, message", [
    (lambda p: remove(p, "config.json"), "no config.json"),
    (lambda p: remove(p, "model.safetensors"), "no model.safetensors or pytorch_model.bin"),
    (lambda p: corrupt(p, "model.safetensors"), "model.safetensors: corrupt"),
    (lambda p: corrupt(p, "config.json"), "config.json: cannot read"),
    (lambda p: (remove(p, "model.safetensors"), corrupt(p, "pytorch_model.bin")), "pytorch_model.bin: corrupt"),
    (lambda p: corrupt(p, "vocab.json"), "vocab.json"),
    (lambda p: remove(p, "merges.txt"), "no merges.txt"),
    (lambda p: remove(p, "vocab.json", "merges.txt"), "not GPT-2's 50257"),
    (lambda p: edit_config(p, activation_function="relu"), "activation_function 'relu'"),
    (lambda p: edit_config(p, model_type="llama"), "only gpt2"),
    (lambda p: edit_config(p, vocab_size=400), "wte.weight has shape"),
    (lambda p: edit_config(p, n_layer=3), "missing"),
])
def test_bad_directory(hf_model_dir, tmp_path, damage, message):
    path = copy_dir(hf_model_dir, tmp_path / "m", with_weights=True)
    damage(path)
    with pytest.raises(UserError, match=message) as info:
        load_model(str(path))
    assert "\n" not in str(info.value)


def test_vocab_size_must_match_tokenizer(hf_model_dir, tmp_path):
    path = copy_dir(hf_model_dir, tmp_path / "m", with_weights=True)
    vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
    vocab["extra"] = len(vocab)  # one token more than the model's embedding rows
    (path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(UserError, match="vocab_size .* differs from the tokenizer"):
        load_model(str(path))


def test_n_ctx_field_accepted(hf_model_dir, tmp_path):
    """Old configs may only have n_ctx."""
    path = copy_dir(hf_model_dir, tmp_path / "m", with_weights=True)
    cfg = json.loads((path / "config.json").read_text())
    cfg["n_ctx"] = cfg.pop("n_positions")
    (path / "config.json").write_text(json.dumps(cfg))
    assert load_checkpoint_dir(path).config.n_ctx == 64


@pytest.mark.parametrize("spec", ["gpt3", "no/such/dir", ""])
def test_unknown_model(spec):
    with pytest.raises(UserError, match=r"unknown model .*use shakespeare, tiny, small-random, gpt2 or a directory"):
        load_model(spec)


# --- GPT-2 small from the Hub ----------------------------------------------------------


def test_gpt2_offline_fails_fast(tmp_path, monkeypatch):
    """No cached snapshot and no network: one clear line, quickly (never touches the network)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(UserError, match=r"^cannot download GPT-2 small .*use --model tiny") as info:
        load_model("gpt2", cache_dir=tmp_path)
    assert time.monotonic() - start < 30
    assert "\n" not in str(info.value)


def test_gpt2_uses_cached_snapshot(hf_model_dir, hf_model, tmp_path, monkeypatch):
    """A cached snapshot is loaded like any directory, without going online."""
    import huggingface_hub

    calls = []

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        assert kwargs["local_files_only"], "went online although the snapshot is cached"
        return str(hf_model_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    m = load_model("gpt2", cache_dir=tmp_path)
    assert m.name == "gpt2" and not m.random
    assert calls[0]["repo_id"] == "openai-community/gpt2" and calls[0]["cache_dir"] == tmp_path
    assert set(calls[0]["allow_patterns"]) == {"config.json", "model.safetensors", "vocab.json", "merges.txt"}
    assert_same_params(m.weights, torch_params(hf_model))


# --- random models ----------------------------------------------------------------------


def test_model_names():
    assert MODEL_NAMES == ("shakespeare", "tiny", "small-random", "gpt2")


def test_tiny_deterministic():
    m = load_model("tiny")
    assert m.random and m.name == "tiny" and m.tokenizer.vocab_size == 50257
    assert m.weights.config == TINY_CONFIG
    assert {k: a.shape for k, a in m.weights.params.items()} == param_shapes(TINY_CONFIG)
    fresh = random_weights.__wrapped__(TINY_CONFIG, load.RANDOM_SEED)  # bypass the cache
    assert_same_params(m.weights, fresh.params)
    other = random_weights.__wrapped__(TINY_CONFIG, load.RANDOM_SEED + 1)
    assert not np.array_equal(other["wte.weight"], m.weights["wte.weight"])


def test_tiny_init_statistics():
    w = load_model("tiny").weights
    assert abs(w["wte.weight"].std() - 0.02) < 1e-3 and abs(w["wpe.weight"].std() - 0.01) < 1e-3
    assert abs(w["h.1.ln_2.weight"].mean() - 1) < 0.1 and abs(w["ln_f.bias"].mean()) < 0.05
    assert abs(w["h.0.attn.c_attn.bias"].std() - 0.02) < 5e-3


def test_random_models_cached_and_read_only():
    a, b = load_model("tiny"), load_model("tiny")
    assert a.weights is b.weights
    with pytest.raises(ValueError):
        a.weights["wte.weight"][0, 0] = 1.0  # shared by every caller: must not be changed in place


def test_small_random():
    w = load_model("small-random").weights
    assert w.config == SMALL_CONFIG and w.n_params == 124_439_808  # GPT-2 small
    assert {k: a.shape for k, a in w.params.items()} == param_shapes(SMALL_CONFIG)
    assert all(a.dtype == np.float32 for a in w.params.values())
    # determinism: the first arrays of a fresh stream (regenerating all 124M values is slow)
    for name, arr in itertools.islice(random_arrays(SMALL_CONFIG, load.RANDOM_SEED), 2):
        np.testing.assert_array_equal(w[name], arr, err_msg=name)
    assert np.isfinite(w["h.11.mlp.c_proj.weight"]).all() and abs(w["ln_f.weight"].mean() - 1) < 0.02
