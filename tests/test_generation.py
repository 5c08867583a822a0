"""Generation and probes against transformers: greedy generation equals generate(do_sample=False),
a switched-off head equals the model with that head's output zeroed (a hook), steering equals
the vector added by a hook, the logit lens equals ln_f + unembedding of each layer's hidden
state, the temperature divides the logits; LibreOffice computes the same book alike."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import hf_with_book_weights, run_cli
from sheetgpt.builder import build_workbook
from sheetgpt.check import check_workbook
from sheetgpt.engines import CellOverride
from sheetgpt.engines.fast import Recalculation
from sheetgpt.layout import BookOptions
from sheetgpt.load import load_model
from sheetgpt.readback import load_book, prompt_cell

K = 3
PROMPTS = ["The model is small", "the sheet", "Attention compares", "A"]  # up to 7 tokens: 7 + K fit in 12
RTOL = 1e-9  # float64 both sides


@pytest.fixture(scope="module")
def model(hf_model_dir):
    return load_model(str(hf_model_dir))


@pytest.fixture(scope="module")
def probe_book(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("probes") / "probes.xlsx"
    build_workbook(model, PROMPTS[0], path, progress=False, typed_prompt=True, positions=12,
                   options=BookOptions(probes={"generate": K, "lens": 1}))
    return path


@pytest.fixture(scope="module")
def hf64(hf_model, probe_book):
    return hf_with_book_weights(hf_model, probe_book)


@pytest.fixture(scope="module")
def recalc(probe_book) -> Recalculation:
    return Recalculation(probe_book)


def cell(book: Path, name: str, i: int = 0, j: int = 0, value=0.0) -> CellOverride:
    blk = load_book(book).layout.blocks[name]
    return CellOverride(blk.sheet, blk.row + i, blk.col + j, value)


def hf_generate(hf, ids: list[int], k: int = K):
    import torch
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), max_new_tokens=k, min_new_tokens=k, do_sample=False,
                          return_dict_in_generate=True, pad_token_id=0, eos_token_id=None)
        full = out.sequences
        logits = hf(full).logits[0].numpy()  # float64 (generate hands its scores back in float32)
    n = len(ids)
    return full[0].tolist(), [logits[n - 1 + g] for g in range(k)]


def assert_generation(book_values, probe_book, hf, prompt: str, tokenizer) -> None:
    contents = load_book(probe_book, values=book_values)
    ids = tokenizer.encode(prompt)
    want, logits = hf_generate(hf, ids)
    n = len(ids)
    assert contents.ids[:n + K] == want, prompt
    assert [int(x) for x in contents["generated"][:, 0]] == want[n:]
    next_logits = contents["next_logits"]
    for g, theirs in enumerate(logits):
        ours = next_logits[:, n - 1 + g]
        assert np.abs(ours - theirs).max() <= RTOL * np.abs(theirs).max(), (prompt, g)
    others = np.delete(next_logits, range(n - 1, n - 1 + K), axis=1)
    assert np.isnan(others).all(), "only the positions that write compute logits"


def test_greedy_generation_matches_transformers(probe_book, recalc, hf64, model):
    for prompt in PROMPTS:
        values = recalc.run([prompt_cell(probe_book, prompt)])
        assert_generation(values, probe_book, hf64, prompt, model.tokenizer)
        report = check_workbook(probe_book, prompt=prompt, values=values, tokenizer=model.tokenizer)
        assert report.ok, report.first_failure


def test_the_guide_shows_the_prompt_and_its_continuation(probe_book, recalc, hf64, model):
    values = recalc.run([prompt_cell(probe_book, PROMPTS[1])])
    ids = model.tokenizer.encode(PROMPTS[1])
    want, _ = hf_generate(hf64, ids)
    text = values.value("Guide", 9, 2)
    assert text == PROMPTS[1] + "".join(model.tokenizer.token_text(i) for i in want[len(ids):])


def _hook_head(hf, layer: int, head: int, scale: float):
    dh = hf.config.n_embd // hf.config.n_head

    def pre(module, args):
        x = args[0].clone()
        x[..., head * dh:(head + 1) * dh] *= scale
        return (x,)
    return hf.transformer.h[layer].attn.c_proj.register_forward_pre_hook(pre)


@pytest.mark.parametrize("layer,head,scale", [(0, 1, 0.0), (1, 0, 0.0), (1, 1, 0.25)])
def test_a_head_switch_scales_the_heads_output(probe_book, recalc, hf64, model, layer, head, scale):
    values = recalc.run([cell(probe_book, "head_switches", layer, head, scale)])
    handle = _hook_head(hf64, layer, head, scale)
    try:
        assert_generation(values, probe_book, hf64, PROMPTS[0], model.tokenizer)
    finally:
        handle.remove()
    plain = load_book(probe_book, values=recalc.run([]))["next_logits"]
    switched = load_book(probe_book, values=recalc.run([cell(probe_book, "head_switches", layer, head, scale)]))
    assert not np.allclose(np.nan_to_num(plain), np.nan_to_num(switched["next_logits"])), "the switch changes logits"


def _hook_steer(hf, layer: int, vector: np.ndarray):
    import torch
    add = torch.tensor(vector, dtype=torch.float64)

    def pre(module, args, kwargs):
        if args:
            return (args[0] + add, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + add}
    blocks = hf.transformer.h
    target = blocks[layer] if layer < len(blocks) else hf.transformer.ln_f
    return target.register_forward_pre_hook(pre, with_kwargs=True)


# the two ways in: layer 0's input (the embedding's row) and a later layer's (the previous
# layer's output; the last: ln_f's input); every layer after 0 is the same formula
@pytest.mark.parametrize("layer,coef", [(0, 1.5), (2, -0.7)])
def test_steering_adds_the_vector_at_the_layer(probe_book, recalc, hf64, model, layer, coef):
    D = model.weights.config.n_embd
    vector = np.random.default_rng(layer).normal(0, 0.5, D)
    overrides = [cell(probe_book, "steer_coef", value=coef), cell(probe_book, "steer_layer", value=layer)]
    overrides += [cell(probe_book, "steer_vector", 0, j, float(vector[j])) for j in range(D)]
    values = recalc.run(overrides)
    handle = _hook_steer(hf64, layer, coef * vector)
    try:
        assert_generation(values, probe_book, hf64, PROMPTS[0], model.tokenizer)
    finally:
        handle.remove()
    report = check_workbook(probe_book, values=values, tokenizer=model.tokenizer)
    assert report.ok, report.first_failure


def test_the_logit_lens_is_each_layers_hidden_state_unembedded(probe_book, recalc, hf64, model):
    import torch
    values = recalc.run([prompt_cell(probe_book, PROMPTS[2])])
    contents = load_book(probe_book, values=values)
    ids = model.tokenizer.encode(PROMPTS[2])
    full, _ = hf_generate(hf64, ids)
    with torch.no_grad():
        out = hf64(torch.tensor([full]), output_hidden_states=True)
    hidden = out.hidden_states  # embeddings, then each block's output; the last already through ln_f
    wte = hf64.transformer.wte.weight.detach().numpy()
    L = hf64.config.n_layer
    lens = np.stack([hf64.transformer.ln_f(hidden[l + 1][0, -1]).detach().numpy() @ wte.T for l in range(L - 1)]
                    + [out.logits[0, -1].numpy()], axis=1)  # [V, L]
    ours = contents["lens_logits"]
    assert np.abs(ours - lens).max() <= RTOL * np.abs(lens).max()
    final = int(np.argmax(lens[:, -1]))
    assert [int(x) for x in contents["lens_top_ids"][:, 0]] == list(np.argmax(lens, axis=0))
    assert [int(x) for x in contents["lens_ranks"][:, 0]] == [int((lens[:, l] > lens[final, l]).sum()) + 1
                                                             for l in range(L)]
    probs = np.exp(lens - lens.max(axis=0)) / np.exp(lens - lens.max(axis=0)).sum(axis=0)
    np.testing.assert_allclose(contents["lens_top_probs"][:, 0], probs.max(axis=0), rtol=1e-12)
    assert contents["lens_ranks"][-1, 0] == 1  # after the last layer the lens is the prediction


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_the_temperature_divides_the_logits(probe_book, recalc, temperature):
    values = recalc.run([cell(probe_book, "temperature", value=temperature)])
    contents = load_book(probe_book, values=values)
    logits = contents["logits"][:, 0]
    z = (logits - logits.max()) / temperature
    probs = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(contents["next_probs"][:, 0], probs, rtol=1e-12)
    order = np.argsort(-logits, kind="stable")[:5]
    assert [int(i) for i in contents["top_ids"][:, 0]] == list(order)
    np.testing.assert_allclose(contents["top_probs"][:, 0], probs[order], rtol=1e-12)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_a_temperature_of_zero_or_below_gets_a_message(probe_book, bad):
    report = check_workbook(probe_book, overrides=[cell(probe_book, "temperature", value=bad)])
    assert not report.ok
    assert any("temperature must be a number above 0" in line for line in report.inputs), report.inputs


def test_libreoffice_generates_alike_with_a_head_off_and_steering(model, hf64, tmp_path):
    if shutil.which("soffice") is None:
        pytest.skip("LibreOffice is not installed")
    from sheetgpt.engines.libreoffice import recalculate_with_libreoffice
    from sheetgpt.steering import steering_vector

    book = tmp_path / "lo.xlsx"
    vector = steering_vector(model, "the formulas", "the model", 1)
    build_workbook(model, PROMPTS[0], book, progress=False, typed_prompt=True, positions=10,
                   options=BookOptions(probes={"generate": K, "lens": 1}),
                   controls={"steer_vector": vector[None, :], "steer_layer": np.array([[1.0]])})
    changes = [cell(book, "head_switches", 0, 1, 0.0), cell(book, "steer_coef", value=1.5)]
    layout = load_book(book).layout
    names = ("tokens", "generated", "next_logits", "logits", "lens_logits")
    reads = [(b.sheet, b.row, b.col, b.n_rows, b.n_cols) for b in (layout.blocks[n] for n in names)]
    lo = recalculate_with_libreoffice(book, [changes], reads)[0]
    ours = load_book(book, values=Recalculation(book).run(changes))
    for name, theirs in zip(names, lo):
        theirs = np.array([[np.nan if v in (None, "") else v for v in row] for row in theirs], dtype=np.float64)
        mine = ours[name]
        assert np.array_equal(np.isnan(mine), np.isnan(theirs)), name
        scale = np.nanmax(np.abs(mine))
        assert np.nanmax(np.abs(mine - theirs)) <= 1e-12 * scale, name
    n = len(model.tokenizer.encode(PROMPTS[0]))
    assert ours.ids[n:n + K] == [int(x) for x in ours["generated"][:, 0]]
    plain = load_book(book)
    assert plain.ids[n:n + K] != ours.ids[n:n + K] or not np.allclose(plain["logits"], ours["logits"])


def test_build_steer_makes_the_vector_from_the_two_texts(hf_model_dir, hf64, model, tmp_path):
    import torch
    book = tmp_path / "steer.xlsx"
    r = run_cli("build", "the sheet", "--model", str(hf_model_dir), "--steer", "the formulas are many",
                "the model is small", "--steer-layer", "1", "--steer-coef", "2", "-o", str(book), "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    means = []
    for text in ("the formulas are many", "the model is small"):
        with torch.no_grad():
            hs = hf64(torch.tensor([model.tokenizer.encode(text)]), output_hidden_states=True).hidden_states
        means.append(hs[1][0].numpy().mean(axis=0))  # the stream entering layer 1
    contents = load_book(book)
    np.testing.assert_allclose(contents["steer_vector"][0], means[0] - means[1], rtol=1e-6, atol=1e-6)
    assert contents["steer_coef"][0, 0] == 2 and contents["steer_layer"][0, 0] == 1
    report = check_workbook(book)
    assert report.ok, report.first_failure


@pytest.mark.parametrize("args,message", [
    (["--fixed", "--generate", "2"], "--generate needs a book with a typed prompt"),
    (["--generate", "2", "--positions", "3"], "--positions 3: give 4"),
    (["--sample"], "--sample is an option of --generate: give both"),
    (["--generate", "-1"], "--generate -1: give 0 or more"),
    (["--steer-layer", "9"], "--steer-layer 9"),
    (["--steer-vector", "missing.npy"], "no such file"),
])
def test_build_refuses_what_it_cannot_hold(tmp_path, args, message):
    r = run_cli("build", "To be", "--model", "tiny", *args, "-o", str(tmp_path / "b.xlsx"), "-q", cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "b.xlsx").exists()


def test_cli_check_set_switches_a_head_off(probe_book, tmp_path):
    blk = load_book(probe_book).layout.blocks["head_switches"]
    r = run_cli("check", str(probe_book), "--set", f"controls!{blk.cell(0, 0)}=0", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_eval_shows_the_continuation_and_the_books_temperature(probe_book, hf64, model, tmp_path):
    import json
    blk = load_book(probe_book).layout.blocks["temperature"]
    r = run_cli("eval", str(probe_book), "--prompt", PROMPTS[1], "--set", f"controls!{blk.cell(0, 0)}=0.5",
                "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    ids = model.tokenizer.encode(PROMPTS[1])
    want, logits = hf_generate(hf64, ids)
    assert out["generated"] == want[len(ids):]
    assert out["generated_text"] == "".join(model.tokenizer.token_text(i) for i in want[len(ids):])
    import torch
    with torch.no_grad():
        last = hf64(torch.tensor([want])).logits[0, -1].numpy()
    z = (last - last.max()) / 0.5
    probs = np.exp(z) / np.exp(z).sum()
    top = out["top"][0]
    assert top["id"] == int(np.argmax(last)) and abs(top["prob"] - probs.max()) <= 1e-9
