"""A typed-prompt book: the prompt cell tokenized by formulas must give tiktoken's GPT-2 ids
for any ASCII text, in our engine and in LibreOffice, and say so plainly when it cannot."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import offline_tiktoken_gpt2, run_cli

POSITIONS = 16

# Hand-picked: every contraction at the start, middle and end, ' after letters, digits and
# spaces, whitespace runs at both ends and inside, tabs, line breaks, punctuation runs,
# capitals, words that merge into one token and words that stay in bytes.
HAND_PICKED = [
    "Hello, world!", "To be, or not to be", "'s", "'t it", "'re here", "'ve got", "'m", "'ll do", "'d",
    "it's", "don't", "you're", "we've", "I'm", "she'll", "he'd", "IT'S", "DON'T", "You'Re", "x'LL",
    "rock'n'roll", "90's", "'90s", " 'quoted' ", "''", "'", "'''", "a'", "1'", " '", "'s's's", "o'clock",
    "it's a dog's life'll", "end with 're", "'d've", "' s", "'S", "'sss",
    " ", "  ", "   lead", "trail   ", "mid    dle", "\n", "\n\nabove", "below\n\n", "a\nb", "a \nb", "a\n b",
    "\tTab", "tab\t", "a\t\tb", " \t ", "\t \t", "\r\n", "line\r\nbreak", " \n \n ", "x  \n  y",
    "!!!", "?!?!", "...", "--", "(parens)", "\"quotes\"", "@#$%^&*", "a.b,c;d:e", "~`|\\/", "[]{}<>",
    "1234567890", "3.14159", "1,000,000", "v2.0", "A1B2C3", "12 34  56", " 7", "007",
    "UPPER CASE", "MiXeD cAsE", "CamelCaseWord", "ROMEO:", "JULIET.", "HeLLo",
    "the", " the", "The", " The", "antidisestablishment", "xqzjvk", "zzzzzzzz", "aaaaaaaaaaaaaaa",
    "========", "-----", "ab" * 9, "mississippi", "hello world hello world",
    "To be, or not to be, that is the question:",
]

FRAGMENTS = ["the", "The", "hello", "don", "t", "'s", "'ll", "'re", "'ve", "'m", "'d", "'t", "'", " ", "  ",
             "\n", "\n\n", "\t", "123", "4", ",", ".", "!!", "?!", "...", "-", "(", ")", "\"", "ROMEO", "thou",
             "xyzzy", "aaaa", "@#", "Shakespeare", "q", "Z", "0", " 's", "ing", "un", "'S"]


def generated(n: int, seed: int) -> list[str]:
    """Prompts of 1 to 7 fragments, deterministic."""
    rng = random.Random(seed)
    return ["".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 7))) for _ in range(n)]


def fits(text: str, enc) -> bool:
    """Within the book's capacity (16 tokens, words of at most 20 characters)."""
    import regex

    from sheetgpt.tokenizer import GPT2_PATTERN
    return (0 < len(enc.encode_ordinary(text)) <= POSITIONS
            and all(len(w) <= 20 for w in regex.findall(GPT2_PATTERN, text)))


@pytest.fixture(scope="session")
def gpt2_vocab_model():
    """A 1-layer, width-4 random model with GPT-2's whole tokenizer: the sheet tokenizes with
    GPT-2's 50,000 merges while the model stays small."""
    from sheetgpt.load import LoadedModel, random_weights
    from sheetgpt.model import GPT2Config
    from sheetgpt.tokenizer import Tokenizer

    cfg = GPT2Config(n_layer=1, n_head=1, n_embd=4, n_ctx=32, vocab_size=50257)
    return LoadedModel("gpt2-vocab-test", random_weights(cfg, 11), Tokenizer.gpt2(), random=True)


@pytest.fixture(scope="session")
def typed_book(gpt2_vocab_model, tmp_path_factory) -> Path:
    from sheetgpt.builder import build_workbook

    path = tmp_path_factory.mktemp("typed") / "typed.xlsx"
    build_workbook(gpt2_vocab_model, "Hello, world!", path, progress=False, typed_prompt=True, positions=POSITIONS)
    return path


