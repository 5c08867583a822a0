"""The inputs a learner edits and the vocabulary they index: token ids and their text."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np

from ..layout import FIRST_ROW, Block, Layout
from ..xlsx import Style
from .base import (BuildInputs, Cells, Component, Formula, Positions, Shown, Values, column, header, labels_column,
                   token_texts)
from .prompt import PAD_TEXT, PromptIds

if TYPE_CHECKING:
    from .generate import Generation


class Vocabulary(Component):
    """Every token's id, text and GPT-2 byte-level string: what the text columns look up."""

    stage = "vocab"

    def __init__(self, layout: Layout):
        super().__init__(layout)
        V = layout.cfg.vocab_size
        self.add_sheet("vocab", f"Vocabulary: token id, text, GPT-2 byte-level string [{V}]")
        self.text = self.add_block("vocab_text", V, 1, step=False)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        tok, V = inputs.model.tokenizer, self.text.n_rows
        yield column(labels_column(self.text), range(V))
        yield column(self.text, (tok.token_text(i) for i in range(V)), given=True)
        yield column(self.text.part(col=self.text.col + 1), (tok.token_string(i) for i in range(V)), given=True)
        yield header(self.text, ["text", "GPT-2 byte-level string"])

    def label(self, block: Block) -> str:
        return "vocab (token text)"


class TokenIds(Component):
    """The prompt's token ids: the workbook's input cells, each with its text beside it."""

    stage = "input"
    kind = "tokens"
    short_title = "Token ids"
    lesson = """
<p>A language model never sees letters. GPT-2 first cuts the text into <em>tokens</em>:
whole words, pieces of words and punctuation, usually with the space in front of them
(<code>&#x2423;is</code> is one token). Each token is replaced by its number in a
vocabulary of {{ "{:,}".format(m.V) }} entries.</p>
<p>These {{ m.T }} numbers are the only input of the whole workbook. They are the
yellow cells of this sheet: type another id and every sheet after it recomputes. The
column next to each id looks its text up in the <code>vocab</code> sheet.</p>
"""

    def __init__(self, layout: Layout, vocab: Vocabulary, prompt: PromptIds | None = None):
        """prompt: the sheet's tokenizer (a typed prompt), whose ids the learner may override
        each. None: the ids are the input cells."""
        super().__init__(layout)
        T = layout.T
        prompt_ids = None if prompt is None else prompt.ids
        self.vocab, self.prompt_ids = vocab.text, prompt_ids
        if prompt_ids is None:
            self.add_sheet("tokens", f"Token ids of the prompt (edit them) and their text [{T} positions]")
        else:
            self.add_sheet("tokens", f"Token ids the model reads: the tokenizer's, or yours where you type one "
                                     f"[{T} positions]")
        self.ids = self.add_block("tokens", T, 1, step=prompt_ids is not None)
        self.text = self.ids.part(col=self.ids.col + 1)  # the token text of each position
        self.generation: Generation | None = None  # where the generated positions' ids come from
        if prompt is not None:
            self.overrides = self.add_block("token_overrides", T, 1, col=self.ids.col + 2, step=False, given=True)
            self.read(prompt_ids)
        shows = token_texts("tokens_text", self.ids) if prompt is None else Shown("tokens_text", self._texts)
        self.positions = Positions(T, self.text, shows, None if prompt is None else prompt.n_tokens)
        self.filled = self.positions.count  # how many positions hold tokens (the prompt's, and generated ones)
        self.read(self.vocab)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        yield column(labels_column(self.ids), range(self.ids.n_rows))
        vocab = self.vocab.span(0, 0, self.vocab.n_rows - 1, 0, True, True)
        lookup = f"INDEX({vocab},{self.ids.cell(0, 0)}+1)"
        if self.prompt_ids is None:
            yield column(self.ids, inputs.ids, Style.INPUT, given=True)
            yield Formula(self.text, lookup, Style.DEFAULT, shows=self.positions.shows)
            yield header(self.ids, ["token id (edit)", "token"])
            return
        mine = self.overrides.cell(0, 0)
        yield column(self.overrides, inputs.overrides or [None] * self.ids.n_rows, Style.INPUT, given=True)
        prompt_id = self.prompt_ids.at(0, 0)
        gen = self.generation
        if gen is None:
            yield Formula(self.ids, f"IF({mine}=\"\",{prompt_id},{mine})", Style.INTEGER)
        else:  # position t >= 1 may be generated: the next token after position t - 1
            K, t, start = gen.generated.n_rows, f"$A{FIRST_ROW + 1}", gen.start.name
            yield Formula(self.ids.part(n_rows=1), f"IF({mine}=\"\",{prompt_id},{mine})", Style.INTEGER)
            yield Formula(self.ids.part(row0=1), f"IF({self.overrides.cell(1, 0)}=\"\",IF(AND({t}>={start},"
                                                 f"{t}<{start}+{K}),{gen.next_ids.at(0, 0)},"
                                                 f"{self.prompt_ids.at(1, 0)}),{self.overrides.cell(1, 0)})",
                          Style.INTEGER)
        yield Formula(self.text, f"IF(AND($A{FIRST_ROW}>={self.filled.name},{mine}=\"\"),\"{PAD_TEXT}\",{lookup})",
                      Style.DEFAULT, shows=self.positions.shows)
        yield header(self.ids, ["token id", "token", "your id (type one to override)"])

    def _texts(self, v: Values, vocab) -> list[str]:
        n, mine = int(v[self.filled.name][0, 0]), v[self.overrides.name][:, 0]
        return [PAD_TEXT if t >= n and np.isnan(mine[t]) else vocab(int(i))
                for t, i in enumerate(v[self.ids.name][:, 0])]

    def generate_from(self, generation: Generation) -> None:
        """The book writes: the generated positions take their ids from the generation's next
        ids, declared after the model (the one loop of the book's blocks)."""
        self.generation, self.filled = generation, generation.filled
        self.read(generation.next_ids)

    def compute(self, v: Values) -> None:
        """With generation, the generated positions take the next ids computed so far (the
        reference runs the model again until they stop changing)."""
        if self.prompt_ids is None:
            return
        ids = v[self.prompt_ids.name].copy()  # [T, 1]
        gen = self.generation
        if gen is not None and gen.next_ids.name in v:
            span = gen.span(v)
            ids[span.start:span.stop] = v[gen.next_ids.name][span.start - 1:span.stop - 1]
        mine = v[self.overrides.name]
        v[self.ids.name] = np.where(np.isnan(mine), ids, mine)  # [T, 1]
