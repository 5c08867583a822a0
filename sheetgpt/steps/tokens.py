"""The inputs a learner edits and the vocabulary they index: token ids and their text."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..layout import FIRST_ROW, Block, Layout
from ..xlsx import Style
from .base import BuildInputs, Cells, Component, Formula, Shown, Values, column, header, labels_column, token_texts
from .generate import generated_span
from .prompt import PAD_TEXT


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

    def __init__(self, layout: Layout, vocab: Vocabulary, prompt_ids: Block | None = None):
        """prompt_ids: the ids the sheet's tokenizer computed (a typed prompt); the learner
        may override each. None: the ids are the input cells."""
        super().__init__(layout)
        T = layout.T
        self.vocab, self.prompt_ids = vocab.text, prompt_ids
        if prompt_ids is None:
            self.add_sheet("tokens", f"Token ids of the prompt (edit them) and their text [{T} positions]")
        else:
            self.add_sheet("tokens", f"Token ids the model reads: the tokenizer's, or yours where you type one "
                                     f"[{T} positions]")
        self.ids = self.add_block("tokens", T, 1, step=prompt_ids is not None)
        self.text = self.ids.part(col=self.ids.col + 1)  # the token text of each position
        self.next_ids: Block | None = None  # with generation: where the generated positions' ids come from
        if prompt_ids is not None:
            self.overrides = self.add_block("token_overrides", T, 1, col=self.ids.col + 2, step=False)
            self.read(prompt_ids)
        layout.position_text = self.text
        layout.position_shows = (token_texts("tokens_text", self.ids) if prompt_ids is None
                                 else Shown("tokens_text", self._texts))
        self.read(self.vocab)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        yield column(labels_column(self.ids), range(self.ids.n_rows))
        vocab = self.vocab.span(0, 0, self.vocab.n_rows - 1, 0, True, True)
        lookup = f"INDEX({vocab},{self.ids.cell(0, 0)}+1)"
        if self.prompt_ids is None:
            yield column(self.ids, inputs.ids, Style.INPUT, given=True)
            yield Formula(self.text, lookup, Style.DEFAULT, shows=self.layout.position_shows)
            yield header(self.ids, ["token id (edit)", "token"])
            return
        mine = self.overrides.cell(0, 0)
        yield column(self.overrides, inputs.overrides or [None] * self.ids.n_rows, Style.INPUT, given=True)
        prompt_id = self.prompt_ids.at(0, 0)
        if self.next_ids is None:
            yield Formula(self.ids, f"IF({mine}=\"\",{prompt_id},{mine})", Style.INTEGER)
        else:  # position t >= 1 may be generated: the next token after position t - 1
            K, t = self.layout.options.generate, f"$A{FIRST_ROW + 1}"
            yield Formula(self.ids.part(n_rows=1), f"IF({mine}=\"\",{prompt_id},{mine})", Style.INTEGER)
            yield Formula(self.ids.part(row0=1), f"IF({self.overrides.cell(1, 0)}=\"\",IF(AND({t}>=gen_start,"
                                                 f"{t}<gen_start+{K}),{self.next_ids.at(0, 0)},"
                                                 f"{self.prompt_ids.at(1, 0)}),{self.overrides.cell(1, 0)})",
                          Style.INTEGER)
        yield Formula(self.text, f"IF(AND($A{FIRST_ROW}>={self._filled},{mine}=\"\"),\"{PAD_TEXT}\",{lookup})",
                      Style.DEFAULT, shows=self.layout.position_shows)
        yield header(self.ids, ["token id", "token", "your id (type one to override)"])

    def _texts(self, v: Values, vocab) -> list[str]:
        n, mine = int(v[self._filled][0, 0]), v["token_overrides"][:, 0]
        return [PAD_TEXT if t >= n and np.isnan(mine[t]) else vocab(int(i)) for t, i in enumerate(v["tokens"][:, 0])]

    def generate_from(self, next_ids: Block) -> None:
        """The generated positions take their ids from next_ids (declared after the model)."""
        self.next_ids = next_ids
        self.read(next_ids)

    @property
    def _filled(self) -> str:
        """The name of the count of positions before the padding."""
        return "n_tokens" if self.next_ids is None else "n_filled"

    def compute(self, v: Values) -> None:
        """With generation, the generated positions take the next ids computed so far (the
        reference runs the model again until they stop changing)."""
        if self.prompt_ids is None:
            return
        ids = v[self.prompt_ids.name].copy()  # [T, 1]
        if self.next_ids is not None and self.next_ids.name in v:
            span = generated_span(self.layout, int(v["n_tokens"][0, 0]))
            ids[span.start:span.stop] = v[self.next_ids.name][span.start - 1:span.stop - 1]
        mine = v["token_overrides"]
        v[self.ids.name] = np.where(np.isnan(mine), ids, mine)  # [T, 1]