@pytest.fixture(scope="session")
def tiktoken_gpt2():
    return offline_tiktoken_gpt2()


def prompts_for_tests(enc, n_generated: int, seed: int) -> list[str]:
    exact = "a" + " a" * (POSITIONS - 1)  # exactly at the capacity: 16 tokens
    assert len(enc.encode_ordinary(exact)) == POSITIONS
    candidates = HAND_PICKED + [exact] + generated(n_generated, seed)
    return [p for p in dict.fromkeys(candidates) if fits(p, enc)]


def sheet_ids(path: Path, values) -> list[int]:
    from sheetgpt.readback import load_book

    book = load_book(path, values=values)
    n = int(book["n_tokens"][0, 0])
    return [int(i) for i in book["prompt_ids"][:n, 0]]


def check_many(path: Path, prompts: list[str], enc, every: int = 1) -> None:
    """For each prompt typed into the one book, the sheet's ids must be tiktoken's; and for
    every `every`-th, check --prompt passes (every step of the book, the tokenizer's too)."""
    from sheetgpt.check import check_workbook
    from sheetgpt.engines.fast import Recalculation
    from sheetgpt.readback import prompt_cell
    from sheetgpt.tokenizer import Tokenizer

    recalc = Recalculation(path)
    wrong = []
    for k, text in enumerate(prompts):
        values = recalc.run([prompt_cell(path, text)])
        report = check_workbook(path, prompt=text, values=values, tokenizer=Tokenizer.gpt2()) if k % every == 0 else None
        ids = sheet_ids(path, values)
        if (report is not None and not report.ok) or ids != enc.encode_ordinary(text):
            wrong.append((text, report and report.first_failure, ids, enc.encode_ordinary(text)))
    assert not wrong, f"{len(wrong)} of {len(prompts)} prompts differ, first: {wrong[:3]}"


def test_check_prompt_matches_tiktoken(typed_book, tiktoken_gpt2):
    prompts = prompts_for_tests(tiktoken_gpt2, 50, seed=1)  # the slow test types 500 more, each checked
    assert len(prompts) >= 130
    check_many(typed_book, prompts, tiktoken_gpt2, every=3)  # the ids of all: 0.4 s each; a check: 0.7 s more


@pytest.mark.slow
def test_check_prompt_matches_tiktoken_many_more(typed_book, tiktoken_gpt2):
    prompts = [p for p in generated(800, seed=2) if fits(p, tiktoken_gpt2)]
    assert len(prompts) >= 500
    check_many(typed_book, prompts, tiktoken_gpt2)


def test_padding_leaves_the_prediction_alone(typed_book, tiktoken_gpt2):
    """The logits read the prompt's last position: the same as a book of exactly its tokens
    (the reference forward pass on the ids alone, no padding)."""
    from sheetgpt.engines.fast import Recalculation
    from sheetgpt.readback import load_book, prompt_cell
    from sheetgpt.reference import forward

    recalc = Recalculation(typed_book)
    for text in ["Hello", "To be, or not to be", "a" + " a" * (POSITIONS - 1)]:
        book = load_book(typed_book, values=recalc.run([prompt_cell(typed_book, text)]))
        got = book["logits"][:, 0]
        want = forward(book.weights, tiktoken_gpt2.encode_ordinary(text))["logits"][:, 0]
        assert np.abs(got - want).max() <= 1e-9 * np.abs(want).max(), text


def _status(path: Path, text: str) -> tuple[str, object]:
    from sheetgpt.check import check_workbook

    report = check_workbook(path, prompt=text)
    said = next(line for line in report.inputs if line.startswith("the prompt cell's tokenizer says"))
    return said.split(": ", 1)[1], report


