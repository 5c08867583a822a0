"""The first sheet a newcomer reads: the model, the prompt, the live prediction, how to
edit it, and a map of every sheet with links."""
from __future__ import annotations

from .layout import Layout, quote_sheet
from .load import LoadedModel
from .xlsx import SheetOptions, Style, formula_cell, number_cells, string_cell

BACK_LINK = "<- Guide"

# A note on the first formula cell of each step: what the formula computes, in plain words.
STEP_NOTES = {
    "embed_tok": "INDEX picks, from the token embedding matrix wte, the row of this position's token id "
                 "(+1 because ids start at 0): one column of it per cell.",
    "embed": "The model's input x: token embedding plus the position embedding wpe of this position, so the "
             "same word at different places gets different vectors.",
    "ln_mean": "Layer norm, step 1: the mean of this row of the residual stream.",
    "ln_var": "Layer norm, step 2: the population variance of the row, the mean of squared distances from the mean.",
    "ln": "Layer norm, step 3: subtract the mean, divide by sqrt(variance + 1e-5), then scale by the learned gain "
          "and add the learned bias (one per column).",
    "qkv": "One output of a linear layer: this position's normalised row times one column of c_attn.weight, "
           "plus the bias. The first third of the columns are queries, then keys, then values.",
    "kT": "A plain reference: the keys, transposed so that each position's key is a column (MMULT needs a "
          "row times a column).",
    "scores": "How well this query matches this key: the dot product of the head's query row and key column, "
              "divided by sqrt(head size). Cells right of the diagonal stay empty: a token cannot see the future.",
    "softmax_max": "Softmax, step 1: the largest score in the row (subtracted next so EXP cannot overflow).",
    "softmax_exp": "Softmax, step 2: exp(score - max). Masked (future) cells are 0.",
    "softmax_sum": "Softmax, step 3: the sum of the row's exps.",
    "probs": "Softmax, step 4: exp / sum. Each row sums to 1: how much this query attends to each earlier position.",
    "attn": "The attention output of one head: this position's attention weights (a row) times one column of the "
            "values. The heads sit side by side.",
    "attn_proj": "The attention output projection: the row of all heads times one column of attn.c_proj.weight, "
                 "plus bias.",
    "resid_1": "Residual connection: the stream that came in plus what attention adds.",
    "fc": "MLP up-projection to 4x the width: the normalised row times one column of mlp.c_fc.weight, plus bias.",
    "gelu": "GELU activation (GPT-2's tanh form): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).",
    "mlp_proj": "MLP down-projection back to the model width: the GELU row times one column of "
                "mlp.c_proj.weight, plus bias.",
    "resid_2": "Residual connection: the stream plus what the MLP adds. This is the layer's output.",
    "logits": "The score of this vocabulary token as the next token: the last position's ln_f row dotted with the "
              "token's row of wte (the same matrix as the input embedding: tied weights).",
    "next_probs": "The probability of this token: exp(logit - max) / sum of exps (a softmax over the vocabulary).",
    "next_max": "The largest logit, subtracted before EXP so it cannot overflow.",
    "next_sum": "The sum of exp(logit - max) over the whole vocabulary.",
    "top_logits": "LARGE finds the k-th largest logit.",
    "top_ids": "MATCH finds which token has that logit (its row in logits, minus 1 because ids start at 0).",
    "top_probs": "The probability of the k-th most likely token.",
}

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
            formula_cell(f"{pred}!D{r}", Style.PERCENT), formula_cell(f"{pred}!B{r}", Style.INTEGER))
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
                           hyperlinks=links, fit_width=True)
    return rows, options
