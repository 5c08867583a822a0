"""From token ids to the residual stream: a row of wte per token, plus a row of wpe per position."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..layout import Block, Layout
from .base import BuildInputs, Cells, Component, Formula, Positions, Values, numbered_header
from .controls import Controls


class TokenEmbedding(Component):
    stage = "embedding"
    kind = "embed_tok"
    short_title = "Token embedding"
    lesson = """
<p>A number such as 318 means nothing by itself, so each token id picks one row of the
token-embedding matrix <code>wte</code> ({{ "{:,}".format(m.V) }} rows, one per
vocabulary entry, of {{ m.D }} numbers each). That row is the model's learned
description of the token: tokens used in similar ways end up with similar rows.</p>
<p>Nothing is calculated yet, it is a lookup (<code>INDEX</code>). The same token gets
the same row wherever it stands in the prompt.</p>
"""

    def __init__(self, layout: Layout, positions: Positions, tokens: Block, wte: Block):
        super().__init__(layout)
        T, D = layout.T, layout.cfg.n_embd
        self.positions, self.tokens, self.wte = positions, tokens, wte
        self.add_sheet("embed_tok", f"Token embedding: row of wte for each token id [{T} x {D}]")
        self.out = self.add_block("embed_tok", T, D, note=(
            "INDEX picks, from the token embedding matrix wte, the row of this position's token id "
            "(+1 because ids start at 0): one column of it per cell."))
        self.read(tokens, wte)

    def compute(self, v: Values) -> None:
        ids = v[self.tokens.name][:, 0].astype(np.int64)  # [T]
        v[self.out.name] = v[self.wte.name][ids]  # [T, D]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        yield Formula(self.out, f"INDEX({self.wte.col_ref(0)},{self.tokens.span(0, 0, 0, 0, False, True)}+1)")
        yield self.positions.labels(self.out)
        yield numbered_header(self.out)


class AddPositions(Component):
    stage = "embedding"
    kind = "embed"
    short_title = "Adding the position"
    lesson = """
<p>Attention, the step that lets tokens talk to each other, has no sense of order:
without help, <q>dog bites man</q> and <q>man bites dog</q> would look alike. So GPT-2
adds a second learned vector that depends only on the position: row <i>t</i> of
<code>wpe</code> goes onto the token at position <i>t</i>.</p>
<p>The sum, a table of {{ m.T }} &times; {{ m.D }} numbers, is the <em>residual
stream</em> (plus the steering vector, when the steering layer on sheet
<code>controls</code> is 0). Every layer reads it and adds its own contribution to it; at the end the
last row of the stream decides the prediction.</p>
<p>The map below squeezes each {{ m.D }}-number row to 2 numbers (PCA) so it can be
drawn. In a trained GPT-2 a word that appears twice starts at one single point and is
only nudged by its two positions, so the two copies stay close together.</p>
"""

    def __init__(self, layout: Layout, positions: Positions, embed_tok: Block, wpe: Block, controls: Controls):
        super().__init__(layout)
        T, D = layout.T, layout.cfg.n_embd
        self.positions, self.embed_tok, self.wpe, self.controls = positions, embed_tok, wpe, controls
        self.add_sheet("embed", f"Input x = token embedding + position embedding (wpe) [{T} x {D}]")
        self.out = self.add_block("embed", T, D, note=(
            "The model's input x: token embedding plus the position embedding wpe of this position, so the "
            "same word at different places gets different vectors."))
        self.read(embed_tok, wpe, controls.vector)

    def compute(self, v: Values) -> None:
        T = self.out.n_rows
        v[self.out.name] = v[self.embed_tok.name] + v[self.wpe.name][:T] + self.controls.steering_of(v, 0)  # [T, D]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        steer = self.controls.steering(self.out, 0)
        yield Formula(self.out, f"{self.embed_tok.at(0, 0)}+{self.wpe.at(0, 0)}{steer}")
        yield self.positions.labels(self.out)
        yield numbered_header(self.out)