@pytest.mark.parametrize("text, message, fails", [
    ("café", "Character 4 (é) is not ASCII", True),
    ("x" * 25, "Word 1 has 25 characters; the merge grid holds 20", True),
    (" a" * 20, "The prompt has more than 16 tokens; this book holds 16", True),
    ("", "Type a prompt into the yellow cell above.", False),
    ("a" * 130, "The prompt has 130 characters; this book reads 128", True),
])
def test_bad_input_gets_a_visible_message(typed_book, text, message, fails):
    said, report = _status(typed_book, text)
    assert message in said
    if fails:
        assert not report.ok and report.first_failure["step"] == "prompt_ids"


def test_too_many_tokens_names_the_count(typed_book):
    text = "xqzjvk zzzzzzzz qwpx vvkk"  # 4 words, 17 tokens
    said, report = _status(typed_book, text)
    assert "The prompt is 17 tokens; this book holds 16" in said and "--positions N" in said
    assert not report.ok


def test_an_override_cell_replaces_the_tokenizers_id(typed_book):
    """A learner's id in the override column is what the model reads; check computes with it."""
    from sheetgpt.check import check_workbook
    from sheetgpt.engines import CellOverride
    from sheetgpt.readback import load_book

    report = check_workbook(typed_book, overrides=[CellOverride("tokens", 4, 4, 464)])  # position 1 := " The"
    assert report.ok, report.first_failure
    book = load_book(typed_book, overrides=[CellOverride("tokens", 4, 4, 464)])
    assert book.ids[:3] == [15496, 464, 995] and book.token_text(book.ids[1]) == "The"


def test_the_sheet_text_shows_padding(typed_book):
    from sheetgpt.readback import load_book

    book = load_book(typed_book)
    texts = [book.values.value("tokens", 3 + t, 3) for t in range(POSITIONS)]
    assert texts[:4] == ["Hello", ",", " world", "!"] and texts[4:] == ["(padding)"] * (POSITIONS - 4)


def test_libreoffice_types_prompts_alike(typed_book, tiktoken_gpt2):
    """LibreOffice, the prompt typed in through UNO and the book recalculated, shows the
    fast engine's ids, token count and logits."""
    libreoffice_alike(typed_book, tiktoken_gpt2, prompts_for_tests(tiktoken_gpt2, 40, seed=3)[::5][:24], 20)


@pytest.mark.slow
def test_libreoffice_types_many_more_prompts_alike(typed_book, tiktoken_gpt2):
    libreoffice_alike(typed_book, tiktoken_gpt2, prompts_for_tests(tiktoken_gpt2, 100, seed=4), 150)


def libreoffice_alike(typed_book: Path, tiktoken_gpt2, prompts: list[str], at_least: int) -> None:
    if shutil.which("soffice") is None:
        pytest.skip("LibreOffice is not installed")
    from sheetgpt.engines.fast import Recalculation
    from sheetgpt.engines.libreoffice import recalculate_with_libreoffice
    from sheetgpt.readback import load_book, prompt_cell

    # what LibreOffice's setString stores differs for two kinds of text: "\r\n" arrives as "\n",
    # and a tab in text with a line break as "\x01" (the sheet then says it is not ASCII)
    prompts = [p for p in prompts if "\r" not in p and not ("\t" in p and "\n" in p)]
    assert len(prompts) >= at_least
    layout = load_book(typed_book).layout
    reads = [(b.sheet, b.row, b.col, b.n_rows, b.n_cols) for b in
             (layout.blocks[n] for n in ("prompt_ids", "n_tokens", "logits"))]
    lo = recalculate_with_libreoffice(typed_book, [[prompt_cell(typed_book, p)] for p in prompts], reads)
    recalc = Recalculation(typed_book)
    for text, (ids, n, logits) in zip(prompts, lo):
        n = int(n[0][0])
        assert [int(i[0]) for i in ids[:n]] == tiktoken_gpt2.encode_ordinary(text), text
        ours = load_book(typed_book, values=recalc.run([prompt_cell(typed_book, text)]))["logits"][:, 0]
        theirs = np.array([row[0] for row in logits], dtype=np.float64)
        assert np.abs(ours - theirs).max() <= 1e-12 * np.abs(ours).max(), text


