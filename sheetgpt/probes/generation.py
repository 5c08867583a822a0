"""The book writes on: the K positions after the prompt take its own greedy choice, the
argmax of the previous position's logits (ties to the lowest id), so the continuation
follows whatever prompt is typed.

Only the positions that predict a generated token get an unembedding; each such column
is guarded by an IF, so a spreadsheet computes the K that the prompt's length selects.
Every reference points at an earlier position: the cells form no cycle, though the
blocks do (tokens -> ... -> ln_f -> next ids -> later tokens).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from ..layout import Block, Layout
from ..steps.base import (ArrayFormula, BuildInputs, CellFormulas, Cells, Chart, Component, Constants, Formula,
                          Positions, Shown, Values, column, header, labels_column)
from ..steps.guide import GENERATED_ROW, GUIDE_SHEET, PROMPT_ROW, chart_cells, guide_text
from ..xlsx import Style
from .base import Forward, Probe, Written
from .sampling import Sampling

if TYPE_CHECKING:
    from ..lesson import Figure
    from ..readback import BookContents


# the generation's counts, which next_logits' guards read before Generation declares them
GEN_START, N_FILLED = "gen_start", "n_filled"
LIBREOFFICE_WRITING = ("This writing book is in the cells form, for IronCalc: LibreOffice computes it slowly and, after "
                       "a prompt is typed, shows Err:522 from the first written position (Ctrl+Shift+F9 recalculates "
                       "it right). For LibreOffice, build the default form.")


def generated_span(T: int, K: int, n_tokens: int) -> range:
    """The positions of T that a prompt of n_tokens tokens leaves to K generated ones."""
    start = max(1, n_tokens)
    return range(start, min(T, start + K))


class NextTokenLogits(Component):
    """Column p: the logits after position p, where position p + 1 is generated; else empty."""

    stage, kind, short_title = "output", "next_logits", "Logits at every position that writes"
    lesson = """
