"""Where every step of the forward pass lives in the workbook: defined once, used by the
builder (to write it) and the checker (to find it).

Every sheet has a title in row 1, column labels in row 2 and row labels in column A, so
data starts at row 3. A block is a rectangle of cells holding one step (or one weight
tensor, or the token ids); its name is a workbook-level defined name and, for steps,
the key of the same tensor in `reference.forward`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .model import GPT2Config, param_shapes
from .xlsx import col_letter

FIRST_ROW = 3  # rows 1-2: title and column labels
FIRST_COL = 2  # column A: row labels
META_SHEET = "_meta"
VOCAB_SHEET = "vocab"
GUIDE_SHEET = "Guide"


def quote_sheet(sheet: str) -> str:
    return "'" + sheet.replace("'", "''") + "'"


@dataclass(frozen=True)
class Block:
    name: str
    sheet: str
    row: int  # 1-based first row
    col: int  # 1-based first column
    n_rows: int
    n_cols: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_rows, self.n_cols

    def cell(self, i: int, j: int, abs_row: bool = False, abs_col: bool = False) -> str:
        """A1 address (no sheet) of element [i, j], optionally anchored."""
        return (("$" if abs_col else "") + col_letter(self.col + j)
                + ("$" if abs_row else "") + str(self.row + i))

    def rows_ref(self, i: int, abs_row: bool = False) -> str:
        """Row i of the block as a range with anchored columns, e.g. 'h0 ln_1'!$D3:$S3."""
        a = self.cell(i, 0, abs_row, True)
        b = self.cell(i, self.n_cols - 1, abs_row, True)
        return f"{quote_sheet(self.sheet)}!{a}:{b}"

    def col_ref(self, j: int, abs_col: bool = False) -> str:
        """Column j of the block as a range with anchored rows, e.g. 'wte'!B$3:B$50259."""
        a = self.cell(0, j, True, abs_col)
        b = self.cell(self.n_rows - 1, j, True, abs_col)
        return f"{quote_sheet(self.sheet)}!{a}:{b}"

    def span(self, i0: int, j0: int, i1: int, j1: int, abs_row: bool, abs_col: bool) -> str:
        """Elements [i0..i1, j0..j1] as a range with its sheet."""
        a, b = self.cell(i0, j0, abs_row, abs_col), self.cell(i1, j1, abs_row, abs_col)
        return f"{quote_sheet(self.sheet)}!{a}" + (f":{b}" if a != b else "")

    def ref(self) -> str:
        """The whole block, absolute, with its sheet: the defined name's target."""
        a = self.cell(0, 0, True, True)
        b = self.cell(self.n_rows - 1, self.n_cols - 1, True, True)
        return f"{quote_sheet(self.sheet)}!{a}" + (f":{b}" if a != b else "")

    def at(self, i: int, j: int) -> str:
        """Relative address of element [i, j] with its sheet, for a cell on another sheet."""
        return f"{quote_sheet(self.sheet)}!{self.cell(i, j)}"


@dataclass
class Sheet:
    name: str
    title: str  # what it computes, in plain words, with its shape
    stage: str  # guide, input, embedding, attention, mlp, output, weights, vocab, meta
    blocks: list[Block] = field(default_factory=list)


def weight_block_name(param: str) -> str:
    """Defined name of a parameter: dots are not portable in names, so h.0.ln_1.weight -> h0_ln_1_weight."""
    return param.replace("h.", "h", 1).replace(".", "_") if param.startswith("h.") else param.replace(".", "_")


