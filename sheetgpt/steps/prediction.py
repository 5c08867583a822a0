"""The next token: softmax over the vocabulary and the top k, as live formulas."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..a1 import quote_sheet
from ..layout import Block, Layout
from ..xlsx import Style
from .base import (BuildInputs, Cells, Component, Constants, Formula, Values, column, header, labels_column,
                   token_texts)
from .controls import Controls
from .unembed import Logits

TOP_K = 5  # the workbook's top-k list; the Guide shows the same


def softmax(logits: np.ndarray) -> np.ndarray:
    """[V] -> probabilities [V], stable (the max is subtracted first)."""
    e = np.exp(logits - logits.max())
    return e / e.sum()


def top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k largest logits, largest first; ties to the lowest id, as the
    spreadsheet's MATCH finds the first (a stable sort on -logit does too)."""
    return np.argsort(-logits, kind="stable")[:k]


class Prediction(Component):
    stage, kind, short_title = "output", "prediction", "The prediction"
    lesson = """
<p>The softmax over all {{ "{:,}".format(m.V) }} logits gives every token a probability of
coming next after <q>{{ m.last_token }}</q>. The logits are divided by the
temperature on sheet <code>controls</code> first (1: as trained; lower: sharper;
higher: flatter). <code>LARGE</code> finds the {{ c.k }} largest
logits and <code>MATCH</code> their token ids. To write text, GPT-2 picks one (the most
likely, or a random draw weighted by these probabilities), appends it to the prompt and
runs everything again.</p>
{% if m.random %}
<p>This model's weights are random, so its favourites are arbitrary tokens: the
arithmetic is exactly GPT-2's, the knowledge is missing.</p>
{% else %}
<p>The model here is {{ m.model }}: {{ m.about }}.</p>
{% endif %}
"""

    def __init__(self, layout: Layout, logits: Logits, vocab: Block, controls: Controls, k: int = TOP_K):
        super().__init__(layout)
        self.logits, self.vocab, self.temperature, self.k = logits.out, vocab, controls.temperature, k
        self.add_sheet("prediction", f"Predicted next token: softmax over the logits and the top {k} [{k} x 3]")
        self.max = self.add_block("next_max", 1, 1, row=3, note="The largest logit, subtracted before EXP so it "
                                                                "cannot overflow.")
        V, beside = self.logits.n_rows, self.logits.col
        self.exp = self.add_block("next_exp", V, 1, col=beside + 1, sheet=logits.sheet, note=(
            "exp((logit - max) / temperature): the softmax's numerator for this token (the max keeps EXP from "
            "overflowing; the temperature is on sheet controls)."))
        self.sum = self.add_block("next_sum", 1, 1, row=4, note="The sum of exp(logit - max) over the whole "
                                                                "vocabulary: SUM of the exp column on sheet logits.")
        self.probs = self.add_block("next_probs", V, 1, col=beside + 2, sheet=logits.sheet, note=(
            "The probability of this token: its exp / the sum of all the exps (a softmax over the vocabulary)."))
        self.top_logits = self.add_block("top_logits", k, 1, row=8, col=3, note="LARGE finds the k-th largest logit.")
        self.top_ids = self.add_block("top_ids", k, 1, row=8, col=2, note=(
            "MATCH finds which token has that logit (its row in logits, minus 1 because ids start at 0)."))
        self.top_probs = self.add_block("top_probs", k, 1, row=8, col=4, note=(
            "The probability of the k-th most likely token."))
        self.top_text = self.top_logits.part(col=5)  # the top tokens' text
        self.color_scales.append(self.top_probs)
        self.read(self.logits, vocab, self.temperature)

    def compute(self, v: Values) -> None:
        logits = v[self.logits.name][:, 0]  # [V]
        m = logits.max()
        with np.errstate(all="ignore"):  # a temperature of 0 or below: the sheet shows errors, check says why
            e = np.exp((logits - m) / v[self.temperature.name][0, 0])  # [V]
        total = e.sum()
        top = top_k(logits, self.k)  # [k]
        v[self.max.name], v[self.sum.name] = np.array([[m]]), np.array([[total]])
        v[self.exp.name] = e[:, None]  # [V, 1]
        v[self.probs.name] = (e / total)[:, None]  # [V, 1]
        v[self.top_logits.name] = logits[top][:, None]  # [k, 1]
        v[self.top_ids.name] = top.astype(np.float64)[:, None]
        v[self.top_probs.name] = (e[top] / total)[:, None]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        logits, here, temperature = self.logits.name, self.max.sheet, self.temperature.name
        mx, total = self.max.cell(0, 0, True, True), self.sum.cell(0, 0, True, True)
        # per-cell exps summed by SUM: EXP over a range inside SUMPRODUCT is intersected to one cell by Gnumeric
        yield Formula(self.exp, f"EXP(({self.logits.cell(0, 0)}-{quote_sheet(here)}!{mx})/{temperature})")
        yield Formula(self.probs, f"{self.exp.cell(0, 0)}/{quote_sheet(here)}!{total}", Style.PERCENT)
        yield Formula(self.max, f"MAX({logits})")
        yield Constants(labels_column(self.max), [["largest logit"]])
        yield Formula(self.sum, f"SUM({self.exp.name})")
        yield Constants(labels_column(self.sum), [["sum of exp(logit - max)"]])
        yield Formula(self.top_logits, f"LARGE({logits},$A{self.top_logits.row})")
        yield column(labels_column(self.top_logits), range(1, self.k + 1))
        yield header(Block("", here, self.top_logits.row, 1, 1, 5), ["rank", "token id", "logit", "probability",
                                                                     "token"])
        yield Formula(self.top_text, f"INDEX({self.vocab.name},{self.top_ids.cell(0, 0)}+1)",
                      shows=token_texts("top_text", self.top_ids))
        yield Formula(self.top_ids, f"MATCH({self.top_logits.cell(0, 0)},{logits},0)-1", Style.INTEGER)
        yield Formula(self.top_probs, f"EXP(({self.top_logits.cell(0, 0)}-{mx})/{temperature})/{total}", Style.PERCENT)
