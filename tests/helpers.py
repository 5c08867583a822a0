"""Test helpers: a small byte-level BPE vocabulary learned from sample text, and array comparison.

Kept independent of sheetgpt.tokenizer, so fixtures built here can check it.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import regex

# OpenAI's GPT-2 pre-tokenization pattern (words with their leading space, numbers, punctuation).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
END_OF_TEXT = "<|endoftext|>"

SAMPLE_TEXT = """\
The spreadsheet holds every weight of the model in a cell, and every step of the forward
pass is a formula. When you change the prompt, the sheet recalculates: the tokens flow
through the embedding, the attention heads and the feed-forward layers, and the next token
appears at the bottom. The model is small, the sheet is large, and the formulas are many.
Attention compares each token with the tokens before it; the softmax turns the scores into
weights that sum to one. Layer norm keeps the numbers in range. Then the unembedding turns
the last hidden state into a score for every token in the vocabulary: 50,257 of them.
"""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (as in OpenAI's encoder.py)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


def learn_bpe(text: str, n_merges: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE: 256 byte tokens, then up to n_merges learned merges, then <|endoftext|>.

    Ties between equally frequent pairs go to the smallest pair, so the result is deterministic.
    """
    spell = bytes_to_unicode()
    words = Counter(tuple(spell[b] for b in w.encode("utf-8")) for w in regex.findall(GPT2_PATTERN, text))
    vocab = {spell[b]: b for b in range(256)}
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        vocab.setdefault(best[0] + best[1], len(vocab))  # two merges may spell the same token
        words = Counter({_merge(w, best): c for w, c in words.items()})
    vocab[END_OF_TEXT] = len(vocab)
    return vocab, merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(word):
        if word[i:i + 2] == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def write_bpe_vocab(directory: Path, text: str = SAMPLE_TEXT, n_merges: int = 100) -> int:
    """Write vocab.json + merges.txt (Hugging Face layout) into directory; return the vocab size."""
    vocab, merges = learn_bpe(text, n_merges)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(vocab)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max|b| over a whole block (b is the trusted side)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    scale = np.abs(b).max()
    return float(np.abs(a - b).max() / scale) if scale else float(np.abs(a).max())


def assert_close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-9, what: str = "") -> None:
    err = rel_err(a, b)
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}"