class Layout:
    """The sheets and blocks of a workbook for one model configuration and prompt length."""

    def __init__(self, cfg: GPT2Config, n_tokens: int):
        if not 1 <= n_tokens <= cfg.n_ctx:
            raise ValueError(f"need 1 to {cfg.n_ctx} tokens, got {n_tokens}")
        self.cfg, self.T = cfg, n_tokens
        self.sheets: list[Sheet] = []
        self.blocks: dict[str, Block] = {}
        self.steps: list[str] = []  # checked blocks, in forward order (reference keys)
        self._plan()

    # -- construction -------------------------------------------------------
    def _sheet(self, name: str, title: str, stage: str) -> Sheet:
        sheet = Sheet(name, title, stage)
        self.sheets.append(sheet)
        return sheet

    def _block(self, sheet: Sheet, name: str, n_rows: int, n_cols: int,
               row: int = FIRST_ROW, col: int = FIRST_COL, step: bool = True) -> Block:
        block = Block(name, sheet.name, row, col, n_rows, n_cols)
        sheet.blocks.append(block)
        self.blocks[name] = block
        if step:
            self.steps.append(name)
        return block

    def _layer_norm(self, name: str, sheet_name: str, title: str, stage: str) -> None:
        """Mean in column B, variance in C, the normalised row from D on."""
        T, D = self.T, self.cfg.n_embd
        s = self._sheet(sheet_name, title, stage)
        self._block(s, name + "_mean", T, 1, col=2)
        self._block(s, name + "_var", T, 1, col=3)
        self._block(s, name, T, D, col=4)

    def _plan(self) -> None:
        cfg, T, D, H = self.cfg, self.T, self.cfg.n_embd, self.cfg.n_head
        V, dh = cfg.vocab_size, cfg.head_dim
        self._sheet(GUIDE_SHEET, "Start here: GPT-2 as a spreadsheet", "guide")
        s = self._sheet("tokens", f"Token ids of the prompt (edit them) and their text [{T} positions]", "input")
        self._block(s, "tokens", T, 1, step=False)
        s = self._sheet("embed_tok", f"Token embedding: row of wte for each token id [{T} x {D}]", "embedding")
        self._block(s, "embed_tok", T, D)
        s = self._sheet("embed", f"Input x = token embedding + position embedding (wpe) [{T} x {D}]", "embedding")
        self._block(s, "embed", T, D)
        for i in range(cfg.n_layer):
            L = f"h{i}"
            self._layer_norm(f"{L}_ln_1", f"{L} ln_1",
                             f"Layer {i}: layer norm 1 of x: (x - mean) / sqrt(var + eps) * gain + bias [{T} x {D}]",
                             "attention")
            s = self._sheet(f"{L} qkv", f"Layer {i}: queries | keys | values = ln_1 @ c_attn.weight + bias [{T} x {3 * D}]", "attention")
            self._block(s, f"{L}_qkv", T, 3 * D)
            s = self._sheet(f"{L} kT", f"Layer {i}: keys transposed, one column per position [{D} x {T}]", "attention")
            self._block(s, f"{L}_kT", D, T)
            s = self._sheet(f"{L} scores", f"Layer {i}: attention scores q.k / sqrt({dh}) per head; future positions masked (empty) [{H} heads x {T} x {T}]", "attention")
            self._block(s, f"{L}_scores", H * T, T)
            s = self._sheet(f"{L} softmax", f"Layer {i}: softmax pieces per row: max, sum of exp, exp(score - max); masked cells are 0 [{H * T} x {T}]", "attention")
            self._block(s, f"{L}_softmax_max", H * T, 1, col=2)
            self._block(s, f"{L}_softmax_exp", H * T, T, col=4)
            self._block(s, f"{L}_softmax_sum", H * T, 1, col=3)
            s = self._sheet(f"{L} probs", f"Layer {i}: attention weights = exp / sum; each row sums to 1 [{H} heads x {T} x {T}]", "attention")
            self._block(s, f"{L}_probs", H * T, T)
            s = self._sheet(f"{L} attn", f"Layer {i}: attention output per head = weights @ values, heads side by side [{T} x {D}]", "attention")
            self._block(s, f"{L}_attn", T, D)
            s = self._sheet(f"{L} attn_proj", f"Layer {i}: attention projection = attn @ c_proj.weight + bias [{T} x {D}]", "attention")
            self._block(s, f"{L}_attn_proj", T, D)
            s = self._sheet(f"{L} resid_1", f"Layer {i}: residual: x + attention projection [{T} x {D}]", "attention")
            self._block(s, f"{L}_resid_1", T, D)
            self._layer_norm(f"{L}_ln_2", f"{L} ln_2",
                             f"Layer {i}: layer norm 2 of the residual stream [{T} x {D}]", "mlp")
            s = self._sheet(f"{L} fc", f"Layer {i}: MLP up-projection = ln_2 @ c_fc.weight + bias [{T} x {4 * D}]", "mlp")
            self._block(s, f"{L}_fc", T, 4 * D)
            s = self._sheet(f"{L} gelu", f"Layer {i}: GELU (tanh form) of the up-projection [{T} x {4 * D}]", "mlp")
            self._block(s, f"{L}_gelu", T, 4 * D)
            s = self._sheet(f"{L} mlp_proj", f"Layer {i}: MLP down-projection = gelu @ c_proj.weight + bias [{T} x {D}]", "mlp")
            self._block(s, f"{L}_mlp_proj", T, D)
            s = self._sheet(f"{L} resid_2", f"Layer {i}: residual: resid_1 + MLP output = the layer's output [{T} x {D}]", "mlp")
            self._block(s, f"{L}_resid_2", T, D)
        self._layer_norm("ln_f", "ln_f", f"Final layer norm [{T} x {D}]", "output")
        logits = s = self._sheet("logits", f"Logits for the next token: last position's ln_f row . each wte row [{V}]; probabilities", "output")
        self._block(s, "logits", V, 1, col=3)
        s = self._sheet("prediction", "Predicted next token: softmax over the logits and the top 5 [5 x 3]", "output")
        self._block(s, "next_max", 1, 1, row=3)
        self._block(s, "next_sum", 1, 1, row=4)
        self._block(logits, "next_probs", V, 1, col=4)
        k = 5
        self._block(s, "top_logits", k, 1, row=8, col=3)
        self._block(s, "top_ids", k, 1, row=8, col=2)
        self._block(s, "top_probs", k, 1, row=8, col=4)
        s = self._sheet(VOCAB_SHEET, f"Vocabulary: token id, text, GPT-2 byte-level string [{V}]", "vocab")
        self._block(s, "vocab_text", V, 1, step=False)
        for param, shape in param_shapes(cfg).items():
            rows, cols = (1, shape[0]) if len(shape) == 1 else shape
            s = self._sheet(param, f"Weights {param} [{' x '.join(map(str, shape))}]", "weights")
            self._block(s, weight_block_name(param), rows, cols, step=False)
        self._sheet(META_SHEET, "sheetgpt metadata", "meta")

    # -- lookup ---------------------------------------------------------------
    def sheet(self, name: str) -> Sheet:
        return next(s for s in self.sheets if s.name == name)

    def weight(self, param: str) -> Block:
        return self.blocks[weight_block_name(param)]
