"""Tokenizer tests: sheetgpt's GPT-2 BPE against tiktoken built offline from the same files."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import tiktoken
from tiktoken_ext.openai_public import r50k_pat_str  # tiktoken's (faster, equivalent) GPT-2 pattern

import sheetgpt
from sheetgpt.tokenizer import Tokenizer

DATA = Path(sheetgpt.__file__).parent / "data" / "gpt2"
# Independent of sheetgpt.tokenizer: tiktoken's own construction of the byte table.
_printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
BYTE_OF_CHAR = {chr(b): b for b in _printable}
BYTE_OF_CHAR.update({chr(256 + n): b for n, b in enumerate(b for b in range(256) if b not in _printable)})
CHAR_OF_BYTE = {b: c for c, b in BYTE_OF_CHAR.items()}


def spell(data: bytes) -> str:
    return "".join(CHAR_OF_BYTE[b] for b in data)


@pytest.fixture(scope="module")
def encoder_json() -> dict[str, int]:
    return json.loads((DATA / "encoder.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def ref(encoder_json) -> tiktoken.Encoding:
    ranks = {bytes(BYTE_OF_CHAR[c] for c in s): i for s, i in encoder_json.items() if s != "<|endoftext|>"}
    return tiktoken.Encoding(
        name="gpt2-test", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256}
    )


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.gpt2()


FIXED_TEXTS = [
    "",
    "Hello, world!",
    "I'm, you're, they'll, it's, we've, he'd",
    "I'M YOU'RE 'S 's's ''t ' s rock'n'roll",
    "a   b\n\n\nc \n d",
    "\ttab\t\tseparated\t \n\t",
    "1234567 3.14159 -42 1e10 0x1F 2024-01-01",
    "café naïve résumé Ångström façade",
    "日本語のテキスト",
    "中文",
    "한국어 Русский текст العربية עברית हिन्दी",
    "👨‍👩‍👧‍👦 🏳️‍🌈",
    "a" * 500,
    "!!!" * 200,
    " " * 300,
    "\n" * 50 + "x",
    "def f(x):\n    return x ** 2  # square\n\nif __name__ == '__main__':\n\tprint(f(3))\n",
    "## heading ### #### ######## #$ #$#$ ################",
    "<|endoftext|>",
    "before<|endoftext|>after <|endoftext|> ",
    "trailing spaces   ",
    "  leading spaces",
    "\r\n\r\nwindows\r\nlines\r\n",
    "\u00a0non\u2003breaking\u3000spaces\u200b",
    "combining: e\u0301 a\u0308 \u0915\u094d\u0937",
    "\x00\x01\x7f control \x1c\x1d\x1e\x1f\x85",
]

# Pools for the random strings: scripts, whitespace, punctuation and odd code points.
POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789٠١٢٣४५६",
    " " * 8 + "\t\n\r\x0b\x0c\u00a0\u2003\u3000\u2028\x85",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»…—–“”‘’",
    "éèêëàâäôöûüçñÉÀß",
    "αβγδεζηθΩπσ",
    "абвгдежзийклмнопрЖЯ",
    "日本語中文字漢のテキストカタカナ한국어",
    "😀😂👍🏽👨\u200d👩\u200d👧🏳\ufe0f\u200d🌈❤️",
    "\u0301\u0308\u094d\u200b\u200d\ufeff",
    "'s 't 're 've 'm 'll 'd",
]


def random_texts(n: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randrange(0, 40)):
            if rng.random() < 0.05:  # any non-surrogate code point, assigned or not
                cp = rng.randrange(0x20, 0x30000)
                chars.append(chr(cp if not 0xD800 <= cp < 0xE000 else 0x41))
            else:
                chars.append(rng.choice(rng.choice(POOLS)))
        texts.append("".join(chars))
    return texts


ALL_TEXTS = FIXED_TEXTS + random_texts(300)


@pytest.mark.parametrize("text", FIXED_TEXTS)
def test_matches_tiktoken_on_fixed_texts(tok, ref, text):
    assert tok.encode(text) == ref.encode_ordinary(text)


def test_matches_tiktoken_on_random_texts(tok, ref):
    for text in random_texts(300):
        assert tok.encode(text) == ref.encode_ordinary(text), repr(text)


def test_endoftext_is_plain_text(tok, ref):
    text = "a<|endoftext|>b"
    ids = tok.encode(text)
    assert ids == ref.encode(text, disallowed_special=())  # special text treated as ordinary
    assert 50256 not in ids
    assert ids != ref.encode(text, allowed_special="all")  # which would use id 50256


def test_long_english_text_matches(tok, ref):
    # Many distinct words: exercises the merge loop and the word cache, not just one word.
    rng = random.Random(7)
    words = [
        "".join(rng.choice("etaoinshrdlucmfwypvbgkjqxz") for _ in range(rng.randrange(1, 12)))
        for _ in range(3000)
    ]
    text = " ".join(rng.choice(words) + rng.choice(["", "", ",", ".", "'s", "\n"]) for _ in range(20000))
    assert tok.encode(text) == ref.encode_ordinary(text)


def test_decode_roundtrip(tok):
    for text in ALL_TEXTS:
        assert tok.decode(tok.encode(text)) == text, repr(text)


def test_token_bytes_match_tiktoken_for_every_id(tok, ref):
    assert tok.vocab_size == ref.n_vocab == 50257
    for i in range(tok.vocab_size):
        assert tok.token_bytes(i) == ref.decode_single_token_bytes(i), i


def test_known_tokens(tok, encoder_json):
    assert tok.vocab_size == len(encoder_json)
    the = encoder_json["Ġthe"]
    assert tok.token_string(the) == "Ġthe"
    assert tok.token_bytes(the) == b" the"
    assert tok.token_text(the) == " the"
    assert tok.encode(" the") == [the]

    newlines = encoder_json["ĊĊ"]
    assert tok.token_bytes(newlines) == b"\n\n"
    assert tok.token_text(newlines) == "\n\n"

    # A lone UTF-8 lead byte (0xE6 starts many CJK characters): shown as U+FFFD.
    lead = encoder_json[spell(b"\xe6")]
    assert tok.token_string(lead) == "æ"  # 0xE6 is printable Latin-1, so spelled as itself
    assert tok.token_bytes(lead) == b"\xe6"
    assert tok.token_text(lead) == "\ufffd"

    eot = encoder_json["<|endoftext|>"]
    assert eot == 50256
    assert tok.token_string(eot) == "<|endoftext|>"
    assert tok.decode([eot]) == "<|endoftext|>"


def test_decode_partial_utf8_is_replaced(tok):
    ids = tok.encode("日")
    assert len(ids) > 1  # "日" is split across byte tokens
    assert tok.decode(ids[:1]) == "\ufffd"
    assert tok.decode(ids) == "日"


@pytest.mark.parametrize("bad", [99999, 50257, -1])
def test_invalid_ids_raise_value_error(tok, bad):
    msg = f"token id {bad} is outside the vocabulary 0..50256"
    for call in (lambda: tok.decode([0, bad]), lambda: tok.token_bytes(bad),
                 lambda: tok.token_string(bad), lambda: tok.token_text(bad)):
        with pytest.raises(ValueError, match=msg):
            call()


def test_gpt2_is_cached_and_equals_from_files(tok):
    assert Tokenizer.gpt2() is tok
    other = Tokenizer.from_files(str(DATA / "encoder.json"), str(DATA / "vocab.bpe"))
    text = "The quick brown fox jumps over the lazy dog."
    assert other.encode(text) == tok.encode(text)


def test_word_cache_is_bounded(tok):
    assert tok._encode_piece.cache_info().maxsize is not None


def write_vocab(tmp_path: Path, tokens: list[str], merges: list[str], header: bool = True) -> Tokenizer:
    vocab_json = tmp_path / "vocab.json"
    merges_txt = tmp_path / "merges.txt"
    vocab_json.write_text(json.dumps({s: i for i, s in enumerate(tokens)}), encoding="utf-8")
    merges_txt.write_text(("#version: 0.2\n" if header else "") + "".join(m + "\n" for m in merges), encoding="utf-8")
    return Tokenizer.from_files(vocab_json, merges_txt)


def test_small_custom_vocabulary(tmp_path):
    # Ids 0..255 are the single bytes (id == byte value), then one id per merge.
    tokens = [CHAR_OF_BYTE[b] for b in range(256)] + ["##", "he", "ll", "hell", "Ġw", "or"]
    merges = ["# #", "h e", "l l", "he ll", "Ġ w", "o r"]
    small = write_vocab(tmp_path, tokens, merges)
    assert small.vocab_size == 262
    # "hello" -> h e l l o -> he l l o -> he ll o -> hell o ; " world" -> Ġw or l d
    assert small.encode("hello world") == [259, ord("o"), 260, 261, ord("l"), ord("d")]
    # "# #" is a real merge, not a comment line: "###" -> ## #
    assert small.encode("###") == [256, ord("#")]
    assert small.encode("hi") == [ord("h"), ord("i")]
    assert small.token_string(260) == "Ġw"
    assert small.token_bytes(260) == b" w"
    assert small.decode(small.encode("hello world ###")) == "hello world ###"
    with pytest.raises(ValueError, match="outside the vocabulary 0..261"):
        small.decode([262])


def test_merge_rank_order_decides(tmp_path):
    # With "l o" ranked before "l l", "llo" becomes l lo, not ll o.
    tokens = [CHAR_OF_BYTE[b] for b in range(256)] + ["lo", "ll"]
    small = write_vocab(tmp_path, tokens, ["l o", "l l"], header=False)
    assert small.encode("llo") == [ord("l"), 256]
    assert small.encode("lll") == [257, ord("l")]  # left-most occurrence merges first


def test_vocabulary_without_all_bytes(tmp_path):
    tokens = list("abcdefghijklmnopqrstuvwxyz") + ["ab"]
    small = write_vocab(tmp_path, tokens, ["a b"])
    assert small.encode("abc") == [26, 2]
    with pytest.raises(ValueError, match="no token in this vocabulary"):
        small.encode("café")
    with pytest.raises(ValueError, match="no token in this vocabulary"):
        small.encode("a b")  # the space byte has no token either


def test_bad_files_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="not in the vocabulary"):
        write_vocab(tmp_path, list("abc"), ["a b"])  # merge result "ab" missing
    (tmp_path / "gap.json").write_text(json.dumps({"a": 0, "b": 2}), encoding="utf-8")
    (tmp_path / "empty.txt").write_text("#version: 0.2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="ids must be exactly"):
        Tokenizer.from_files(tmp_path / "gap.json", tmp_path / "empty.txt")
