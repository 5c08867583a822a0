"""Model loading: seeded random GPT-2s made in code, Hugging Face directories, GPT-2 small from the Hub.

Every failure a user can cause (bad name, missing or corrupt file, a checkpoint that is not
plain GPT-2, no network) becomes a one-line `UserError`.
"""
from __future__ import annotations

import contextlib
import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import UserError
from .model import GPT2Config, GPT2Weights, param_shapes
from .tokenizer import Tokenizer


@dataclass
class LoadedModel:
    name: str  # "tiny", "small-random", "gpt2" or the directory path
    weights: GPT2Weights
    tokenizer: Tokenizer
    random: bool  # True for tiny / small-random: predictions are meaningless (the UI says so)

    @property
    def about(self) -> str:
        """What the model is, in a phrase: every place that shows a prediction says it."""
        return describe(self.name, self.random)


MODEL_NAMES = ("shakespeare", "tiny", "small-random", "gpt2")
DEFAULT_MODEL = "shakespeare"
SHAKESPEARE_DIR = Path(__file__).resolve().parent / "data" / "shakespeare"  # trained here: training/
RANDOM_ABOUT = "RANDOM weights, so its predictions are meaningless; it shows the mechanics"
ABOUT = {
    "shakespeare": "a small GPT-2 trained on about 300k tokens of Shakespeare's plays, so it predicts "
                   "Shakespearean words, not GPT-2's",
    "gpt2": "GPT-2 small, the 124M-parameter model OpenAI trained",
}
TINY_CONFIG = GPT2Config(n_layer=2, n_head=2, n_embd=16, n_ctx=128, vocab_size=50257)
SMALL_CONFIG = GPT2Config(n_layer=12, n_head=12, n_embd=768, n_ctx=1024, vocab_size=50257)
RANDOM_SEED = 0  # seed of the named random models
GPT2_VOCAB_SIZE = 50257

GPT2_REPO = "openai-community/gpt2"
HUB_FILES = ["config.json", "model.safetensors", "vocab.json", "merges.txt"]
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")

# checkpoint entries that are not parameters: the causal-mask buffers of old checkpoints
_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")


def load_model(spec: str, cache_dir: str | Path | None = None) -> LoadedModel:
    """Load a model by name (see MODEL_NAMES) or from a Hugging Face directory."""
    if spec == "shakespeare":
        if not (SHAKESPEARE_DIR / "model.safetensors").is_file():
            raise UserError(f"the bundled model is missing from this installation ({SHAKESPEARE_DIR})")
        return _load_dir_model(SHAKESPEARE_DIR, spec)
    if spec == "tiny":
        return LoadedModel(spec, random_weights(TINY_CONFIG, RANDOM_SEED), Tokenizer.gpt2(), True)
    if spec == "small-random":
        return LoadedModel(spec, random_weights(SMALL_CONFIG, RANDOM_SEED), Tokenizer.gpt2(), True)
    if spec == "gpt2":
        return _load_dir_model(_download_gpt2(cache_dir), "gpt2")
    if spec and Path(spec).is_dir():  # Path("") is the current directory
        return _load_dir_model(Path(spec), spec)
    raise UserError(f"unknown model '{spec}': use {', '.join(MODEL_NAMES)} "
                    "or a directory with config.json and model.safetensors")


def describe(name: str, random: bool) -> str:
    """What a model is, from its name as given to --model (a workbook keeps it)."""
    return ABOUT.get(name) or (RANDOM_ABOUT if random else "trained GPT-2 weights")


def _load_dir_model(path: Path, name: str) -> LoadedModel:
    weights = load_checkpoint_dir(path)
    return LoadedModel(name, weights, _checkpoint_tokenizer(path, weights.config), False)


# --- seeded random models -------------------------------------------------------------


@lru_cache(maxsize=4)  # small-random is ~500 MB: keep only a few
def random_weights(cfg: GPT2Config, seed: int) -> GPT2Weights:
    """A seeded random GPT-2; cached, so its arrays are read-only (they are shared)."""
    return GPT2Weights(cfg, dict(random_arrays(cfg, seed)))


