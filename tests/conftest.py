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


# --- workbooks --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def small_vocab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vocab.json + merges.txt of write_bpe_vocab (~357 tokens)."""
    path = tmp_path_factory.mktemp("small_vocab")
    write_bpe_vocab(path)
    return path


@pytest.fixture(scope="session")
def small_model(small_vocab_dir: Path):
    """A 1-layer, 2-head, width-8 random GPT-2 with the small vocabulary: small enough for the
    `formulas` evaluator."""
    import json

    from sheetgpt.load import LoadedModel, random_weights
    from sheetgpt.model import GPT2Config
    from sheetgpt.tokenizer import Tokenizer

    from helpers import SMALL_SHAPE

    vocab_size = len(json.loads((small_vocab_dir / "vocab.json").read_text(encoding="utf-8")))
    cfg = GPT2Config(**SMALL_SHAPE, vocab_size=vocab_size)
    tok = Tokenizer.from_files(small_vocab_dir / "vocab.json", small_vocab_dir / "merges.txt")
    return LoadedModel("small-test", random_weights(cfg, 7), tok, random=True)


@pytest.fixture(scope="session")
def small_book(small_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small model's workbook for helpers.SMALL_PROMPT (tests must not modify it)."""
    from sheetgpt.builder import build_workbook

    from helpers import SMALL_PROMPT

    path = tmp_path_factory.mktemp("small_book") / "small.xlsx"
    build_workbook(small_model, SMALL_PROMPT, path, progress=False)
    return path


@pytest.fixture(scope="session")
def small_model_dir(small_model, small_vocab_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small model saved as a Hugging Face directory (for the command line)."""
    from helpers import SMALL_SHAPE, save_model_dir

    return save_model_dir(tmp_path_factory.mktemp("small_model") / "small-model", params=small_model.weights.params,
                          vocab_dir=small_vocab_dir, **SMALL_SHAPE)


@pytest.fixture(scope="session")
def scores_tampered_book(small_book: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small_book with layer 0's head-0 scores formula dividing by SQRT(2*dh) instead of SQRT(dh)."""
    from helpers import defined_names, range_box, cell_address, rewrite_part, sheet_parts, edit_formula

    sheet, ref = defined_names(small_book)["h0_scores"]
    r0, c0, _, _ = range_box(ref)
    path = tmp_path_factory.mktemp("tampered") / "scores.xlsx"
    rewrite_part(small_book, path, sheet_parts(small_book)[sheet],
                 lambda xml: edit_formula(xml, cell_address(r0, c0), "/SQRT(", "/SQRT(2*"))
    return path


@pytest.fixture(scope="session")
def tiny_model():
    from sheetgpt.load import load_model

    return load_model("tiny")


@pytest.fixture(scope="session")
def tiny_book(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled `tiny` model's workbook (50,257-token vocabulary: build-level tests only)."""
    from sheetgpt.builder import build_workbook

    from helpers import TINY_PROMPT

    path = tmp_path_factory.mktemp("tiny_book") / "tiny.xlsx"
    build_workbook(tiny_model, TINY_PROMPT, path, progress=False)
    return path


@pytest.fixture(scope="session")
def small_cells_book(small_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small_book in the cells form (one formula per cell: what IronCalc computes)."""
    from sheetgpt.builder import build_workbook
    from sheetgpt.layout import BookOptions

    from helpers import SMALL_PROMPT

    path = tmp_path_factory.mktemp("small_cells_book") / "small.xlsx"
    build_workbook(small_model, SMALL_PROMPT, path, progress=False, options=BookOptions(form="cells"))
    return path


@pytest.fixture(scope="session")
def tiny_cells_book(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_book in the cells form."""
    from sheetgpt.builder import build_workbook
    from sheetgpt.layout import BookOptions

    from helpers import TINY_PROMPT

    path = tmp_path_factory.mktemp("tiny_cells_book") / "tiny.xlsx"
    build_workbook(tiny_model, TINY_PROMPT, path, progress=False, options=BookOptions(form="cells"))
    return path
