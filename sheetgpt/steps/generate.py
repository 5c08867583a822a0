"""The book writes on: the K positions after the prompt take its own greedy choice, the
argmax of the previous position's logits (ties to the lowest id), so the continuation
follows whatever prompt is typed.

Only the positions that predict a generated token get an unembedding; each such column
is guarded by an IF, so a spreadsheet computes the K that the prompt's length selects.
Every reference points at an earlier position: the cells form no cycle, though the
blocks do (tokens -> ... -> ln_f -> next ids -> later tokens).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..layout import Block, Layout
from ..xlsx import Style
from .base import (ArrayFormula, BuildInputs, CellFormulas, Cells, Component, Constants, Formula, Shown, Values,
                   column, header, labels_column)


def generated_span(layout: Layout, n_tokens: int) -> range:
    """The positions a prompt of n_tokens tokens leaves to generation."""
    start = max(1, n_tokens)
    return range(start, min(layout.T, start + layout.options.generate))


class NextTokenLogits(Component):
    """Column p: the logits after position p, where position p + 1 is generated; else empty."""

    stage, kind, short_title = "output", "next_logits", "Logits at every position that writes"
    lesson = """
<p>To write, the model does what it does for its prediction, at every position whose next
token it writes: that position's final row (after <code>ln_f</code>) is dotted with every
row of <code>wte</code>. Column <i>p</i> holds the logits after position <i>p</i>.</p>
<p>A column is filled only where position <i>p</i> + 1 is one of the {{ m.generate }}
generated positions; the others stay empty (an <code>IF</code> skips them), so generating
{{ m.generate }} tokens costs {{ m.generate }} unembeddings of {{ "{:,}".format(m.V) }}
dot products each, whatever the prompt's length.</p>
"""

    def __init__(self, layout: Layout, final: Block, wte: Block, vocab: Block):
        super().__init__(layout)
        T, V = layout.T, layout.cfg.vocab_size
        self.final, self.wte, self.vocab = final, wte, vocab
        self.add_sheet("next_logits", f"Logits after each position p, where the next position is generated: ln_f "
                                      f"row p . each wte row [{V} x {T - 1}]")
        self.out = self.add_block("next_logits", V, T - 1, col=3, note=(
            "The score of this token as the next one after position p (the column): position p's ln_f row dotted "
            "with the token's row of wte. Empty where position p + 1 is not generated."))
        self.read(final, wte, vocab)

    def compute(self, v: Values) -> None:
        logits = np.full(self.out.shape, np.nan)  # [V, T - 1]
        for q in generated_span(self.layout, int(v["n_tokens"][0, 0])):
            logits[:, q - 1] = v[self.wte.name] @ v[self.final.name][q - 1]  # [V]
        v[self.out.name] = logits

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        D = self.final.n_cols
        for p in range(self.out.n_cols):
            row = self.final.span(p, 0, p, D - 1, True, True)
            guard = f"AND({p + 1}>=gen_start,{p + 1}<n_filled)"
            if self.layout.options.arrays:
                yield ArrayFormula(self.out.part(col0=p, n_cols=1),
                                   f"IF({guard},MMULT({self.wte.ref()},TRANSPOSE({row})),\"\")")
            else:
                yield Formula(self.out.part(col0=p, n_cols=1), f"IF({guard},SUMPRODUCT({row},{self.wte.rows_ref(0)}),\"\")")
        yield column(labels_column(self.out), range(self.out.n_rows))
        yield Formula(self.out.part(col=2, n_cols=1), self.vocab.at(0, 0),
                      shows=Shown("next_logits_text", lambda v, vocab: [vocab(i) for i in range(self.out.n_rows)]))
        yield header(self.out.part(col=2, n_cols=self.out.n_cols + 1),
                     ["token"] + [f"after position {p}" for p in range(self.out.n_cols)])


class Generation(Component):
    stage, kind, short_title = "output", "generate", "Writing on: greedy generation"
    lesson = """
