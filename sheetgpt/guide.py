"""The first sheet a newcomer reads: the model, the prompt, the live prediction, how to
edit it, and a map of every sheet with links."""
from __future__ import annotations

from .layout import Layout, quote_sheet
from .load import LoadedModel
from .xlsx import SheetOptions, Style, formula_cell, number_cells, string_cell

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


def guide_rows(layout: Layout, model: LoadedModel, prompt: str, ids: list[int]) -> tuple[dict, SheetOptions]:
    cfg, B = layout.cfg, layout.blocks
    pred = quote_sheet(B["top_ids"].sheet)
    rows: dict[int, list] = {}

    def put(r: int, *cells: bytes) -> None:
        rows[r] = [(c, 1, xml) for c, xml in enumerate(cells, 1)]

    put(1, string_cell("GPT-2 as a spreadsheet: every weight is a cell, every step a formula", Style.TITLE))
    about = (f"{model.name}: RANDOM weights, so its predictions are meaningless; it shows the mechanics"
             if model.random else f"{model.name}: trained GPT-2 weights")
    put(3, string_cell("Model", Style.HEADER), string_cell(about))
    put(4, string_cell("Shape", Style.HEADER),
        string_cell(f"{cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, "
                    f"vocabulary {cfg.vocab_size}, context {cfg.n_ctx}; {model.weights.n_params:,} weights"))
    put(5, string_cell("Prompt", Style.HEADER), string_cell(prompt))
    put(6, string_cell("Tokens", Style.HEADER), number_cells([len(ids)]))
    put(8, string_cell("Predicted next token", Style.HEADER),
        formula_cell(f"{pred}!E{B['top_ids'].row}", Style.INPUT),
        formula_cell(f"{pred}!D{B['top_ids'].row}", Style.PERCENT))
    put(10, *(string_cell(t, Style.HEADER) for t in ["Top 5", "token", "probability", "token id"]))
    for k in range(5):
        r = B["top_ids"].row + k
        put(11 + k, number_cells([k + 1]), formula_cell(f"{pred}!E{r}"),
            formula_cell(f"{pred}!D{r}", Style.PERCENT), formula_cell(f"{pred}!B{r}"))
    r = 17
    for i, line in enumerate(HOW_TO):
        put(r + i, string_cell(line, Style.HEADER if i == 0 else Style.DEFAULT))
    r += len(HOW_TO) + 1
    put(r, *(string_cell(t, Style.HEADER) for t in ["Map of the sheets", "what it holds"]))
    links = []
    for sheet in layout.sheets[1:]:
        if sheet.stage == "meta":
            continue
        r += 1
        put(r, string_cell(sheet.name, Style.LINK), string_cell(sheet.title))
        links.append((f"A{r}", f"{quote_sheet(sheet.name)}!A1", f"go to {sheet.name}"))
    options = SheetOptions(tab_color="FFC000", col_widths=[(1, 1, 24), (2, 2, 60), (3, 4, 14)],
                           hyperlinks=links)
    return rows, options
