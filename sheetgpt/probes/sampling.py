"""Seeded sampling, an option of generation (--sample): each written position draws its
token from softmax(logits / temperature) over the top k, with a pseudo-random number the
formulas compute from the seed and the position in exact integer arithmetic (a Lehmer
generator: every product stays below 2^53, so every program gets the same number; no RAND,
nothing volatile). The same seed writes the same text in every program, and check can
verify it; another seed writes another text.

The draw is the inverse of the cumulative distribution: with the top k's weights
w_j = exp((logit_j - logit_1) / T) added up left to right into cum_j, the token is the
first slot whose cum_j reaches u * cum_k.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from ..layout import FIRST_ROW, Block, Layout
from ..steps.base import BuildInputs, CellFormulas, Cells, Component, Constants, Values, column, header, labels_column
from ..steps.controls import Controls
from ..xlsx import Style
from .base import Probe

if TYPE_CHECKING:
    from ..lesson import Figure
    from ..readback import BookContents

SLOTS = 10  # the most tokens a draw chooses among (sample_top_k above it acts as 10)
MODULUS, MULTIPLIER = 2_147_483_647, 48_271  # MINSTD: a product stays below 2^47
DEFAULT_SEED, DEFAULT_TOP_K = 1, SLOTS


def uniform(seed: float, position: int) -> float:
    """The book's pseudo-random number in (0, 1) for a seed and a 1-based written position,
    exactly as uniform_formula takes it: Lehmer steps from the seed and the position, with a
    product by position + 1 between them so that positions do not step evenly (each step
    permutes the residues: over seeds, every position's number is uniform)."""
    x = int(abs(np.trunc(seed))) % MODULUS
    x = (x * MULTIPLIER + position) % MODULUS
    x = (x * MULTIPLIER) % MODULUS
    x = (x * (position + 1)) % MODULUS
    x = (x * MULTIPLIER) % MODULUS
    return (x + 0.5) / MODULUS


def uniform_formula(seed: str, position: int) -> str:
    m, a = MODULUS, MULTIPLIER
    x = f"MOD(MOD(INT(ABS({seed})),{m})*{a}+{position},{m})"
    x = f"MOD(MOD({x}*{a},{m})*{position + 1},{m})"
    return f"(MOD({x}*{a},{m})+0.5)/{m}"


class Sampling(Component):
    """Row p: the draw of the token after position p, where position p + 1 is written."""

    stage, kind, short_title = "output", "sample", "Writing on: a seeded draw"
    lesson = """
<p>Why does a chatbot answer differently each time? It does not take its favourite: it
draws. Here each written position draws from the {{ c.slots }} most likely tokens
(<code>sample_top_k</code> of them), each with the probability the softmax gives it at the
temperature on sheet <code>controls</code>.</p>
<p>The random number comes from <code>sample_seed</code> and the position, by integer
arithmetic every spreadsheet does exactly alike: the same seed writes the same text in
Excel, LibreOffice and here; type another seed and the book writes something else. The
token is the first whose running sum of weights passes the random number times their total
(the inverse of the cumulative distribution).</p>
"""

    def __init__(self, layout: Layout, logits: Block, controls: Controls, start: str, filled: str):
        """logits: next_logits, a column per position; start, filled: the names of the first
        written position and of the count of filled ones (the generation's)."""
        super().__init__(layout)
        T, S = layout.T, SLOTS
        self.logits, self.temperature, self.slots = logits, controls.temperature, S
        self.guard = lambda p: f"AND({p + 1}>={start},{p + 1}<{filled})"
        self.add_sheet("sample", f"Sampling: the draw after each position that writes, among the top {S} tokens "
                                 f"[{T - 1} x {S}]")
        self.seed = self.add_block("sample_seed", 1, 1, step=False, given=True, note=(
            "The seed: any whole number. The same seed writes the same text; another seed, another text."))
        self.top_k = self.add_block("sample_top_k", 1, 1, row=FIRST_ROW + 1, step=False, given=True, note=(
            f"How many of the most likely tokens a draw chooses among (1: the favourite, greedy; at most {S})."))
        first = FIRST_ROW + 4
        self.u = self.add_block("sample_u", T - 1, 1, row=first, note=(
            "The random number of this draw, in (0, 1), from the seed and the position."))
        self.pick = self.add_block("sample_pick", T - 1, 1, row=first, col=3, note="The token id drawn.")
        col = lambda k: 5 + k * (S + 1)
        self.top = self.add_block("sample_logits", T - 1, S, row=first, col=col(0), note="The j-th largest logit.")
        self.ids = self.add_block("sample_ids", T - 1, S, row=first, col=col(1), note="Its token id (MATCH).")
        self.cum = self.add_block("sample_cum", T - 1, S, row=first, col=col(2), note=(
            "exp((logit - the largest) / temperature) added up from slot 1 (0 beyond sample_top_k)."))
        self.below = self.add_block("sample_below", T - 1, S, row=first, col=col(3), note=(
            "1 while the running sum is below the random number times the total: the draw lands after it."))
        self.read(logits, self.temperature)

    def compute(self, v: Values) -> None:
        T, S = self.layout.T, self.slots
        seed = v.get(self.seed.name, np.full((1, 1), DEFAULT_SEED))[0, 0]
        k = v.get(self.top_k.name, np.full((1, 1), DEFAULT_TOP_K))[0, 0]
        t = v[self.temperature.name][0, 0]
        out = {b.name: np.full(b.shape, np.nan) for b in (self.u, self.pick, self.top, self.ids, self.cum, self.below)}
        for p in range(T - 1):
            logits = v[self.logits.name][:, p]  # [V], NaN where position p + 1 is not written
            if np.isnan(logits).all():
                continue
            top = np.sort(logits)[::-1][:S]  # [S]: LARGE 1..S
            ids = np.array([np.flatnonzero(logits == x)[0] for x in top])  # MATCH: the first of equals
            with np.errstate(all="ignore"):
                weights = np.where(np.arange(1, S + 1) <= k, np.exp((top - top[0]) / t), 0.0)
            weights[0] = 1.0  # the favourite always counts, as the first running sum is 1
            cum = np.cumsum(weights)  # left to right, as the cells add
            # a seed that is no number: the sheet shows an error there, and check says where
            u = uniform(seed, p + 1) if np.isfinite(seed) else np.nan
            below = (cum < u * cum[-1]).astype(float)
            row = {self.u: u, self.top: top, self.ids: ids, self.cum: cum, self.below: below,
                   self.pick: ids[int(below.sum())]}
            for blk, x in row.items():
                out[blk.name][p] = x
        v.update(out)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        T, S = self.layout.T, self.slots
        yield Constants(self.seed, [[DEFAULT_SEED]], Style.INPUT, given=True)
        yield Constants(self.top_k, [[DEFAULT_TOP_K]], Style.INPUT, given=True)
        yield Constants(labels_column(self.seed.part(n_rows=2)), [["sample_seed"], ["sample_top_k"]], Style.HEADER)
        yield column(labels_column(self.u), range(T - 1))
        yield header(self.u.part(n_cols=2), ["random number", "drawn id"])
        for blk, what in ((self.top, "logit"), (self.ids, "id"), (self.cum, "running sum"), (self.below, "below")):
            yield header(blk, [f"{what} {j + 1}" for j in range(S)])
        yield from self._draws()

    def _draws(self) -> Iterable[Cells]:
        T, S, t = self.layout.T, self.slots, self.temperature.name
        guarded = lambda p, x: f"IF({self.guard(p)},{x},\"\")"
        col = lambda p: self.logits.span(0, p, self.logits.n_rows - 1, p, True, True)
        rows = range(T - 1)
        yield CellFormulas(self.u, [[guarded(p, uniform_formula(self.seed.name, p + 1))] for p in rows])
        yield CellFormulas(self.top, [[guarded(p, f"LARGE({col(p)},{j + 1})") for j in range(S)] for p in rows])
        yield CellFormulas(self.ids, [[guarded(p, f"MATCH({self.top.cell(p, j)},{col(p)},0)-1") for j in range(S)]
                                      for p in rows], Style.INTEGER)
        weight = lambda p, j: f"IF({j + 1}<={self.top_k.name},EXP(({self.top.cell(p, j)}-{self.top.cell(p, 0)})/{t}),0)"
        yield CellFormulas(self.cum, [[guarded(p, "1" if j == 0 else f"{self.cum.cell(p, j - 1)}+{weight(p, j)}")
                                       for j in range(S)] for p in rows])
        yield CellFormulas(self.below, [[guarded(p, f"IF({self.cum.cell(p, j)}<{self.u.cell(p, 0)}*"
                                                    f"{self.cum.cell(p, S - 1)},1,0)") for j in range(S)]
                                        for p in rows], Style.INTEGER)
        ids, below = (lambda p, b=b: b.span(p, 0, p, S - 1, False, False) for b in (self.ids, self.below))
        yield CellFormulas(self.pick, [[guarded(p, f"INDEX({ids(p)},1,SUM({below(p)})+1)")] for p in rows],
                           Style.INTEGER)


def five_seeds(book: BookContents, step: Sampling, facts: dict, out: Path) -> list[tuple[str, Figure]]:
    """The prompt written on under seeds 1 to 5 (by the reference, which check proves equal to
    the book's formulas for any seed)."""
    from .. import figures
    from ..lesson import IMG_DIR, Figure, visible
    from ..reference import forward
    from .generation import Generation

    generated, given, texts = book.layout.find(Generation).generated.name, book.given(), []
    for seed in range(1, 6):
        given[step.seed.name] = np.array([[seed]], float)
        ids = forward(book.weights, book.ids, layout=book.layout, given=given)[generated][:, 0]
        texts.append((seed, visible("".join(book.token_text(int(i)) for i in ids if not np.isnan(i)))))
    src = f"{IMG_DIR}/sample-seeds.png"
    figures.seeded_texts(visible(book.prompt or ""), texts, out / src)
    return [(step.sheet.name, Figure(src, "The same prompt written under five seeds",
                                     "Type one of these seeds into sample_seed and the book writes that text."))]


PROBE = Probe("sample", "the book draws each written token from the top sample_top_k at the temperature, seeded by "
                        "sample_seed (sheet 'sample'; with --generate): the same seed writes the same text in every "
                        "program, another seed another text", needs="generate",
              figures={Sampling.kind: five_seeds})
