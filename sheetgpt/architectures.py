"""The model variants a book can be laid out as, by name. A book records its architecture's
name (BookOptions.architecture, on the metadata sheet) and readback looks it up here, so a
variant is built, checked and exported without passing its compose function around."""
from __future__ import annotations

from typing import Callable, Sequence

from .errors import UserError
from .gpt2 import gpt2
from .layout import BookOptions, Layout
from .model import GPT2Config
from .steps.base import Component

Architecture = Callable[[Layout], Sequence[Component]]  # declares a book's components in order

ARCHITECTURES: dict[str, Architecture] = {"gpt2": gpt2}


def register(name: str, compose: Architecture) -> None:
    """Make a variant known by name (a test's, or a plugin's)."""
    if ARCHITECTURES.get(name, compose) is not compose:
        raise ValueError(f"another architecture is registered as {name!r}")
    ARCHITECTURES[name] = compose


def lay_out(cfg: GPT2Config, n_tokens: int, options: BookOptions = BookOptions(),
            n_merges: int | None = None) -> Layout:
    """The layout of a book of options.architecture (see Layout for the rest)."""
    compose = ARCHITECTURES.get(options.architecture)
    if compose is None:
        raise UserError(f"architecture {options.architecture!r} is not one this sheetgpt knows "
                        f"({', '.join(sorted(ARCHITECTURES))})")
    return Layout(cfg, n_tokens, compose, n_merges, options)
