"""The last position's final row against every token's embedding: one logit per token."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..layout import Block, Layout
from .base import (ArrayFormula, BuildInputs, Cells, Component, Formula, Positions, Shown, Values, column, header,
                   labels_column)


class Logits(Component):
    """Column A the token id, B its text, C its logit (then, from Prediction, exp and probability)."""

    stage, kind, short_title = "output", "logits", "Logits: a score for every token"
    lesson = """
<p>Only the last position predicts the next token. Its final row ({{ m.D }} numbers) is
compared with every row of the token-embedding matrix <code>wte</code>, the same matrix
that turned ids into vectors at the start (<em>weight tying</em>): the logit of token
<i>i</i> is the dot product of the two vectors (<code>SUMPRODUCT</code>). The more the
final vector points the way of a token's embedding, the higher its logit.</p>
<p>One cell per vocabulary entry: {{ "{:,}".format(m.V) }} logits. The two columns next to
them apply the softmax: exp(logit &minus; max), then that divided by the sum of all of
them, with the maximum and the sum computed on sheet <code>prediction</code>.</p>
"""

    def __init__(self, layout: Layout, positions: Positions, final: Block, wte: Block, vocab: Block):
        """positions: which of final's rows is the last filled one (it predicts)."""
        super().__init__(layout)
        self.positions, self.final, self.wte, self.vocab = positions, final, wte, vocab
        V = layout.cfg.vocab_size
        self.add_sheet("logits", f"Logits for the next token: last position's ln_f row . each wte row [{V}]; "
                                 "probabilities")
        self.out = self.add_block("logits", V, 1, col=3, note=(
            "The score of this vocabulary token as the next token: the last position's ln_f row dotted with the "
            "token's row of wte (the same matrix as the input embedding: tied weights)."))
        self.text = self.out.part(col=2)  # each token's text
        self.last = None  # with a typed prompt: the final row of the last position it fills
        if positions.count is not None:
            self.last = self.add_block("last_row", 1, final.n_cols, col=7, note=(
                "The final row of the last filled position (the prompt's, or the last generated one): positions "
                "after it are padding."))
        self.read(final, wte)

    def compute(self, v: Values) -> None:
        last = v[self.final.name][self.positions.last_row(v)]  # [D]: only the last (real) position predicts
        if self.last is not None:
            v[self.last.name] = last[None, :]  # [1, D]
        v[self.out.name] = (last @ v[self.wte.name].T)[:, None]  # [V, 1], tied unembedding

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        T, D = self.final.shape
        last = self.final.span(T - 1, 0, T - 1, D - 1, True, True)
        if self.last is not None:
            yield Formula(self.last, f"INDEX({self.final.col_ref(0)},{self.positions.last_position()})")
            yield header(self.last, [f"ln_f {j}" for j in range(D)])
            last = self.last.ref()
        if self.layout.options.arrays:
            yield ArrayFormula(self.out, f"MMULT({self.wte.ref()},TRANSPOSE({last}))")
        else:
            yield Formula(self.out, f"SUMPRODUCT({last},{self.wte.rows_ref(0)})")
        yield column(labels_column(self.out), np.arange(self.out.n_rows))
        yield Formula(self.text, self.vocab.at(0, 0),
                      shows=Shown("logits_text", lambda v, vocab: [vocab(i) for i in range(self.text.n_rows)]))
        yield header(self.text, ["token", "logit", "exp(logit - max)", "probability"])
