"""Direct logit attribution against transformers: every contribution (the embedding, each
head through its slice of c_proj, each projection bias, each MLP) equals one computed here
from transformers' float64 forward pass with hooks (the heads' merged output entering
c_proj, each MLP's output, the stream entering ln_f); the contributions add up to the
target's logit minus ln_f's bias term; a typed target id and a switched-off head change
exactly what they should."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import hf_with_book_weights
from sheetgpt.builder import build_workbook
from sheetgpt.check import check_workbook
from sheetgpt.engines import CellOverride
from sheetgpt.engines.fast import Recalculation
from sheetgpt.layout import BookOptions
from sheetgpt.load import load_model
from sheetgpt.readback import load_book

PROMPT = "The model is small"
NAMES = ("dla_embed", "dla_heads", "dla_attn_bias", "dla_mlp", "dla_logit", "dla_bias_term", "dla_sum")


@pytest.fixture(scope="module")
def model(hf_model_dir):
    return load_model(str(hf_model_dir))


@pytest.fixture(scope="module", params=["fixed", "typed"])
def dla_book(request, model, tmp_path_factory) -> Path:
    """A book of fixed ids (the last position predicts) and a typed one with padding after
    the prompt (the last filled position predicts)."""
    path = tmp_path_factory.mktemp("dla") / f"{request.param}.xlsx"
    typed = request.param == "typed"
    build_workbook(model, PROMPT, path, progress=False, typed_prompt=typed, positions=10 if typed else None,
                   options=BookOptions(probes={"dla": 1}))
    return path


@pytest.fixture(scope="module")
def hf64(hf_model, dla_book):
    return hf_with_book_weights(hf_model, dla_book)


def by_hooks(hf, ids: list[int], target: int | None = None, head_off: tuple[int, int] | None = None) -> dict:
    """The attribution of transformers' forward pass, worked out here from what hooks see."""
    import torch
    cfg = hf.config
    dh, blocks, seen = cfg.n_embd // cfg.n_head, hf.transformer.h, {}

    def heads_in(layer):
        def pre(module, args):
            x = args[0].clone()
            if head_off is not None and head_off[0] == layer:
                x[..., head_off[1] * dh:(head_off[1] + 1) * dh] = 0.0
            seen[f"z{layer}"] = x[0, -1].numpy()
            return (x,)
        return pre

    hooks = [b.attn.c_proj.register_forward_pre_hook(heads_in(i)) for i, b in enumerate(blocks)]
    hooks += [b.mlp.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(f"mlp{i}", out[0, -1].numpy()))
              for i, b in enumerate(blocks)]
    hooks.append(hf.transformer.ln_f.register_forward_pre_hook(
        lambda m, args: seen.__setitem__("final", args[0][0, -1].numpy())))
    try:
        with torch.no_grad():
            out = hf(torch.tensor([ids]), output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    logits = out.logits[0, -1].numpy()
    target = int(np.argmax(logits)) if target is None else target
    p = {k: v.detach().numpy() for k, v in hf.named_parameters()}
    x = seen["final"]
    scale = 1 / np.sqrt(x.var() + cfg.layer_norm_epsilon)
    wte = p["transformer.wte.weight"][target]
    d = scale * p["transformer.ln_f.weight"] * wte
    d = d - d.mean()
    L, H = cfg.n_layer, cfg.n_head
    proj = [p[f"transformer.h.{i}.attn.c_proj.weight"] for i in range(L)]  # [D in, D out]
    heads = np.array([[seen[f"z{i}"][h * dh:(h + 1) * dh] @ proj[i][h * dh:(h + 1) * dh] @ d for h in range(H)]
                      for i in range(L)])
    return {"target": target, "dla_embed": out.hidden_states[0][0, -1].numpy() @ d, "dla_heads": heads,
            "dla_attn_bias": np.array([p[f"transformer.h.{i}.attn.c_proj.bias"] @ d for i in range(L)]),
            "dla_mlp": np.array([seen[f"mlp{i}"] @ d for i in range(L)]), "dla_logit": logits[target],
            "dla_bias_term": p["transformer.ln_f.bias"] @ wte}


def assert_attribution(book, want: dict) -> None:
    assert int(book["dla_target"][0, 0]) == want["target"]
    for name in NAMES[:-1]:
        got, expected = book[name].reshape(np.shape(want[name])), want[name]
        scale = max(float(np.max(np.abs(expected))), 1e-300)
        assert np.max(np.abs(got - expected)) <= 1e-9 * scale, (name, got, expected)
    total = book["dla_sum"][0, 0]
    assert abs(total - (want["dla_logit"] - want["dla_bias_term"])) <= 1e-9 * abs(want["dla_logit"]) + 1e-12
    parts = sum(float(np.sum(book[n])) for n in ("dla_embed", "dla_heads", "dla_attn_bias", "dla_mlp", "dla_steer"))
    assert parts == pytest.approx(total, rel=1e-12, abs=1e-12)


def cell(path: Path, name: str, i: int, j: int, value: float) -> CellOverride:
    blk = load_book(path).layout.blocks[name]
    return CellOverride(blk.sheet, blk.row + i, blk.col + j, value)


def test_the_attribution_is_transformers_taken_apart(dla_book, hf64, model):
    book = load_book(dla_book, progress=False)
    assert_attribution(book, by_hooks(hf64, model.tokenizer.encode(PROMPT)))
    assert check_workbook(dla_book, model, progress=False).ok


def test_a_typed_target_is_taken_apart_instead(dla_book, hf64, model):
    ids = model.tokenizer.encode(PROMPT)
    want = by_hooks(hf64, ids, target=7)
    assert want["target"] != int(load_book(dla_book)["top_ids"][0, 0])
    values = Recalculation(dla_book).run([cell(dla_book, "dla_choice", 0, 0, 7)])
    assert_attribution(load_book(dla_book, values=values), want)
    assert check_workbook(dla_book, values=values, tokenizer=model.tokenizer).ok


@pytest.mark.parametrize("layer,head", [(0, 1), (1, 0)])
def test_a_switched_off_head_gives_nothing_and_the_rest_follows(dla_book, hf64, model, layer, head):
    values = Recalculation(dla_book).run([cell(dla_book, "head_switches", layer, head, 0.0)])
    book = load_book(dla_book, values=values)
    assert book["dla_heads"][layer, head] == 0.0
    plain = load_book(dla_book)["dla_heads"]
    assert not np.allclose(np.delete(book["dla_heads"].ravel(), layer * 2 + head), np.delete(plain.ravel(),
                                                                                            layer * 2 + head))
    want = by_hooks(hf64, model.tokenizer.encode(PROMPT), target=int(book["dla_target"][0, 0]),
                    head_off=(layer, head))
    assert_attribution(book, want)


def _prompt_ids(book) -> list[int]:
    """The ids a typed book's prompt fills (the positions after them are padding)."""
    return book.ids[:int(book["n_tokens"][0, 0])]


def test_the_default_books_attribution_is_transformers_taken_apart(tmp_path):
    """sheetgpt build's own book: the bundled model, a typed prompt, the lens and attribution."""
    from helpers import hf_from_book
    from sheetgpt.jobs import build

    path = tmp_path / "default.xlsx"
    build("shakespeare", "O Romeo, Romeo, wherefore art", path, progress=False)
    book = load_book(path, progress=False)
    assert_attribution(book, by_hooks(hf_from_book(path), _prompt_ids(book)))


@pytest.mark.slow
def test_a_gpt2_small_books_attribution_is_transformers_taken_apart(tmp_path):
    """GPT-2 small's shapes (random weights): 12 layers x 12 heads, width 768, 50,257 tokens."""
    from helpers import hf_from_book
    from sheetgpt.jobs import build

    path = tmp_path / "small.xlsx"
    build("small-random", "Hello, my name is", path, progress=False)
    book = load_book(path, progress=False)
    assert_attribution(book, by_hooks(hf_from_book(path), _prompt_ids(book)))


def test_a_target_that_is_no_token_is_a_failure_at_its_lookup(dla_book):
    values = Recalculation(dla_book).run([cell(dla_book, "dla_choice", 0, 0, 99999)])
    report = check_workbook(dla_book, values=values)
    assert not report.ok and report.first_failure == {"step": "dla_wte", "sheet": "dla_dir", "cell": "B7"}