<p>To write, the model does what it does for its prediction, at every position whose next
token it writes: that position's final row (after <code>ln_f</code>) is dotted with every
row of <code>wte</code>. Column <i>p</i> holds the logits after position <i>p</i>.</p>
<p>A column is filled only where position <i>p</i> + 1 is one of the {{ c.K }}
generated positions; the others stay empty (an <code>IF</code> skips them), so generating
{{ c.K }} tokens costs {{ c.K }} unembeddings of {{ "{:,}".format(m.V) }}
dot products each, whatever the prompt's length.</p>
"""

    def __init__(self, layout: Layout, final: Block, wte: Block, vocab: Block, n_tokens: Block, K: int):
        """n_tokens: the positions the prompt fills; the K generated ones follow."""
        super().__init__(layout)
        T, V = layout.T, layout.cfg.vocab_size
        self.final, self.wte, self.vocab, self.n_tokens, self.K = final, wte, vocab, n_tokens, K
        self.add_sheet("next_logits", f"Logits after each position p, where the next position is generated: ln_f "
                                      f"row p . each wte row [{V} x {T - 1}]")
        self.out = self.add_block("next_logits", V, T - 1, col=3, note=(
            "The score of this token as the next one after position p (the column): position p's ln_f row dotted "
            "with the token's row of wte. Empty where position p + 1 is not generated."))
        self.read(final, wte, vocab, n_tokens)

    def span(self, v: Values) -> range:
        """The positions generated for the prompt in v."""
        return generated_span(self.layout.T, self.K, int(v[self.n_tokens.name][0, 0]))

    def compute(self, v: Values) -> None:
        logits = np.full(self.out.shape, np.nan)  # [V, T - 1]
        for q in self.span(v):
            logits[:, q - 1] = v[self.wte.name] @ v[self.final.name][q - 1]  # [V]
        v[self.out.name] = logits

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        D = self.final.n_cols
        for p in range(self.out.n_cols):
            row = self.final.span(p, 0, p, D - 1, True, True)
            guard = f"AND({p + 1}>={GEN_START},{p + 1}<{N_FILLED})"
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
favourite after that one, and so on for {{ c.K }} positions (<code>MATCH</code> of
the <code>MAX</code>: ties go to the lowest id). This is <em>greedy</em> decoding.</p>
<p>Type another prompt and the whole continuation is written again. Every generated
position goes through every layer like the prompt's own tokens, visible cell by cell;
its attention reads only earlier positions, so nothing circles back.</p>
"""

    def __init__(self, layout: Layout, logits: NextTokenLogits, vocab: Block, positions: Positions, prompt: Block,
                 sampling: Sampling | None = None):
        """positions: the prompt's; the generation's (self.positions) count the written ones too.
        prompt: the prompt cell, which the Guide shows with the generated text after it.
        sampling: the draws the written tokens are (None: each is the favourite)."""
        super().__init__(layout)
        T, K = layout.T, logits.K
        self.logits, self.vocab, self.span, self.K, self.prompt = logits.out, vocab, logits.span, K, prompt
        self.draws = None if sampling is None else sampling.pick
        how = "argmax of its logits" if sampling is None else "drawn on sheet sample"
        self.add_sheet("generate", f"Generation: the next token after each position ({how}), and "
                                   f"the {K} tokens the book writes after the prompt")
        self.next_ids = self.add_block("next_ids", T - 1, 1, note=(
            "The token with the largest logit after this position (MATCH of the MAX; ties to the lowest id). "
            if sampling is None else "The token drawn after this position (sheet sample). ")
            + "Empty where the next position is not generated.")
        self.next_text = self.next_ids.part(col=3)
        self.start = self.add_block(GEN_START, 1, 1, row=3, col=6, note="The first generated position: right "
                                                                          "after the prompt.")
        self.filled = self.add_block(N_FILLED, 1, 1, row=4, col=6, note=(
            f"Positions the prompt and the generated tokens fill (at most {T}): the prediction reads the last."))
        self.generated = self.add_block("generated", K, 1, row=3, col=9, note=(
            "The token generated at this position: the next token after the position before it."))
        self.generated_text = self.generated.part(col=10)
        self.n_tokens = logits.n_tokens
        self.positions = dataclasses.replace(positions, count=self.filled, may_be_empty=False)
        self.read(self.logits, self.n_tokens, *([self.draws] if self.draws else []))

    def compute(self, v: Values) -> None:
        T, K = self.layout.T, self.K
        span = self.span(v)
        logits = v[self.logits.name]  # [V, T - 1], NaN where not generated
        nxt = np.full((T - 1, 1), np.nan)
        for q in span:  # the draw, or the first of the largest, as MATCH finds it
            nxt[q - 1, 0] = v[self.draws.name][q - 1, 0] if self.draws else np.argmax(logits[:, q - 1])
        generated = np.full((K, 1), np.nan)
        generated[:len(span), 0] = nxt[span.start - 1:span.stop - 1, 0]
        v[self.next_ids.name], v[self.generated.name] = nxt, generated
        v[self.start.name] = np.array([[span.start]], float)
        v[self.filled.name] = np.array([[min(T, span.start + K)]], float)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        T, K, V = self.layout.T, self.K, self.logits.n_rows
        yield column(labels_column(self.next_ids), range(T - 1))
        yield header(self.next_ids.part(n_cols=2), ["next token id after position (column A)", "next token"])
        choice = ((lambda p, col: f"MATCH(MAX({col}),{col},0)-1") if self.draws is None else
                  (lambda p, col: self.draws.at(p, 0)))
        yield CellFormulas(self.next_ids, [[
            f"IF(AND({p + 1}>={self.start.name},{p + 1}<{self.filled.name}),{choice(p, col)},\"\")"
            for col in [self.logits.span(0, p, V - 1, p, True, True)]] for p in range(T - 1)], Style.INTEGER)
        vocab = self.vocab.span(0, 0, V - 1, 0, True, True)
        yield Formula(self.next_text, f"IF({self.next_ids.cell(0, 0)}=\"\",\"\",INDEX({vocab},"
                                      f"{self.next_ids.cell(0, 0)}+1))",
                      shows=Shown("next_text", lambda v, vocab: _texts(v[self.next_ids.name], vocab)))
        yield Constants(self.start.part(col=5, n_rows=2), [["first generated position"], ["positions filled"]],
                        Style.HEADER)
        yield Formula(self.start, f"MAX(1,{self.n_tokens.name})", Style.INTEGER)
        yield Formula(self.filled, f"MIN({T},{self.start.name}+{K})", Style.INTEGER)
        yield header(self.generated.part(col=8, n_cols=3), ["generated", "token id", "token"])
        yield column(self.generated.part(col=8), range(1, K + 1))
        start, k = self.start.name, f"$H{self.generated.row}"
        yield Formula(self.generated, f"IF({start}+{k}-1<{T},INDEX({self.next_ids.name},{start}+{k}-1),\"\")",
                      Style.INTEGER)
        yield Formula(self.generated_text, f"IF({self.generated.cell(0, 0)}=\"\",\"\",INDEX({vocab},"
                                           f"{self.generated.cell(0, 0)}+1))",
                      shows=Shown("generated_text", lambda v, vocab: _texts(v[self.generated.name], vocab)))
        yield from self._on_the_guide()

    def _on_the_guide(self) -> Iterable[Cells]:
        """The prompt with the generated text after it, on the Guide."""
        yield guide_text(GENERATED_ROW, 1, f"Prompt + {self.K} generated tokens", Style.HEADER)
        yield CellFormulas(Block("", GUIDE_SHEET, GENERATED_ROW, 2, 1, 1), [[f"B{PROMPT_ROW}&{self.continuation()}"]],
                           Style.DEFAULT, Shown("guide_generated", lambda v, vocab: [
                               _prompt_text(v[self.prompt.name][0, 0]) + self.continuation_of(v, vocab)]))

    def continuation(self) -> str:
        """A formula for the generated text, token after token."""
        return "&".join(self.generated_text.at(g, 0) for g in range(self.generated.n_rows))

    def continuation_of(self, v: Values, vocab) -> str:
        """The generated text, as continuation() shows it."""
        return "".join(_texts(v[self.generated.name], vocab))