def test_cli_build_positions_eval_and_check_prompt(tmp_path):
    book = tmp_path / "b.xlsx"
    r = run_cli("build", "To be", "--model", "tiny", "--positions", "20", "-o", str(book), "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 tokens in 20 positions" in r.stdout
    r = run_cli("eval", str(book), "--prompt", "ROMEO:", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["top"]) == 5
    r = run_cli("check", str(book), "--prompt", "Wherefore art thou", "--json", cwd=tmp_path)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["ok"], out["first_failure"]
    assert "token ids are exactly those of the prompt (4 tokens)" in out["inputs"]


def test_cli_build_falls_back_to_fixed_ids_beyond_ascii(tmp_path):
    book = tmp_path / "c.xlsx"
    r = run_cli("build", "café au lait", "--model", "tiny", "-o", str(book), "-q", cwd=tmp_path)
    assert r.returncode == 0 and "fixed token ids" in r.stderr
    r = run_cli("eval", str(book), "--prompt", "tea", cwd=tmp_path)
    assert r.returncode == 2 and "fixed token ids, not a prompt cell" in r.stderr
    r = run_cli("build", "To be", "--model", "tiny", "--fixed", "--positions", "5", "-o", str(book), cwd=tmp_path)
    assert r.returncode == 2 and "one position per token" in r.stderr
    r = run_cli("build", "café au lait", "--model", "tiny", "--generate", "2", "-o", str(book), cwd=tmp_path)
    assert r.returncode == 2 and "cannot read this prompt: Character 4 (é) is not ASCII" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_model_with_its_own_vocabulary(small_model, small_vocab_dir, tmp_path):
    """A model directory's own vocab.json and merges.txt: the sheet uses its merge table
    (merged ids are not 256 + rank there) and gets the ids of an independent encoder."""
    from sheetgpt.builder import build_workbook
    from sheetgpt.check import check_prompts

    from helpers import bpe_encode

    book = tmp_path / "own.xlsx"
    build_workbook(small_model, "the cat", book, progress=False, typed_prompt=True, positions=8)
    prompts = ["the cat", "The Cat's", " on\tthe\n", "there then", "a.b,c!"]
    assert all(len(bpe_encode(p, small_vocab_dir)) <= 8 for p in prompts)
    for text, report in zip(prompts, check_prompts(book, prompts)):
        assert report.ok, (text, report.first_failure)
        assert f"token ids are exactly those of the prompt ({len(bpe_encode(text, small_vocab_dir))} tokens)" \
            in report.inputs, (text, report.inputs)


def test_typed_books_are_byte_identical(gpt2_vocab_model, typed_book, tmp_path):
    from sheetgpt.builder import build_workbook

    again = tmp_path / "again.xlsx"
    build_workbook(gpt2_vocab_model, "Hello, world!", again, progress=False, typed_prompt=True, positions=POSITIONS)
    assert again.read_bytes() == typed_book.read_bytes()


def test_check_model_compares_the_merge_table(typed_book, gpt2_vocab_model, tmp_path):
    """--model: the book's merge table must be the model's; one changed rank is named."""
    from sheetgpt.check import check_workbook

    from helpers import edit_number, rewrite_part, sheet_parts

    report = check_workbook(typed_book, model=gpt2_vocab_model)
    assert report.ok and "the merge table is exactly model gpt2-vocab-test's (50,000 merges)" in report.inputs
    part = sheet_parts(typed_book)["merges"]
    bad = tmp_path / "bad.xlsx"
    rewrite_part(typed_book, bad, part, lambda xml: edit_number(xml, "F5", "7"))  # rank of the 2nd key
    report = check_workbook(bad, model=gpt2_vocab_model)
    assert not report.ok and report.first_failure["step"] == "merges"
