"""The inputs a learner edits and the vocabulary they index: token ids and their text."""
from __future__ import annotations

from typing import Iterable

from ..layout import Block, Layout
from ..xlsx import Style
from .base import BuildInputs, Cells, Component, Formula, column, header, labels_column, token_texts


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

    def __init__(self, layout: Layout, vocab: Vocabulary):
        super().__init__(layout)
        T = layout.T
        self.vocab = vocab.text
        self.add_sheet("tokens", f"Token ids of the prompt (edit them) and their text [{T} positions]")
        self.ids = self.add_block("tokens", T, 1, step=False)
        self.text = self.ids.part(col=self.ids.col + 1)  # the token text of each position
        layout.position_text = self.text
        self.read(self.vocab)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        yield column(labels_column(self.ids), range(self.ids.n_rows))
        yield column(self.ids, inputs.ids, Style.INPUT, given=True)
        vocab = self.vocab.span(0, 0, self.vocab.n_rows - 1, 0, True, True)
        yield Formula(self.text, f"INDEX({vocab},{self.ids.cell(0, 0)}+1)", Style.DEFAULT,
                      shows=token_texts("tokens_text", self.ids))
        yield header(self.ids, ["token id (edit)", "token"])