class WrittenOdds(Component):
    """How sure the model was of each token the book writes: that token's probability in the
    softmax of its position's logits (at the controls' temperature); a chart on the Guide."""

    stage, kind, short_title = "output", "written_odds", "How sure it was of each written token"

    def __init__(self, layout: Layout, logits: NextTokenLogits, generation: Generation, temperature: Block):
        super().__init__(layout)
        T, V, K = layout.T, layout.cfg.vocab_size, generation.K
        g, self.logits, self.temperature = generation, logits.out, temperature
        self.next_ids, self.generated, self.start, self.span = g.next_ids, g.generated, g.start, g.span
        self.max = self.add_block("written_max", T - 1, 1, col=4, sheet=g.sheet, note=(
            "The largest logit after this position (where the next one is written): the softmax subtracts it."))
        self.exp = self.add_block("written_exp", V, K, col=T + 3, sheet=logits.sheet, note=(
            "exp((logit - the largest) / temperature) in the column of the k-th written token's position."))
        self.sum = self.add_block("written_sum", K, 1, row=g.generated.row, col=11, sheet=g.sheet, note=(
            "The sum of the column's exps: the softmax's denominator."))
        self.probs = self.add_block("written_probs", K, 1, row=g.generated.row, col=12, sheet=g.sheet, note=(
            "The written token's probability: its exp / the sum (at the temperature on sheet controls)."))
        self.color_scales.append(self.probs)
        self.charts.append(Chart(chart_cells(1), "How sure it was of each written token", g.generated_text,
                                 [("probability", self.probs)], kind="column", percent=True))
        self.read(self.logits, self.next_ids, self.generated, self.start, temperature)

    def compute(self, v: Values) -> None:
        logits, K = v[self.logits.name], self.generated.n_rows  # [V, T - 1]
        written = ~np.isnan(v[self.next_ids.name][:, 0])  # [T - 1]
        v[self.max.name] = np.where(written, np.nanmax(np.where(written, logits, 0.0), axis=0), np.nan)[:, None]
        exp, total, probs = np.full(self.exp.shape, np.nan), np.full((K, 1), np.nan), np.full((K, 1), np.nan)
        with np.errstate(all="ignore"):  # a temperature of 0 or below: the sheet shows errors, check says why
            for k, q in enumerate(self.span(v)):
                exp[:, k] = np.exp((logits[:, q - 1] - logits[:, q - 1].max()) / v[self.temperature.name][0, 0])
                total[k, 0] = exp[:, k].sum()
                probs[k, 0] = exp[int(v[self.generated.name][k, 0]), k] / total[k, 0]
        v[self.exp.name], v[self.sum.name], v[self.probs.name] = exp, total, probs

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        T, K = self.layout.T, self.generated.n_rows
        skip = lambda cell, formula: f"IF({cell}=\"\",\"\",{formula})"  # nothing written there: empty
        yield CellFormulas(self.max, [[skip(self.next_ids.cell(p, 0), f"MAX({self.logits.col_ref(p)})")]
                                      for p in range(T - 1)])
        row = f"{self.logits.cell(0, 0, abs_col=True)}:{self.logits.cell(0, T - 2, abs_col=True)}"  # a token's logits
        for k in range(K):
            at = f"{self.start.name}+{k}"  # the column of the position before the k-th written one
            yield Formula(self.exp.part(col0=k, n_cols=1),
                          skip(self.generated.span(k, 0, k, 0, True, True),
                               f"EXP((INDEX({row},1,{at})-INDEX({self.max.ref()},{at}))/{self.temperature.name})"))
        written = [self.generated.cell(k, 0) for k in range(K)]
        yield CellFormulas(self.sum, [[skip(written[k], f"SUM({self.exp.col_ref(k)})")] for k in range(K)])
        yield CellFormulas(self.probs, [[skip(written[k], f"INDEX({self.exp.col_ref(k)},{written[k]}+1)/"
                                                         f"{self.sum.cell(k, 0)}")] for k in range(K)], Style.PERCENT)
        yield header(self.max.part(n_cols=1), ["largest logit"])
        yield header(self.sum.part(n_cols=2), ["sum of exp", "probability"])
        yield header(self.exp, [f"exp, written token {k + 1}" for k in range(K)])


