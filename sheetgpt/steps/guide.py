"""The first sheet a newcomer reads: the model, the prompt, the live prediction, how to
edit it, and a map of every sheet with links."""
from __future__ import annotations

from typing import Iterable, Sequence

from ..a1 import quote_sheet
from ..layout import Block, Layout
from ..xlsx import SheetOptions, Style
from .base import BuildInputs, CellFormulas, Cells, Chart, Component, Constants, Shown, column, token_texts
from .prediction import Prediction
from .selftest import SelfTest

GUIDE_SHEET = "Guide"
HOW_TO = [
    "How to use it",
    "1. Change a token id on the 'tokens' sheet (yellow cells): every later step recalculates, "
    "and the prediction above changes.",
    "2. Or change any weight on a weight sheet (named after the GPT-2 parameter it holds, e.g. h.0.attn.c_attn.weight).",
    "3. Follow the forward pass sheet by sheet with the map below: each sheet's first row says "
    "what it computes and its shape; click a cell to see its formula.",
    "4. Each layer h0, h1, ...: layer norm, queries/keys/values, scores, softmax, weighted sum of values, "
    "projection, residual; then layer norm, MLP with GELU, residual.",
    "The number of tokens is fixed when the workbook is built: to use a longer prompt, build a new one "
    "with: sheetgpt build \"your prompt\".",
]
CONTROLS_LINE = ("On sheet 'controls': switch an attention head off (0) or down, push a steering vector into the "
                 "residual stream (its coefficient), or change the prediction's temperature.")
ARRAYS_LINE = ("What to edit: the prompt, token ids, weights and controls, freely. The matrix products (each layer's "
               "qkv, attn_proj, fc and mlp_proj sheets, the logits, the lens and next_logits) are array formulas "
               "{=MMULT(...)}: an array is changed as a whole (select all of it, edit, Ctrl+Shift+Enter), never one "
               "cell.")
FACTS_ROW = 3  # model, shape, prompt, tokens (and, with a typed prompt, the tokenizer's status)
PROMPT_ROW, STATUS_ROW = FACTS_ROW + 2, FACTS_ROW + 4  # a typed prompt's cell and its status, in column B
HOW_TO_TYPED = [
    "How to use it",
    f"1. Type any prompt into the yellow cell B{PROMPT_ROW}: the tokenizer sheets (tok_chars, tok_words, tok_bpe, "
    f"tok_ids) cut it into tokens, and every step after them recalculates. B{STATUS_ROW} says if all went well.",
    "2. Or type a token id of your own on the 'tokens' sheet (yellow column): it replaces the tokenizer's there.",
    "3. Or change any weight on a weight sheet (named after the GPT-2 parameter it holds, e.g. h.0.attn.c_attn.weight).",
    "4. Follow the forward pass sheet by sheet with the map below: each sheet's first row says "
    "what it computes and its shape; click a cell to see its formula.",
    "The book holds a fixed number of token positions (the rest is padding): for a longer prompt, build one "
    "with: sheetgpt build \"your prompt\" --positions N.",
]
PREDICTION_ROW, GENERATED_ROW, TOP_ROW, SELFTEST_ROW, HOW_TO_ROW = 8, 9, 10, 16, 17
CHART_COL, CHART_COLS = 9, 8  # the Guide's charts: from column I, 8 columns each


