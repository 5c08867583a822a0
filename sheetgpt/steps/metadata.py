"""The hidden sheet that says what made the workbook: read back by check, eval and export."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

from .. import __version__
from ..errors import UserError
from ..layout import Block, Layout
from ..xlsx import SheetOptions
from .base import BuildInputs, Cells, Component, Constants

if TYPE_CHECKING:
    from ..engines import EvaluatedBook

META_SHEET = "_meta"
FORMAT = "sheetgpt-workbook"
FORMAT_VERSION = 2  # 2: the selftest sheet
MAX_KEYS = 64


class Metadata(Component):
    stage = "meta"
    decorated = False

    def __init__(self, layout: Layout, probes: Sequence[str] = ()):
        """probes: the names of the probes whose options the sheet records (sheetgpt.probes)."""
        super().__init__(layout)
        self.probes = list(probes)
        self.add_sheet(META_SHEET, "sheetgpt metadata")

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        cfg, model = self.layout.cfg, inputs.model
        items = {"format": FORMAT, "format_version": FORMAT_VERSION, "sheetgpt_version": __version__,
                 "model": model.name, "random_weights": int(model.random),
                 "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd, "n_ctx": cfg.n_ctx,
                 "vocab_size": cfg.vocab_size, "layer_norm_epsilon": cfg.layer_norm_epsilon,
                 "n_tokens": self.layout.T, "prompt": inputs.prompt}
        if self.layout.typed_prompt:  # n_tokens above is then the book's capacity
            items |= {"n_merges": self.layout.n_merges}
        items |= self.layout.options.to_meta(self.probes)
        yield Constants(Block("", META_SHEET, 1, 1, len(items), 2), [[k, v] for k, v in items.items()], given=True)

    def sheet_options(self, inputs: BuildInputs) -> SheetOptions:
        return SheetOptions(hidden=True)


def read_meta(values: "EvaluatedBook") -> dict[str, object]:
    """The key/value rows of the metadata sheet; refuses a sheet sheetgpt did not write."""
    meta = {}
    for r in range(1, MAX_KEYS):
        key = values.value(META_SHEET, r, 1)
        if key is None:
            break
        meta[str(key)] = values.value(META_SHEET, r, 2)
    if meta.get("format") != FORMAT:
        raise UserError(f"the {META_SHEET} sheet does not describe a sheetgpt workbook")
    return meta
