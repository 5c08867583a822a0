"""Seeded sampling (--generate K --sample): the ids the book draws equal an independent NumPy
sampler fed the same uniform numbers, on transformers' float64 logits; another seed writes
another text; LibreOffice draws the same; and over many seeds the draws follow the
probabilities (chi-square)."""
from __future__ import annotations

import shutil
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
K, TEMPERATURE, TOP_K = 4, 1.7, 6  # a warm temperature: the draws are not always the favourite


def lehmer_uniform(seed: int, position: int) -> float:
    """The book's uniform number, written out here from its documented recipe (MINSTD steps,
    a product by position + 1 between them)."""
    m, a = 2**31 - 1, 48271
    x = ((seed % m) * a + position) % m
    x = (x * a) % m * (position + 1) % m
    return ((x * a) % m + 0.5) / m


def numpy_sampler(logits: np.ndarray, u: float, temperature: float, k: int) -> int:
    """Inverse-CDF draw among the k largest logits (ties to the lowest id) at a temperature."""
    top = np.argsort(-logits, kind="stable")[:k]
    p = np.exp((logits[top] - logits[top[0]]) / temperature)
    return int(top[np.searchsorted(np.cumsum(p / p.sum()), u)])


@pytest.fixture(scope="module")
def model(hf_model_dir):
    return load_model(str(hf_model_dir))


@pytest.fixture(scope="module")
def sample_book(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "sample.xlsx"
    build_workbook(model, PROMPT, path, progress=False, typed_prompt=True, positions=12,
                   options=BookOptions(probes={"generate": K, "sample": 1}),
                   controls={"temperature": np.array([[TEMPERATURE]])})
    return path


@pytest.fixture(scope="module")
def hf64(hf_model, sample_book):
    return hf_with_book_weights(hf_model, sample_book)


def hf_sample(hf, ids: list[int], seed: int) -> list[int]:
    """K tokens written by transformers' logits and the NumPy sampler."""
    import torch
    ids = list(ids)
    for _ in range(K):
        with torch.no_grad():
            logits = hf(torch.tensor([ids])).logits[0, -1].numpy()
        ids.append(numpy_sampler(logits, lehmer_uniform(seed, len(ids)), TEMPERATURE, TOP_K))
    return ids


def cell(path: Path, name: str, value: float) -> CellOverride:
    blk = load_book(path).layout.blocks[name]
    return CellOverride(blk.sheet, blk.row, blk.col, value)


def drawn(book) -> list[int]:
    return [int(i) for i in book["generated"][:, 0]]


@pytest.mark.parametrize("seed", [1, 2, 12345])
def test_the_draws_are_a_numpy_sampler_on_transformers_logits(sample_book, hf64, model, seed):
    values = Recalculation(sample_book).run([cell(sample_book, "sample_seed", seed),
                                             cell(sample_book, "sample_top_k", TOP_K)])
    book = load_book(sample_book, values=values)
    ids = model.tokenizer.encode(PROMPT)
    assert drawn(book) == hf_sample(hf64, ids, seed)[len(ids):]
    assert check_workbook(sample_book, values=values, tokenizer=model.tokenizer).ok


def test_another_seed_writes_another_text(sample_book):
    recalc = Recalculation(sample_book)
    texts = {tuple(drawn(load_book(sample_book, values=recalc.run([cell(sample_book, "sample_seed", s)]))))
             for s in range(1, 6)}
    assert len(texts) > 1


@pytest.mark.libreoffice
@pytest.mark.skipif(shutil.which("soffice") is None, reason="apt-get install libreoffice-calc-nogui python3-uno")
def test_libreoffice_draws_the_same(sample_book, model):
    report = check_workbook(sample_book, engine="libreoffice", progress=False)
    assert report.ok, report.first_failure
    lo = load_book(sample_book, engine="libreoffice")
    assert drawn(lo) == drawn(load_book(sample_book))


def test_over_many_seeds_the_draws_follow_the_probabilities(sample_book, hf64, model):
    """The first written token over 4,000 seeds, drawn by the book's sampling step (its
    reference computation, which check proves equal to its formulas for any seed, as
    above) from transformers' logits, against the top-k softmax: chi-square at 1%."""
    import torch
    from sheetgpt.probes.sampling import Sampling

    book = load_book(sample_book)
    sampling = book.layout.find(Sampling)
    ids = model.tokenizer.encode(PROMPT)
    with torch.no_grad():
        logits = hf64(torch.tensor([ids])).logits[0, -1].numpy()
    p = len(ids) - 1  # the draw after the prompt's last position
    column = np.full(sampling.logits.shape, np.nan)
    column[:, p] = logits
    top = np.argsort(-logits, kind="stable")[:TOP_K]
    probs = np.exp((logits[top] - logits[top[0]]) / TEMPERATURE)
    probs /= probs.sum()
    counts = dict.fromkeys(top.tolist(), 0)
    n = 4000
    for seed in range(n):
        v = {sampling.logits.name: column, "temperature": np.array([[TEMPERATURE]]),
             "sample_seed": np.array([[seed]], float), "sample_top_k": np.array([[TOP_K]], float)}
        sampling.compute(v)
        counts[int(v["sample_pick"][p, 0])] += 1
    observed = np.array([counts[i] for i in top.tolist()])
    chi2 = float(((observed - n * probs) ** 2 / (n * probs)).sum())
    assert chi2 < 15.09, (chi2, observed, n * probs)  # chi-square, 5 degrees of freedom, 1%


def test_text_in_the_seed_cell_is_one_clear_error(sample_book):
    from sheetgpt.errors import UserError

    values = Recalculation(sample_book).run([cell(sample_book, "sample_seed", "abc")])
    with pytest.raises(UserError, match=r"^input cell sample!B3 holds 'abc', not a number$"):
        check_workbook(sample_book, values=values)
