"""The logit lens: what the model would predict if it stopped after each layer. The last
filled position's residual stream after every layer goes through the final layer norm and
the tied unembedding, as the real output does after the last layer."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from ..layout import FIRST_ROW, Block, Layout
from ..steps.base import (ArrayFormula, BuildInputs, CellFormulas, Cells, Chart, Component, Formula, Positions, Shown,
                          Values, column, header, labels_column, token_texts)
from ..steps.layer_norm import LayerNorm
from ..xlsx import Style
from .base import Forward, Probe

if TYPE_CHECKING:
    from ..lesson import Figure
    from ..readback import BookContents


class LensStream(Component):
    stage, kind, short_title = "output", "lens_stream", "Logit lens: the stream after each layer"
    lesson = """
<p>What does the model think after layer 0, after layer 1, ...? The <em>logit lens</em>
reads the residual stream of the last position after every layer as if it were the
last: through the final layer norm and the unembedding. Row <i>l</i> of this sheet is
that position's row of layer <i>l</i>'s output.</p>
"""

    def __init__(self, layout: Layout, positions: Positions, outputs: list[Block]):
        super().__init__(layout)
        L, D = len(outputs), layout.cfg.n_embd
        self.positions, self.outputs = positions, outputs
        self.add_sheet("lens_stream", f"Logit lens 1: the last position's residual stream after each layer [{L} x {D}]")
        self.out = self.add_block("lens_stream", L, D, note=(
            "The last filled position's row of this layer's output (INDEX picks it by the number of filled "
            "positions)."))
        self.read(*outputs)

    def compute(self, v: Values) -> None:
        t = self.positions.last_row(v)
        v[self.out.name] = np.stack([v[b.name][t] for b in self.outputs])  # [L, D]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        for layer, b in enumerate(self.outputs):
            yield Formula(self.out.part(row0=layer, n_rows=1), f"INDEX({b.col_ref(0)},{self.positions.last_position()})")
        yield column(labels_column(self.out), (f"after layer {i}" for i in range(self.out.n_rows)))
        yield header(self.out, list(range(self.out.n_cols)))


class LensLogits(Component):
    """Column l: the logits after layer l; beside them, exp(logit - that column's max)."""

    stage, kind, short_title = "output", "lens_logits", "Logit lens: logits after each layer"
    lesson = """
<p>Each normalised row dotted with every row of <code>wte</code>, as for the real
prediction: one column of {{ "{:,}".format(m.V) }} logits per layer, then beside them
exp(logit &minus; the column's largest), which the softmax on sheet <code>lens</code> sums.</p>
"""

    def __init__(self, layout: Layout, normed: Block, wte: Block, vocab: Block):
        super().__init__(layout)
        V, L = layout.cfg.vocab_size, normed.n_rows
        self.normed, self.wte, self.vocab = normed, wte, vocab
        self.add_sheet("lens_logits", f"Logit lens 3: logits after each layer (lens_norm row . each wte row) and "
                                      f"their exps [{V} x {L}]")
        self.out = self.add_block("lens_logits", V, L, col=3, note=(
            "The logit of this token if the model stopped after this layer: the layer's normalised row dotted with "
            "the token's row of wte."))
        self.exp = self.add_block("lens_exp", V, L, col=4 + L, note=(
            "exp(logit - the column's largest logit): the softmax's numerator."))
        self.max: Block | None = None  # the summary's per-layer maxima (declared by LensSummary)
        self.read(normed, wte)

    def compute(self, v: Values) -> None:
        logits = v[self.wte.name] @ v[self.normed.name].T  # [V, L]
        v[self.out.name], v[self.exp.name] = logits, np.exp(logits - logits.max(axis=0))  # [V, L]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        D, L = self.normed.n_cols, self.normed.n_rows
        if self.layout.options.arrays:
            yield ArrayFormula(self.out, f"MMULT({self.wte.ref()},TRANSPOSE({self.normed.ref()}))")
        for layer in range(L):
            if not self.layout.options.arrays:
                row = self.normed.span(layer, 0, layer, D - 1, True, True)
                yield Formula(self.out.part(col0=layer, n_cols=1), f"SUMPRODUCT({row},{self.wte.rows_ref(0)})")
            yield Formula(self.exp.part(col0=layer, n_cols=1),
                          f"EXP({self.out.cell(0, layer)}-{self.max.span(layer, 0, layer, 0, True, True)})")
        yield column(labels_column(self.out), range(self.out.n_rows))
        yield Formula(self.out.part(col=2, n_cols=1), self.vocab.at(0, 0),
                      shows=Shown("lens_logits_text", lambda v, vocab: [vocab(i) for i in range(self.out.n_rows)]))
        yield header(self.out.part(col=2, n_cols=2 * L + 2),
                     ["token"] + [f"logit after layer {i}" for i in range(L)] + [""]
                     + [f"exp after layer {i}" for i in range(L)])


class LensSummary(Component):
    """Per layer: the top token, its probability, and where the final prediction ranks."""

    stage, kind, short_title = "output", "lens", "Logit lens: the prediction, layer by layer"
    lesson = """
<p>Row <i>l</i>: the token the model would predict after layer <i>l</i>, its probability
(a softmax of that layer's column: 1 / the sum of exps, since the top token's exp is 1),
and the rank the final prediction has there (1: it is already the favourite;
<code>RANK</code> counts the tokens scoring higher). In a trained GPT-2 the answer
often appears in the middle layers and the last ones sharpen it: the model refines its
guess layer by layer.</p>
"""

    def __init__(self, layout: Layout, logits: LensLogits, final_top: Block, vocab: Block):
        super().__init__(layout)
        L = logits.out.n_cols
        self.logits, self.exp, self.final_top, self.vocab = logits.out, logits.exp, final_top, vocab
        self.add_sheet("lens", f"Logit lens: the top token after each layer, its probability and the final "
                               f"prediction's rank [{L} layers]")
        self.top_ids = self.add_block("lens_top_ids", L, 1, note="The token with the largest logit after this layer "
                                                                 "(MATCH of the MAX).")
        self.top_text = self.top_ids.part(col=3)
        self.top_probs = self.add_block("lens_top_probs", L, 1, col=4, note=(
            "Its probability after this layer: 1 / the sum of the column's exps."))
        self.ranks = self.add_block("lens_ranks", L, 1, col=5, note=(
            "Where the final prediction ranks after this layer (1: first)."))
        self.max = self.add_block("lens_max", L, 1, col=6, note="The column's largest logit.")
        self.sum = self.add_block("lens_sum", L, 1, col=7, note="The sum of the column's exp(logit - max).")
        self.final_probs = self.add_block("lens_final_probs", L, 1, col=8, note=(
            "The final prediction's probability after this layer: its exp / the sum of the column's exps."))
        logits.max = self.max
        self.color_scales += [self.top_probs, self.final_probs]
        self.charts.append(Chart(Block("", self.sheet.name, FIRST_ROW, 10, 16, 8), "Logit lens: how sure each layer is",
                                 labels_column(self.top_ids),
                                 [("its top token", self.top_probs), ("the final prediction", self.final_probs)],
                                 kind="column", percent=True))
        self.read(self.logits, self.exp, final_top, vocab)

    def compute(self, v: Values) -> None:
        logits, e = v[self.logits.name], v[self.exp.name]  # [V, L]
        final = logits[int(v[self.final_top.name][0, 0])]  # [L]: the final prediction's logit after each layer
        v[self.max.name], v[self.sum.name] = logits.max(axis=0)[:, None], e.sum(axis=0)[:, None]
        v[self.top_ids.name] = logits.argmax(axis=0).astype(float)[:, None]  # the first of the largest
        v[self.top_probs.name] = 1 / v[self.sum.name]
        v[self.ranks.name] = ((logits > final).sum(axis=0) + 1).astype(float)[:, None]
        v[self.final_probs.name] = e[int(v[self.final_top.name][0, 0])][:, None] / v[self.sum.name]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        V, L = self.logits.n_rows, self.logits.n_cols
        cols = [self.logits.span(0, i, V - 1, i, True, True) for i in range(L)]
        exps = [self.exp.span(0, i, V - 1, i, True, True) for i in range(L)]
        final = self.final_top.span(0, 0, 0, 0, True, True)
        yield CellFormulas(self.max, [[f"MAX({c})"] for c in cols])
        yield CellFormulas(self.sum, [[f"SUM({e})"] for e in exps])
        yield CellFormulas(self.top_ids, [[f"MATCH({self.max.cell(i, 0)},{c},0)-1"] for i, c in enumerate(cols)],
                           Style.INTEGER)
        yield Formula(self.top_probs, f"1/{self.sum.cell(0, 0)}", Style.PERCENT)
        yield CellFormulas(self.ranks, [[f"RANK(INDEX({c},{final}+1),{c})"] for c in cols], Style.INTEGER)
        yield CellFormulas(self.final_probs, [[f"INDEX({e},{final}+1)/{self.sum.cell(i, 0)}"]
                                              for i, e in enumerate(exps)], Style.PERCENT)
        yield Formula(self.top_text, f"INDEX({self.vocab.name},{self.top_ids.cell(0, 0)}+1)",
                      shows=token_texts("lens_top_text", self.top_ids))
        yield column(labels_column(self.top_ids), (f"after layer {i}" for i in range(L)))
        yield header(self.top_ids.part(col=2, n_cols=7), ["top token id", "top token", "probability",
                                                          "rank of the final prediction", "largest logit",
                                                          "sum of exp", "final prediction's probability"])


def logit_lens(layout: Layout, model: Forward, on: int) -> list[Component]:
    """The lens's components: each layer's output at the last position, normed, unembedded, summarised."""
    if not model.layer_outputs:
        raise ValueError("the logit lens needs the layers' outputs")
    w, vocab = model.inputs.weights, model.inputs.vocab.text
    gain, bias, wte, final_top = w["ln_f.weight"], w["ln_f.bias"], w["wte.weight"], model.prediction.top_ids
    stream = LensStream(layout, model.positions, list(model.layer_outputs))
    norm = LayerNorm(layout, "lens_norm", "lens_norm", "Logit lens 2: the final layer norm of each layer's row",
                     stream.out, gain, bias, stage="output", kind="lens_norm", short_title="Logit lens: final norm",
                     purpose="Here it is ln_f, applied to each layer's row as if that layer were the last.",
                     row_names=[f"after layer {i}" for i in range(stream.out.n_rows)])
    logits = LensLogits(layout, norm.out, wte, vocab)
    return [stream, norm, logits, LensSummary(layout, logits, final_top, vocab)]


def lens_layers(book: BookContents, step: LensSummary, facts: dict, out: Path) -> list[tuple[str, Figure]]:
    """The top token and its probability after each layer."""
    from .. import figures
    from ..lesson import IMG_DIR, Figure, visible

    tops = [visible(book.token_text(int(i))) for i in book[step.top_ids.name][:, 0]]
    probs = [float(p) for p in book[step.top_probs.name][:, 0]]
    ranks = [int(r) for r in book[step.ranks.name][:, 0]]
    final = visible(book.token_text(int(book[step.final_top.name][0, 0])))
    src = f"{IMG_DIR}/lens-layers.png"
    figures.lens_layers(tops, probs, ranks, final, out / src)
    return [(step.sheet.name, Figure(src, "The logit lens: top token and probability after each layer",
                                     "Each bar: the token the model would predict if it stopped after that layer, "
                                     "and its probability; orange where it is already the final prediction."))]


PROBE = Probe(
    "lens", "the logit lens: each layer's prediction for the last position (default: on; it costs one unembedding "
            "per layer, 1.2M cells on GPT-2 small; --no-lens leaves it out)",
    logit_lens, default=1,
    guide=lambda layout, on: ["The logit lens (sheet 'lens') shows what the model would predict after each layer."],
    figures={LensSummary.kind: lens_layers})
