"""GPT-2's byte-level BPE tokenizer: text <-> token ids, as in OpenAI's encoder.py.

Encoding works in three steps:
1. a regex cuts the text into words (letters, digits, punctuation and whitespace runs,
   each usually carrying its leading space, plus English contractions such as "'s");
2. each word's UTF-8 bytes are spelled with 256 printable characters (bytes_to_unicode),
   so the vocabulary file can be plain JSON and no byte is ever unknown;
3. adjacent symbols are merged, lowest merge rank first, until no ranked pair is left;
   every remaining symbol is one token.

There are no special tokens: "<|endoftext|>" in the input text is encoded as ordinary
text (the same ids as tiktoken's encode_ordinary), never as id 50256.  Only decode()
and the token_* methods ever see id 50256, as the bytes b"<|endoftext|>".
"""
from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Sequence

import regex

# OpenAI's GPT-2 pre-tokenization pattern; needs the `regex` module for \p{L} and \p{N}.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Words (not texts) are cached; bounded so a long text of unique words cannot grow memory.
_WORD_CACHE_SIZE = 1 << 16


@functools.lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """Map each byte 0..255 to a printable character, as GPT-2's vocabulary files spell them.

    Printable Latin-1 bytes stand for themselves; the rest (control bytes, space, 0x7F-0xA0,
    soft hyphen) are shifted to 256 and up, so a space is written "Ġ" and a newline "Ċ".
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


class Tokenizer:
    """A byte-level BPE vocabulary (token string -> id) and its ranked merges."""

    def __init__(self, encoder: dict[str, int], merges: Sequence[tuple[str, str]]) -> None:
        self._byte_of = byte_of = {c: b for b, c in bytes_to_unicode().items()}
        # Ids index embedding rows, so they must be exactly 0..n-1.
        if sorted(encoder.values()) != list(range(len(encoder))):
            raise ValueError(f"vocabulary ids must be exactly 0..{len(encoder) - 1}, each used once")
        self.vocab_size: int = len(encoder)
        self._encoder = dict(encoder)
        self._strings = [""] * self.vocab_size
        self._bytes = [b""] * self.vocab_size
        for s, i in encoder.items():
            bad = [c for c in s if c not in byte_of]
            if bad:
                raise ValueError(f"vocabulary token {s!r} (id {i}) has characters outside the byte-level alphabet: {bad!r}")
            self._strings[i] = s
            self._bytes[i] = bytes(byte_of[c] for c in s)

        # Earlier lines merge first; a repeated merge keeps its first (best) rank.
        self._ranks: dict[tuple[str, str], int] = {}
        for rank, (a, b) in enumerate(merges):
            for s in (a, b, a + b):
                if s not in self._encoder:
                    raise ValueError(f"merge {a!r} {b!r} (rank {rank}) uses {s!r}, which is not in the vocabulary")
            self._ranks.setdefault((a, b), rank)

        self._pattern = regex.compile(GPT2_PATTERN)
        # str.translate on the latin-1 view of the UTF-8 bytes spells a word in one C call.
        self._spell = bytes_to_unicode()
        # Per-instance cache, so each tokenizer's cache dies with it.
        self._encode_piece = functools.lru_cache(maxsize=_WORD_CACHE_SIZE)(self._encode_piece_uncached)

    @classmethod
    def from_files(cls, vocab_json: str | Path, merges_txt: str | Path) -> "Tokenizer":
        """Load a vocabulary (HF vocab.json / OpenAI encoder.json) and merges (merges.txt / vocab.bpe)."""
        with open(vocab_json, encoding="utf-8") as f:
            encoder = json.load(f)
        with open(merges_txt, encoding="utf-8") as f:
            lines = f.read().split("\n")
        # Only the first line may be a header: real merges can start with "#" ("# #", "## ##").
        if lines and lines[0].startswith("#version"):
            lines = lines[1:]
        merges = []
        for lineno, line in enumerate(lines, start=2):
            line = line.rstrip("\r")
            if not line:
                continue
            parts = line.split(" ")
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"{merges_txt}: line {lineno} is not a merge of two tokens: {line!r}")
            merges.append((parts[0], parts[1]))
        return cls(encoder, merges)

    @classmethod
    @functools.lru_cache(maxsize=None)
    def gpt2(cls) -> "Tokenizer":
        """The original GPT-2 tokenizer (50,257 tokens), from the files bundled with sheetgpt."""
        data = resources.files("sheetgpt") / "data" / "gpt2"
        # as_file gives a real path even when the package is installed as a zip.
        with resources.as_file(data / "encoder.json") as vocab, resources.as_file(data / "vocab.bpe") as merges:
            return cls.from_files(vocab, merges)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; "<|endoftext|>" is plain text here, not a special token."""
        ids: list[int] = []
        for piece in self._pattern.findall(text):
            ids.extend(self._encode_piece(piece))
        return ids

    def _encode_piece_uncached(self, piece: str) -> tuple[int, ...]:
        word = piece.encode("utf-8").decode("latin-1").translate(self._spell)
        if word in self._encoder:  # most common words are one token: skip the merge loop
            return (self._encoder[word],)
        symbols = list(word)
        ranks = self._ranks
        while len(symbols) > 1:
            # Merge the best-ranked adjacent pair, at every (non-overlapping) place it occurs.
            pairs = list(zip(symbols, symbols[1:]))
            best = min(pairs, key=lambda p: ranks.get(p, 1 << 62))
            if best not in ranks:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        # Every merge result is checked to be in the vocabulary at load time, so only
        # single bytes can be missing (a small vocabulary without all 256 byte tokens).
        missing = [s for s in symbols if s not in self._encoder]
        if missing:
            raw = bytes(self._byte_of[c] for s in missing for c in s)
            raise ValueError(f"cannot encode {piece!r}: no token in this vocabulary for byte(s) {raw!r}")
        return tuple(self._encoder[s] for s in symbols)

    def merge_table(self) -> list[tuple[int, int, int, int]]:
        """Every merge as (left id, right id, merged id, rank), in rank order."""
        enc = self._encoder
        return [(enc[a], enc[b], enc[a + b], rank) for (a, b), rank in sorted(self._ranks.items(), key=lambda x: x[1])]

    def byte_id(self, byte: int) -> int | None:
        """The id of the token that is this single byte (None if the vocabulary lacks it)."""
        return self._encoder.get(self._spell[byte])

    def _check(self, token_id: int) -> int:
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"token id {token_id} is outside the vocabulary 0..{self.vocab_size - 1}")
        return token_id

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`: all token bytes joined, then decoded as UTF-8 (bad sequences -> U+FFFD)."""
        return b"".join(self._bytes[self._check(i)] for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes of one token (may be part of a multi-byte UTF-8 character)."""
        return self._bytes[self._check(token_id)]

    def token_string(self, token_id: int) -> str:
        """The token as spelled in the vocabulary file, e.g. "Ġthe" for b" the"."""
        return self._strings[self._check(token_id)]

    def token_text(self, token_id: int) -> str:
        """The token for humans: its bytes as UTF-8, a partial character showing as U+FFFD."""
        return self.token_bytes(token_id).decode("utf-8", errors="replace")