class Guide(Component):
    stage = "guide"
    decorated = False

    def __init__(self, layout: Layout, probe_lines: Sequence[str] = ()):
        """probe_lines: what the book's probes say in the how-to (sheetgpt.probes)."""
        super().__init__(layout)
        self.add_sheet(GUIDE_SHEET, "Start here: GPT-2 as a spreadsheet")
        how_to = HOW_TO_TYPED if layout.typed_prompt else HOW_TO
        extra = [CONTROLS_LINE, *probe_lines] + ([ARRAYS_LINE] if layout.options.arrays else [])
        self.how_to = how_to[:-1] + extra + how_to[-1:]
        self.map_row = HOW_TO_ROW + len(self.how_to) + 1  # the map's header row

    def show(self, prediction: Prediction, selftest: SelfTest, n_tokens: Block | None = None) -> None:
        """The prediction, the program's self-test and the typed prompt's token count the
        Guide shows, declared after the Guide: the prompt comes first."""
        self.prediction, self.selftest, self.n_tokens = prediction, selftest, n_tokens
        self.read(prediction.top_text, prediction.top_probs, prediction.top_ids, selftest.status)
        self.charts.append(Chart(chart_cells(0), f"The next token: the top {prediction.k}", prediction.top_text,
                                 [("probability", prediction.top_probs)], percent=True))

    def _mapped(self) -> list:
        return [s for s in self.layout.sheets if s.stage not in ("guide", "meta")]

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        cfg, model, p = self.layout.cfg, inputs.model, self.prediction
        about = f"{model.name}: {model.about}"
        yield guide_text(1, 1, "GPT-2 as a spreadsheet: every weight is a cell, every step a formula", Style.TITLE)
        typed = self.layout.typed_prompt
        facts = [("Model", about),
                 ("Shape", f"{cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, vocabulary "
                           f"{cfg.vocab_size}, context {cfg.n_ctx}; {model.weights.n_params:,} weights"),
                 ("Prompt (type here)" if typed else "Prompt", None if typed else inputs.prompt),
                 ("Tokens", None if typed else len(inputs.ids))]
        if typed:
            facts.append(("Tokenizer", None))  # the prompt, its token count and status are the tokenizer's
            n_tokens, T = self.n_tokens.name, self.layout.T
            yield CellFormulas(Block("", GUIDE_SHEET, PROMPT_ROW + 1, 2, 1, 1), [[f"{n_tokens}&\" of {T} positions\""]],
                               Style.DEFAULT, Shown("guide_n_tokens", lambda v, vocab: [
                                   f"{int(v[n_tokens][0, 0])} of {T} positions"]))
        for r, (key, value) in enumerate(facts, FACTS_ROW):
            yield guide_text(r, 1, key, Style.HEADER)
            if value is not None:
                yield guide_text(r, 2, value)
        yield guide_text(PREDICTION_ROW, 1, "Predicted next token", Style.HEADER)
        yield _mirror(PREDICTION_ROW, 2, p.top_text, 1, Style.INPUT, token_texts("guide_prediction", p.top_ids))
        yield _mirror(PREDICTION_ROW, 3, p.top_probs, 1, Style.PERCENT)
        yield Constants(Block("", GUIDE_SHEET, TOP_ROW, 1, 1, 4),
                        [[f"Top {p.k}", "token", "probability", "token id"]], Style.HEADER)
        yield column(Block("", GUIDE_SHEET, TOP_ROW + 1, 1, p.k, 1), range(1, p.k + 1))
        yield _mirror(TOP_ROW + 1, 2, p.top_text, p.k, Style.DEFAULT, token_texts("guide_top_text", p.top_ids))
        yield _mirror(TOP_ROW + 1, 3, p.top_probs, p.k, Style.PERCENT)
        yield _mirror(TOP_ROW + 1, 4, p.top_ids, p.k, Style.INTEGER)
        assert TOP_ROW + p.k < SELFTEST_ROW
        yield guide_text(SELFTEST_ROW, 1, "This program", Style.HEADER)
        yield CellFormulas(Block("", GUIDE_SHEET, SELFTEST_ROW, 2, 1, 1), [[self.selftest.status.at(0, 0)]],
                           Style.DEFAULT, self.selftest.shows_status("guide_selftest"))
        for i, line in enumerate(self.how_to):
            yield guide_text(HOW_TO_ROW + i, 1, line, Style.HEADER if i == 0 else Style.DEFAULT)
        yield Constants(Block("", GUIDE_SHEET, self.map_row, 1, 1, 2), [["Map of the sheets", "what it holds"]],
                        Style.HEADER)
        for r, sheet in enumerate(self._mapped(), self.map_row + 1):
            yield guide_text(r, 1, sheet.name, Style.LINK)
            yield guide_text(r, 2, sheet.title)

    def sheet_options(self, inputs: BuildInputs) -> SheetOptions:
        links = [(f"A{r}", f"{quote_sheet(s.name)}!A1", f"go to {s.name}")
                 for r, s in enumerate(self._mapped(), self.map_row + 1)]
        return SheetOptions(tab_color="FFC000", col_widths=[(1, 1, 24), (2, 2, 60), (3, 4, 14), (6, 6, 22)],
                            hyperlinks=links, fit_width=True)


def chart_cells(k: int) -> Block:
    """Where the Guide's k-th chart goes: right of its tables, side by side above the how-to
    (whose long lines run on to the right)."""
    return Block("", GUIDE_SHEET, FACTS_ROW, CHART_COL + k * CHART_COLS, HOW_TO_ROW - FACTS_ROW - 1, CHART_COLS - 1)


def guide_text(row: int, col: int, value: object, style: int = Style.DEFAULT) -> Constants:
    return Constants(Block("", GUIDE_SHEET, row, col, 1, 1), [[value]], style)


def _mirror(row: int, col: int, source: Block, n: int, style: int, shows: Shown | None = None) -> CellFormulas:
    """n cells down from (row, col) showing the first n cells of a one-column block; unless
    told otherwise they must show the numbers the reference computes for it."""
    shows = shows or Shown(f"guide_{source.name}", lambda v, vocab: list(v[source.name][:n, 0]))
    return CellFormulas(Block("", GUIDE_SHEET, row, col, n, 1), [[source.at(i, 0)] for i in range(n)], style, shows)