def _texts(ids: np.ndarray, vocab) -> list[str]:
    return ["" if np.isnan(i) else vocab(int(i)) for i in ids[:, 0]]


def _prompt_text(value: object) -> str:
    return "" if value is None or isinstance(value, float) else str(value)


def generation(layout: Layout, model: Forward, K: int) -> Written:
    """The K positions after the prompt take the model's greedy choice: they feed the token ids."""
    inputs = model.inputs
    if inputs.prompt is None:
        raise ValueError("generation needs a typed prompt")
    logits = NextTokenLogits(layout, model.ln_f.out, inputs.weights["wte.weight"], inputs.vocab.text,
                             inputs.prompt.n_tokens, K)
    sampled = layout.options.probe("sample")
    draws = Sampling(layout, logits.out, inputs.controls, GEN_START, N_FILLED) if sampled else None
    written = Generation(layout, logits, inputs.vocab.text, model.positions, inputs.prompt.words.chars.prompt, draws)
    inputs.tokens.generate_from(written)
    odds = WrittenOdds(layout, logits, written, inputs.controls.temperature)
    return Written([logits, *([draws] if draws else []), written, odds], written.positions)


def guide_lines(layout: Layout, K: int) -> list[str]:
    lines = [f"This book writes {K} tokens after the prompt, each the favourite after the position before it (sheet "
             f"'generate'). Each costs one more position on every sheet and one unembedding of "
             f"{layout.cfg.vocab_size:,} dot products (sheet 'next_logits')."]
    if layout.options.probe("sample"):
        lines.append("Each written token is drawn at random among the most likely ones, at the temperature on sheet "
                     "'controls': change sample_seed on sheet 'sample' and the book writes another text.")
    return lines + ([] if layout.options.arrays else [LIBREOFFICE_WRITING])


def generation_steps(book: BookContents, step: Generation, facts: dict, out: Path) -> list[tuple[str, Figure]]:
    """The continuation, position by position: the favourite among the top candidates."""
    from .. import figures
    from ..lesson import BARS, IMG_DIR, Figure, visible
    from ..steps.prediction import softmax, top_k

    generated, logits = book[step.generated.name][:, 0], book[step.logits.name]
    start = int(book[step.start.name][0, 0])
    steps = []
    for g, i in enumerate(generated):
        if np.isnan(i):
            break
        probs = softmax(logits[:, start + g - 1])
        steps.append((visible(book.token_text(int(i))),
                      [(visible(book.token_text(int(j))), float(probs[j])) for j in top_k(probs, BARS)]))
    if not steps:
        return []
    src = f"{IMG_DIR}/generate-steps.png"
    prompt = book.prompt or ""
    figures.generation_steps(steps, visible(prompt), out / src)
    return [(step.sheet.name, Figure(src, "The generated tokens, position by position",
                                     f"After “{visible(prompt)}”: each panel is one generated position, "
                                     f"its top {BARS} candidates after the position before it (softmax of that "
                                     "column of next_logits); the favourite, in orange, is what the book writes."))]


def written_ids(book: BookContents) -> list[int]:
    """The ids the book writes after the prompt (fewer where the positions run out)."""
    step = book.layout.find(Generation)
    return [int(i) for i in book[step.generated.name][:, 0] if not np.isnan(i)]


PROBE = Probe(
    "generate", "the book writes K tokens after the prompt, each its own greedy choice; each costs one more "
                "position and one unembedding",
    generation, count=True, short="g", writes=True, guide=guide_lines,
    figures={Generation.kind: generation_steps}, written=written_ids)