<p>A language model writes one token at a time: predict, append the favourite, predict
again. Here the book does it by itself: the position right after the prompt takes the
token with the largest logit after the prompt's last position, the next position the
favourite after that one, and so on for {{ m.generate }} positions (<code>MATCH</code> of
the <code>MAX</code>: ties go to the lowest id). This is <em>greedy</em> decoding.</p>
<p>Type another prompt and the whole continuation is written again. Every generated
position goes through every layer like the prompt's own tokens, visible cell by cell;
its attention reads only earlier positions, so nothing circles back.</p>
"""

    def __init__(self, layout: Layout, logits: NextTokenLogits, vocab: Block):
        super().__init__(layout)
        T, K = layout.T, layout.options.generate
        self.logits, self.vocab = logits.out, vocab
        self.add_sheet("generate", f"Generation: the next token after each position (argmax of its logits), and "
                                   f"the {K} tokens the book writes after the prompt")
        self.next_ids = self.add_block("next_ids", T - 1, 1, note=(
            "The token with the largest logit after this position (MATCH of the MAX; ties to the lowest id). "
            "Empty where the next position is not generated."))
        self.next_text = self.next_ids.part(col=3)
        self.start = self.add_block("gen_start", 1, 1, row=3, col=6, note="The first generated position: right "
                                                                          "after the prompt.")
        self.filled = self.add_block("n_filled", 1, 1, row=4, col=6, note=(
            f"Positions the prompt and the generated tokens fill (at most {T}): the prediction reads the last."))
        self.generated = self.add_block("generated", K, 1, row=3, col=9, note=(
            "The token generated at this position: the next token after the position before it."))
        self.generated_text = self.generated.part(col=10)
        layout.n_filled = self.filled
        self.read(self.logits, layout.n_tokens)

    def compute(self, v: Values) -> None:
        T, K = self.layout.T, self.layout.options.generate
        span = generated_span(self.layout, int(v["n_tokens"][0, 0]))
        logits = v[self.logits.name]  # [V, T - 1], NaN where not generated
        nxt = np.full((T - 1, 1), np.nan)
        for q in span:
            nxt[q - 1, 0] = np.argmax(logits[:, q - 1])  # the first of the largest, as MATCH finds it
        generated = np.full((K, 1), np.nan)
        generated[:len(span), 0] = nxt[span.start - 1:span.stop - 1, 0]
        v[self.next_ids.name], v[self.generated.name] = nxt, generated
        v[self.start.name] = np.array([[span.start]], float)
        v[self.filled.name] = np.array([[min(T, span.start + K)]], float)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        T, K, V = self.layout.T, self.layout.options.generate, self.logits.n_rows
        yield column(labels_column(self.next_ids), range(T - 1))
        yield header(self.next_ids.part(n_cols=2), ["next token id after position (column A)", "next token"])
        yield CellFormulas(self.next_ids, [[
            f"IF(AND({p + 1}>=gen_start,{p + 1}<n_filled),MATCH(MAX({col}),{col},0)-1,\"\")"
            for col in [self.logits.span(0, p, V - 1, p, True, True)]] for p in range(T - 1)], Style.INTEGER)
        vocab = self.vocab.span(0, 0, V - 1, 0, True, True)
        yield Formula(self.next_text, f"IF({self.next_ids.cell(0, 0)}=\"\",\"\",INDEX({vocab},"
                                      f"{self.next_ids.cell(0, 0)}+1))",
                      shows=Shown("next_text", lambda v, vocab: _texts(v[self.next_ids.name], vocab)))
        yield Constants(self.start.part(col=5, n_rows=2), [["first generated position"], ["positions filled"]],
                        Style.HEADER)
        yield Formula(self.start, "MAX(1,n_tokens)", Style.INTEGER)
        yield Formula(self.filled, f"MIN({T},gen_start+{K})", Style.INTEGER)
        yield header(self.generated.part(col=8, n_cols=3), ["generated", "token id", "token"])
        yield column(self.generated.part(col=8), range(1, K + 1))
        yield Formula(self.generated, f"IF(gen_start+$H{self.generated.row}-1<{T},INDEX(next_ids,gen_start+"
                                      f"$H{self.generated.row}-1),\"\")", Style.INTEGER)
        yield Formula(self.generated_text, f"IF({self.generated.cell(0, 0)}=\"\",\"\",INDEX({vocab},"
                                           f"{self.generated.cell(0, 0)}+1))",
                      shows=Shown("generated_text", lambda v, vocab: _texts(v[self.generated.name], vocab)))

    def continuation(self) -> str:
        """A formula for the generated text, token after token."""
        return "&".join(self.generated_text.at(g, 0) for g in range(self.generated.n_rows))


def continuation(v: Values, vocab) -> str:
    return "".join(_texts(v["generated"], vocab))


def _texts(ids: np.ndarray, vocab) -> list[str]:
    return ["" if np.isnan(i) else vocab(int(i)) for i in ids[:, 0]]