def random_arrays(cfg: GPT2Config, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """The random parameters one by one, drawn from one float32 stream in `param_shapes` order."""
    rng = np.random.default_rng(seed)
    for name, shape in param_shapes(cfg).items():
        arr = rng.standard_normal(shape, dtype=np.float32)
        arr *= _init_std(name)
        if _is_ln_gain(name):
            arr += 1  # gains near 1 keep activations sane through many layers
        arr.flags.writeable = False
        yield name, arr


def _is_ln_gain(name: str) -> bool:
    return name.endswith(".weight") and (name.startswith("ln_f.") or ".ln_" in name)


def _init_std(name: str) -> float:
    if name == "wpe.weight":
        return 0.01
    return 0.1 if _is_ln_gain(name) else 0.02


# --- Hugging Face checkpoint directories ----------------------------------------------


def load_checkpoint_dir(path: str | Path) -> GPT2Weights:
    """GPT-2 weights from a Hugging Face directory (config.json + model.safetensors or pytorch_model.bin)."""
    path = Path(path)
    cfg = _read_config(path / "config.json")
    file, tensors = _read_tensors(path)
    params = _gpt2_params(tensors, file)
    try:
        return GPT2Weights(cfg, params)
    except ValueError as e:  # missing parameter or wrong shape
        raise UserError(f"{file}: {e}") from None


def _read_config(file: Path) -> GPT2Config:
    if not file.is_file():
        raise UserError(f"{file.parent}: no config.json (not a Hugging Face model directory)")
    try:
        raw: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{file}: cannot read config ({_one_line(e)})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{file}: not a JSON object")
    _check_gpt2_math(raw, file)
    try:
        cfg = GPT2Config.from_dict(raw)
    except KeyError as e:
        raise UserError(f"{file}: missing field {e}") from None
    except (TypeError, ValueError) as e:
        raise UserError(f"{file}: bad field value ({_one_line(e)})") from None
    if min(cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_ctx, cfg.vocab_size) < 1 or cfg.n_embd % cfg.n_head:
        raise UserError(f"{file}: inconsistent sizes (n_embd {cfg.n_embd} must be a multiple of n_head {cfg.n_head})")
    return cfg


def _check_gpt2_math(raw: dict[str, Any], file: Path) -> None:
    """Reject configs whose forward pass differs from the one the workbook implements."""
    if raw.get("model_type", "gpt2") != "gpt2":
        raise UserError(f"{file}: model_type is '{raw['model_type']}', only gpt2 is supported")
    act = raw.get("activation_function", "gelu_new")
    if act not in GELU_TANH:
        raise UserError(f"{file}: activation_function '{act}' is not GPT-2's tanh GELU ({' or '.join(GELU_TANH)})")
    n_inner = raw.get("n_inner")
    if n_inner is not None and n_inner != 4 * raw.get("n_embd", 0):
        raise UserError(f"{file}: n_inner {n_inner} is not 4 * n_embd as in GPT-2")
    if raw.get("scale_attn_by_inverse_layer_idx", False) or not raw.get("scale_attn_weights", True):
        raise UserError(f"{file}: attention scaling differs from GPT-2 (scale_attn_* options)")


def _read_tensors(path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    st, bin_ = path / "model.safetensors", path / "pytorch_model.bin"
    if st.is_file():
        return st, _read_safetensors(st)
    if bin_.is_file():
        return bin_, _read_torch_bin(bin_)
    raise UserError(f"{path}: no model.safetensors or pytorch_model.bin")


def _read_safetensors(file: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="np") as f:
            names = list(f.keys())
            bf16 = {n for n in names if f.get_slice(n).get_dtype() == "BF16"}
            out = {n: f.get_tensor(n) for n in names if n not in bf16}
        if bf16:
            out |= _read_bf16(file, bf16)  # NumPy has no bfloat16: the safetensors numpy API refuses it
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise UserError(f"{file}: corrupt or unreadable safetensors file ({_one_line(e)})") from None
    return out


def _read_bf16(file: Path, names: set[str]) -> dict[str, np.ndarray]:
    """Read bfloat16 tensors straight from the safetensors layout, widened to float32."""
    with open(file, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
        out = {}
        for name in names:
            start, end = header[name]["data_offsets"]
            f.seek(8 + header_len + start)
            raw = np.frombuffer(f.read(end - start), dtype="<u2")
            # bfloat16 is the top half of a float32
            out[name] = (raw.astype(np.uint32) << 16).view(np.float32).reshape(header[name]["shape"])
    return out


def _read_torch_bin(file: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise UserError(f"{file}: reading pytorch_model.bin needs torch (pip install torch), "
                        "or convert the checkpoint to model.safetensors") from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors have no common base class
        raise UserError(f"{file}: corrupt or unreadable checkpoint ({_one_line(e)})") from None
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise UserError(f"{file}: not a state dict of tensors")
    # NumPy has no bfloat16: widen half precisions in torch
    return {k: (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy() for k, t in state.items()}


def _gpt2_params(tensors: dict[str, np.ndarray], file: Path) -> dict[str, np.ndarray]:
    """Checkpoint entries -> float32 parameters named as in `param_shapes` (both key layouts)."""
    params: dict[str, np.ndarray] = {}
    lm_head = None
    for key, arr in tensors.items():
        name = key.removeprefix("transformer.")
        if name == "lm_head.weight":
            lm_head = arr
        elif not _BUFFER.fullmatch(name):
            params[name] = arr
    unknown = [k for k in params if not _known_name(k)]
    if unknown:  # e.g. cross-attention or a classification head: the workbook would silently ignore them
        raise UserError(f"{file}: unexpected parameter '{unknown[0]}': not a plain GPT-2 checkpoint")
    wte = params.get("wte.weight")
    if lm_head is not None and wte is not None and not (lm_head.shape == wte.shape and np.array_equal(lm_head, wte)):
        raise UserError(f"{file}: lm_head.weight differs from wte.weight: untied unembedding is not GPT-2")
    for name, arr in params.items():
        arr = params[name] = arr.astype(np.float32, copy=False)
        if not np.isfinite(arr).all():
            raise UserError(f"{file}: parameter {name} has NaN or infinite values; "
                            "the spreadsheet format cannot hold them")
    return params


def _known_name(name: str) -> bool:
    return bool(re.fullmatch(r"(wte|wpe)\.weight|ln_f\.(weight|bias)"
                             r"|h\.\d+\.(ln_[12]|attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.(weight|bias)", name))


def _checkpoint_tokenizer(path: Path, cfg: GPT2Config) -> Tokenizer:
    """The directory's own vocab.json + merges.txt, else the bundled GPT-2 one."""
    vocab, merges = path / "vocab.json", path / "merges.txt"
    if vocab.is_file() != merges.is_file():
        missing = merges if vocab.is_file() else vocab
        raise UserError(f"{path}: has {'vocab.json' if vocab.is_file() else 'merges.txt'} but no {missing.name}")
    if vocab.is_file():
        try:
            tok = Tokenizer.from_files(vocab, merges)
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"{vocab} / {merges.name}: cannot read tokenizer ({_one_line(e)})") from None
    elif cfg.vocab_size != GPT2_VOCAB_SIZE:
        raise UserError(f"{path}: no vocab.json/merges.txt, and vocab_size {cfg.vocab_size} "
                        f"is not GPT-2's {GPT2_VOCAB_SIZE}")
    else:
        tok = Tokenizer.gpt2()
    if tok.vocab_size != cfg.vocab_size:
        raise UserError(f"{path}: config.json vocab_size {cfg.vocab_size} differs from "
                        f"the tokenizer's {tok.vocab_size} tokens")
    return tok


# --- GPT-2 small from the Hugging Face Hub --------------------------------------------


def _download_gpt2(cache_dir: str | Path | None) -> Path:
    """The cached GPT-2 small snapshot, downloading it first if needed."""
    # lazy: slow to import, and only this path needs it; submodules are imported explicitly
    # because the package's lazy __getattr__ does not expose them before first use
    import huggingface_hub as hub
    from huggingface_hub import constants

    kwargs: dict[str, Any] = dict(repo_id=GPT2_REPO, allow_patterns=HUB_FILES, cache_dir=cache_dir)
    with contextlib.suppress(Exception):  # not (fully) cached yet: download below
        return Path(hub.snapshot_download(**kwargs, local_files_only=True))
    timeout = constants.HF_HUB_ETAG_TIMEOUT  # 10 s unless the user set HF_HUB_ETAG_TIMEOUT
    try:
        # snapshot_download's first request has no timeout (it could hang for minutes on a
        # firewalled machine), so probe the Hub with one first
        hub.HfApi().model_info(GPT2_REPO, timeout=timeout)
        with _quiet_progress_bars():
            return Path(hub.snapshot_download(**kwargs, etag_timeout=timeout))
    except Exception as e:  # connection, timeout, offline mode, HTTP errors: all mean "no GPT-2"
        raise UserError(f"cannot download GPT-2 small from the Hugging Face Hub (no network?): "
                        f"{_one_line(e)}; use --model tiny, or a local model directory") from None


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """Progress bars help on a terminal, but are noise in logs and captured output."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    quiet = not sys.stderr.isatty() and not are_progress_bars_disabled()
    if quiet:
        disable_progress_bars()
    try:
        yield
    finally:
        if quiet:
            enable_progress_bars()


def _one_line(e: BaseException, limit: int = 200) -> str:
    """An exception as one short line: library messages are often multi-line."""
    lines = str(e).strip().splitlines()
    text = f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": .")
    return text if len(text) <= limit else text[: limit - 3] + "..."
