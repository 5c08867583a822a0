"""The prompt a learner types on the Guide, tokenized in formulas as GPT-2 tokenizes it.

Four sheets, in forward order before `tokens`:
- tok_chars: each character's code and class, and where GPT-2's pre-tokenizer regex
  starts a word (contractions, a leading space joining the run after it, whitespace runs);
- tok_words: each word's first character, length and text;
- tok_bpe: the byte-pair merges, round by round: in round k every word merges its
  best-ranked adjacent pair (at every place it occurs, left to right);
- tok_ids: the words' tokens, one per position, then padding.
The merge table (pairs keyed by numbers, sorted) is on sheet `merges`.

Only functions Excel 2010+ and LibreOffice compute alike are used (MID, LEN, CODE, EXACT,
CHAR, IF, AND, OR, MATCH, INDEX, MIN, MAX, SUM, ISNUMBER, &). Text comparison ignores
case in both programs, so symbols are compared by id: a pair (left, right) is the number
left * vocab_size + right, looked up by MATCH(key, keys, 1) and an equality test.

Each component's `compute` is the reference: the regex itself and the BPE loop, on the
same text and merge table, never these formulas.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import regex

from ..a1 import quote_sheet
from ..layout import FIRST_ROW, Block, Layout, Sheet
from ..tokenizer import GPT2_PATTERN
from ..xlsx import Style
from .base import BuildInputs, Cells, Component, Constants, Formula, Shown, Values, column, header, \
    labels_column
from .guide import PROMPT_ROW, STATUS_ROW

WORD_SLOTS = 20  # bytes a word may have: the merge grid's width (and its rounds)
N_CODES = 128  # the byte table covers ASCII
PAD_TEXT = "(padding)"
# character classes of the pre-tokenizer (column tok_chars!D)
END, LETTER, DIGIT, SPACE, OTHER_SPACE, SYMBOL, UNSUPPORTED = range(7)
SUPPORTED_CONTROLS = (9, 10, 13)  # tab, line feed, carriage return
UNSUPPORTED_AS = ord("?")  # what the sheet reads in place of a character it cannot
_PATTERN = regex.compile(GPT2_PATTERN)


def chars_capacity(positions: int) -> int:
    """Characters the sheet tokenizer reads: 8 per position (GPT-2 averages about 4)."""
    return max(64, 8 * positions)


def char_class(ch: str) -> int:
    c = ord(ch)
    if "A" <= ch <= "Z" or "a" <= ch <= "z":
        return LETTER
    if "0" <= ch <= "9":
        return DIGIT
    if c == 32:
        return SPACE
    if c in SUPPORTED_CONTROLS:
        return OTHER_SPACE
    return SYMBOL if 32 < c < 127 else UNSUPPORTED


def readable(text: str, capacity: int) -> str:
    """What the sheet tokenizes: the first `capacity` characters, each one it cannot read
    replaced by "?" (the status cell says so)."""
    return "".join("?" if char_class(ch) == UNSUPPORTED else ch for ch in text[:capacity])


def status_message(text: str, positions: int, n_words: int, word_lengths: list[int], n_needed: int) -> str:
    """The Guide's tokenizer status, worked out in Python from the text and its words."""
    C, W = chars_capacity(positions), WORD_SLOTS
    bad = next((i for i, ch in enumerate(text[:C]) if char_class(ch) == UNSUPPORTED), None)
    lengths = word_lengths[:positions]
    long_word = lengths.index(max(lengths)) if lengths and max(lengths) > W else None  # as MATCH(MAX) finds it
    rebuild = "sheetgpt build \"your prompt\" --positions N"
    if not text:
        return "Type a prompt into the yellow cell above."
    if len(text) > C:
        return f"The prompt has {len(text)} characters; this book reads {C}. Rebuild it: {rebuild}."
    if bad is not None:
        return (f"Character {bad + 1} ({text[bad]}) is not ASCII: the sheet reads letters, digits, punctuation, "
                f"spaces, tabs and line breaks. sheetgpt build tokenizes any text.")
    if n_words > positions:
        return f"The prompt has more than {positions} tokens; this book holds {positions}. Rebuild it: {rebuild}."
    if long_word is not None:
        return (f"Word {long_word + 1} has {word_lengths[long_word]} characters; the merge grid holds {W}. "
                "Put a space in it.")
    if n_needed > positions:
        return f"The prompt is {n_needed} tokens; this book holds {positions}. Rebuild it: {rebuild}."
    return f"OK: {n_needed} tokens, {positions - n_needed} positions of padding."


def is_tokenizer(component: Component | None) -> bool:
    """Whether a component is part of the sheet's tokenizer (for counting its cells)."""
    return isinstance(component, (MergeTable, PromptChars, PromptWords, BytePairMerges, PromptIds))


class MergeTable(Component):
    """The tokenizer as numbers: each ASCII byte's token id, and every merge keyed by its
    pair's ids, sorted by key, with its rank and merged token id."""

    stage = "vocab"

    def __init__(self, layout: Layout, n_merges: int):
        super().__init__(layout)
        self.none_rank = n_merges  # larger than every rank: "no merge"
        self.add_sheet("merges", f"Tokenizer tables: byte -> token id [{N_CODES}], merges sorted by pair key "
                                 f"[{n_merges}]")
        self.byte_ids = self.add_block("byte_ids", N_CODES, 1, step=False, given=True)
        rows = n_merges + 1  # a first row below every key: MATCH(key, keys, 1) never fails
        self.keys = self.add_block("merge_keys", rows, 1, col=5, step=False, given=True)
        self.ranks = self.add_block("merge_ranks", rows, 1, col=6, step=False, given=True)
        self.merged = self.add_block("merge_ids", rows, 1, col=7, step=False, given=True)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        tok, V = inputs.model.tokenizer, self.layout.cfg.vocab_size
        ids = [tok.byte_id(b) for b in range(N_CODES)]
        yield column(labels_column(self.byte_ids), range(N_CODES))
        yield column(self.byte_ids, (-1 if i is None else i for i in ids), given=True)
        yield header(self.byte_ids, ["token id"])
        table = sorted((a * V + b, rank, merged) for a, b, merged, rank in tok.merge_table())
        rows = [(-1, self.none_rank, -1)] + table
        yield Constants(self.keys.part(n_cols=3), rows, given=True)
        yield header(self.keys.part(n_cols=3), ["pair key", "rank", "merged id"])
        yield Constants(Block("", self.keys.sheet, 1, 5, 1, 1), [["left id * vocab size + right id"]])

    def pairs(self, v: Values, V: int) -> dict[tuple[int, int], tuple[int, int]]:
        """(left id, right id) -> (rank, merged id), from the table's values."""
        keys, ranks, merged = (v[b.name][1:, 0].astype(np.int64) for b in (self.keys, self.ranks, self.merged))
        return {(int(k) // V, int(k) % V): (int(r), int(m)) for k, r, m in zip(keys, ranks, merged)}


class PromptChars(Component):
    stage, kind, short_title = "input", "tok_chars", "Tokenizer: characters and words"
    lesson = """
<p>The prompt is cut into <em>words</em> first, by the pattern GPT-2 was trained with:
a run of letters, of digits or of punctuation, each with the space before it; the
English endings <code>'s 't 're 've 'm 'll 'd</code>; and runs of spaces, of which the
last space joins the word after it.</p>
<p>Each row is one character: its code (<code>CODE</code>), its class, how long the run
of its class is from there, and how long a word starting there would be. Reading down,
a word starts where the previous one ended.</p>
"""

    WORDS = "_words"  # the words as the sheet shows them (not a block: text the words' sheet shows too)

    def __init__(self, layout: Layout, guide: Sheet, tables: MergeTable):
        super().__init__(layout)
        self.byte_ids = tables.byte_ids
        C = self.capacity = chars_capacity(layout.T)
        self.prompt = self.add_block("prompt", 1, 1, sheet=guide, row=PROMPT_ROW, col=2, step=False)
        self.add_sheet("tok_chars", f"Tokenizer 1: the prompt's characters, their classes and where "
                                            f"each word starts [{C} characters]")
        names = ["chars", "char_codes", "char_classes", "char_groups", "char_runs", "match_lengths",
                 "word_starts", "next_starts", "word_numbers", "char_symbols"]
        notes = {
            "char_codes": "CODE of the character (-1 past the end).",
            "char_classes": "1 letter, 2 digit, 3 space, 4 tab or line break, 5 other symbol, 6 not ASCII "
                            "(read as ?), 0 past the end.",
            "char_groups": "Classes that run together: letters, digits, whitespace (3 and 4), symbols.",
            "char_runs": "How many characters of the same group follow from here (this one included).",
            "match_lengths": "How long a word starting here is: a contraction, the run (with a space before "
                             "it joining), or whitespace that leaves its last space to the next word.",
            "word_starts": "1 where a word starts: the first character, then where the previous word ends.",
            "next_starts": "Where the next word starts, as known at this character.",
            "word_numbers": "Which word this character belongs to.",
            "char_symbols": "The token id of this byte: where the merges begin.",
        }
        self.blocks = {n: self.add_block(n, C, 1, col=2 + k, step=n != "chars", note=notes.get(n))
                       for k, n in enumerate(names)}
        self.length = self.add_block("prompt_length", 1, 1, row=3, col=14, note="LEN of the prompt.")
        self.count = self.add_block("char_count", 1, 1, row=4, col=14, note=(
            f"The characters read: at most {C}."))
        self.read(self.prompt, self.byte_ids)

    def text(self, v: Values) -> str:
        """The prompt cell's text ("" when empty)."""
        value = v[self.prompt.name][0, 0]
        return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        C, b = self.capacity, self.blocks
        yield Constants(self.prompt, [[inputs.prompt]], Style.INPUT, given=True)
        yield column(labels_column(b["chars"]), range(1, C + 1))
        yield header(b["chars"], ["char", "code", "class", "group", "run", "word length", "starts?",
                                  "next start", "word", "byte token"])
        c = {n: blk.cell(0, 0) for n, blk in b.items()}
        below = {n: blk.cell(1, 0) for n, blk in b.items()}
        i = f"$A{FIRST_ROW}"
        code, cls, grp, run = c["char_codes"], c["char_classes"], c["char_groups"], c["char_runs"]
        nxt, nxt2 = below["char_codes"], b["char_codes"].cell(2, 0)
        yield Formula(b["chars"], f"MID(prompt,{i},1)", Style.DEFAULT,
                      shows=Shown("chars", lambda v, vocab: list(v["_chars"])))
        yield Formula(b["char_codes"], f"IF({i}>char_count,-1,CODE({c['chars']}))", Style.INTEGER)
        yield Formula(b["char_classes"], (
            f"IF({code}<0,{END},IF(OR(AND({code}>=65,{code}<=90),AND({code}>=97,{code}<=122)),{LETTER},"
            f"IF(AND({code}>=48,{code}<=57),{DIGIT},IF({code}=32,{SPACE},"
            f"IF(OR({code}=9,{code}=10,{code}=13),{OTHER_SPACE},"
            f"IF(AND({code}>32,{code}<127),IF(EXACT({c['chars']},CHAR({code})),{SYMBOL},{UNSUPPORTED}),"
            f"{UNSUPPORTED}))))))"), Style.INTEGER)
        yield Formula(b["char_groups"], f"IF({cls}={OTHER_SPACE},{SPACE},IF({cls}={UNSUPPORTED},{SYMBOL},{cls}))",
                      Style.INTEGER)
        yield Formula(b["char_runs"], f"IF({grp}=0,0,IF({below['char_groups']}={grp},1+{below['char_runs']},1))",
                      Style.INTEGER)
        contraction3 = f"OR(AND({nxt}=114,{nxt2}=101),AND({nxt}=118,{nxt2}=101),AND({nxt}=108,{nxt2}=108))"
        g1 = below["char_groups"]
        yield Formula(b["match_lengths"], (
            f"IF({grp}=0,0,IF({code}=39,IF(OR({nxt}=115,{nxt}=116,{nxt}=109,{nxt}=100),2,IF({contraction3},3,{run})),"
            f"IF(AND({cls}={SPACE},OR({g1}={LETTER},{g1}={DIGIT},{g1}={SYMBOL})),1+{below['char_runs']},"
            f"IF({grp}<>{SPACE},{run},IF({i}+{run}-1=char_count,{run},MAX(1,{run}-1))))))"), Style.INTEGER)
        starts, nexts, words = b["word_starts"], b["next_starts"], b["word_numbers"]
        first, rest = (lambda blk: blk.part(n_rows=1)), (lambda blk: blk.part(row0=1))
        yield Formula(first(starts), f"IF({grp}=0,0,1)", Style.INTEGER)
        yield Formula(rest(starts), f"IF(AND({below['char_groups']}<>0,$A{FIRST_ROW + 1}={c['next_starts']}),1,0)",
                      Style.INTEGER)
        yield Formula(first(nexts), f"IF({c['word_starts']}=1,{i}+{c['match_lengths']},1)", Style.INTEGER)
        yield Formula(rest(nexts), f"IF({below['word_starts']}=1,$A{FIRST_ROW + 1}+{below['match_lengths']},"
                                   f"{c['next_starts']})", Style.INTEGER)
        yield Formula(first(words), c["word_starts"], Style.INTEGER)
        yield Formula(rest(words), f"{c['word_numbers']}+{below['word_starts']}", Style.INTEGER)
        yield Formula(b["char_symbols"], f"IF({cls}={END},-1,INDEX(byte_ids,IF({cls}={UNSUPPORTED},"
                                         f"{UNSUPPORTED_AS},{code})+1))", Style.INTEGER)
        yield Formula(self.length, "LEN(prompt)", Style.INTEGER)
        yield Formula(self.count, f"MIN(prompt_length,{C})", Style.INTEGER)
        yield Constants(self.length.part(col=13, n_rows=2), [["prompt length"], ["characters read"]], Style.HEADER)

    def compute(self, v: Values) -> None:
        text = self.text(v)
        C = self.capacity
        s = readable(text, C)
        n = len(s)
        pad = lambda xs, fill: np.array(list(xs) + [fill] * (C - len(xs)), dtype=np.float64)[:, None]
        codes = [ord(ch) for ch in text[:C]]
        classes = [char_class(ch) for ch in text[:C]]
        groups = [{OTHER_SPACE: SPACE, UNSUPPORTED: SYMBOL}.get(k, k) for k in classes]
        runs = [0] * n
        for k in range(n - 1, -1, -1):
            runs[k] = 1 + runs[k + 1] if k + 1 < n and groups[k + 1] == groups[k] else 1
        lengths = [len(_PATTERN.match(s, k).group()) for k in range(n)]  # a match always exists
        spans = [m.span() for m in _PATTERN.finditer(s)]
        starts = [0] * n
        for a, _ in spans:
            starts[a] = 1
        numbers = np.cumsum(starts).tolist()
        ends = {a: e for a, e in spans}
        nexts, last = [], 1
        for k in range(C):
            if k < n and starts[k]:
                last = ends[k] + 1
            nexts.append(last)
        symbols = [int(v[self.byte_ids.name][ord(ch), 0]) for ch in s]
        v["_chars"] = np.array(list(text[:C]) + [""] * (C - min(len(text), C)), dtype=object)
        for name, xs, fill in (("char_codes", codes, -1), ("char_classes", classes, END), ("char_groups", groups, 0),
                               ("char_runs", runs, 0), ("match_lengths", lengths, 0), ("word_starts", starts, 0),
                               ("word_numbers", numbers, numbers[-1] if numbers else 0),
                               ("char_symbols", symbols, -1)):
            v[name] = pad(xs, fill)
        v[self.blocks["next_starts"].name] = np.array(nexts, dtype=np.float64)[:, None]
        v[self.length.name] = np.array([[len(text)]], dtype=np.float64)
        v[self.count.name] = np.array([[n]], dtype=np.float64)
        v[self.WORDS] = [text[a:e] for a, e in spans]  # as the sheet shows them: a character it cannot read too


class PromptWords(Component):
    stage, kind, short_title = "input", "tok_words", "Tokenizer: the words"
    lesson = """
<p>The words found on the characters' sheet, one per row: where each starts
(<code>MATCH</code> finds the first character with its word number), how long it is and
its text. Every word is tokenized on its own: no token ever spans two words.</p>
"""

    def __init__(self, layout: Layout, chars: PromptChars):
        super().__init__(layout)
        self.chars = chars
        NW = self.n_rows = layout.T
        self.add_sheet("tok_words", f"Tokenizer 2: the words of the prompt, where each starts and how long it is "
                                    f"[{NW} words]")
        self.starts = self.add_block("word_first_chars", NW, 1, note="MATCH finds the word's first character.")
        self.lengths = self.add_block("word_lengths", NW, 1, col=3, note="The word length found at that character.")
        self.texts = self.starts.part(col=4)
        self.count = self.add_block("n_words", 1, 1, row=3, col=7, note="The largest word number.")
        self.read(chars.blocks["word_numbers"], chars.blocks["match_lengths"])

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        yield column(labels_column(self.starts), range(1, self.n_rows + 1))
        yield header(self.starts, ["first char", "length", "word"])
        i = f"$A{FIRST_ROW}"
        yield Formula(self.starts, f"IF({i}>n_words,0,MATCH({i},word_numbers,0))", Style.INTEGER)
        yield Formula(self.lengths, f"IF({self.starts.cell(0, 0)}=0,0,INDEX(match_lengths,{self.starts.cell(0, 0)}))",
                      Style.INTEGER)
        first, n = self.starts.cell(0, 0), self.lengths.cell(0, 0)
        yield Formula(self.texts, f"IF({first}=0,\"\",MID(prompt,{first},{n}))", Style.DEFAULT,
                      shows=Shown("word_texts", lambda v, vocab: self._texts(v)))
        yield Formula(self.count, "MAX(word_numbers)", Style.INTEGER)
        yield Constants(self.count.part(col=6), [["words"]], Style.HEADER)

    def _texts(self, v: Values) -> list[str]:
        words = v[PromptChars.WORDS][:self.n_rows]
        return words + [""] * (self.n_rows - len(words))

    def compute(self, v: Values) -> None:
        words = v[PromptChars.WORDS]
        starts = np.flatnonzero(v[self.chars.blocks["word_starts"].name][:, 0]) + 1
        firsts = np.zeros(self.n_rows)
        lengths = np.zeros(self.n_rows)
        k = min(len(words), self.n_rows)
        firsts[:k] = starts[:k]
        lengths[:k] = [len(w) for w in words[:k]]
        v[self.starts.name], v[self.lengths.name] = firsts[:, None], lengths[:, None]
        v[self.count.name] = np.array([[len(words)]], dtype=np.float64)


class BytePairMerges(Component):
    """Round k's rows hold every word after k merge rounds: its symbols (token ids), their
    text, and the work of the next round (pair keys, ranks, which pairs merge, where the
    symbols go)."""

    stage, kind, short_title = "input", "tok_bpe", "Tokenizer: byte-pair merges"
    lesson = """
<p>Each word starts as its bytes, one symbol per byte. Then, round after round, the
two neighbouring symbols whose merge GPT-2 learned earliest (the lowest rank in the
<code>merges</code> table) become one symbol, everywhere in the word at once, until no
neighbouring pair is in the table. What is left are the word's tokens.</p>
<p>A pair is looked up by a number, <code>left id &times; vocabulary size + right id</code>:
text comparison in spreadsheets ignores case, numbers do not.</p>
"""

    def __init__(self, layout: Layout, words: PromptWords, tables: MergeTable, vocab: Block):
        super().__init__(layout)
        NW, W = words.n_rows, WORD_SLOTS
        self.n_words, self.tables, self.words = NW, tables, words
        # an empty row between rounds: a round's formulas then never adjoin the next round's alike
        # ones, so no spreadsheet joins them into one column group that reads itself (LibreOffice's
        # threaded calculation computed the first cell of such a loop from a cell not yet computed)
        self.stride = NW + 1
        self.add_sheet("tok_bpe", f"Tokenizer 3: byte-pair merges, one band of rows per round [{W} rounds x "
                                  f"{NW} words x {W} symbols]")
        rows, col = W * self.stride - 1, 2
        self.symbols = self.add_block("bpe_symbols", rows, W, note="The word's symbols after this many rounds, as "
                                      "token ids (-1: none).")
        self.text = self.symbols.part(col=col + W)
        col += 2 * W
        self.counts = self.add_block("bpe_counts", rows, 1, col=col, note="How many symbols the word has.")
        self.best = self.add_block("bpe_best", rows, 1, col=col + 1, note="The lowest rank of its pairs: the merge "
                                   "of this round (the none rank: nothing left to merge).")
        col += 2
        self.work = {}
        for name, note in (("bpe_pair_keys", "Each neighbouring pair as one number: left id * vocab size + right id."),
                           ("bpe_key_rows", "MATCH(key, merge_keys, 1): the row of the largest key <= this one."),
                           ("bpe_ranks", "The pair's rank if that row holds exactly this key, else the none rank."),
                           ("bpe_merges", "1 where the best pair starts and its left symbol is not taken by a merge "
                                          "just before."),
                           ("bpe_out_slots", "Where this symbol goes in the next round."),
                           ("bpe_emits", "What it brings there: the merged id where a merge starts, else itself.")):
            self.work[name] = self.add_block(name, rows, W, col=col, note=note)
            col += W
        self.read(words.starts, words.lengths, tables.keys, tables.ranks, tables.merged, vocab)

    def band(self, blk: Block, k: int, j0: int = 0, n_cols: int | None = None) -> Block:
        return blk.part(row0=k * self.stride, n_rows=self.n_words, col0=j0,
                        n_cols=blk.n_cols - j0 if n_cols is None else n_cols)

    def band_rows(self, k: int) -> slice:
        """Round k's rows in a block's array (the rows between rounds are empty)."""
        return slice(k * self.stride, k * self.stride + self.n_words)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        NW, W, V, none = self.n_words, WORD_SLOTS, self.layout.cfg.vocab_size, self.tables.none_rank
        for k in range(W):
            yield column(labels_column(self.band(self.symbols, k)), (f"round {k}, word {w + 1}" for w in range(NW)))
        for blk, what in ((self.symbols, "symbol"), (self.text, "text"), (self.work["bpe_pair_keys"], "pair"),
                          (self.work["bpe_key_rows"], "row"), (self.work["bpe_ranks"], "rank"),
                          (self.work["bpe_merges"], "merge?"), (self.work["bpe_out_slots"], "goes to"),
                          (self.work["bpe_emits"], "brings")):
            yield header(blk, list(range(1, W + 1)) if blk is self.symbols else [f"{what} {j}" for j in
                                                                                  range(1, W + 1)])
        yield header(self.counts.part(n_cols=2), ["symbols", "best rank"])
        sym, keys, key_rows, ranks, merges, slots, emits = (self.symbols, *self.work.values())
        j = self.symbols.cell(-1, 0, abs_row=True)  # the slot number, in the header
        for k in range(W):
            at = {n: self.band(b, k).cell(0, 0) for n, b in (("s", sym), ("key", keys), ("row", key_rows),
                                                             ("r", ranks), ("m", merges))}
            # one number per word row, read across the row: anchored columns
            count = self.band(self.counts, k).cell(0, 0, abs_col=True)
            best = self.band(self.best, k).cell(0, 0, abs_col=True)
            if k == 0:
                words = self.words
                first = f"{quote_sheet(words.sheet.name)}!{words.starts.cell(0, 0, abs_col=True)}"
                yield Formula(self.band(self.counts, 0), f"MIN({words.lengths.at(0, 0)},{W})", Style.INTEGER)
                yield Formula(self.band(sym, 0), f"IF({j}>{count},-1,INDEX(char_symbols,{first}+{j}-1))",
                              Style.INTEGER)
            else:
                before = {b.name: self.band(b, k - 1) for b in (self.counts, merges, slots, emits)}
                yield Formula(self.band(self.counts, k), f"{before['bpe_counts'].cell(0, 0)}-"
                                                         f"SUM({before['bpe_merges'].rows_ref(0)})", Style.INTEGER)
                # INDEX(row, 1, n): Gnumeric reads INDEX(row, n) as row n (#REF!), not column n
                yield Formula(self.band(sym, k), f"IF({j}>{count},-1,INDEX({before['bpe_emits'].rows_ref(0)},1,"
                                                 f"MATCH({j},{before['bpe_out_slots'].rows_ref(0)},0)))", Style.INTEGER)
            right = self.band(sym, k).cell(0, 1)
            yield Formula(self.band(self.text, k), f"IF({at['s']}<0,\"\",INDEX(vocab_text,{at['s']}+1))",
                          Style.DEFAULT, shows=Shown(f"bpe_text_{k}", self._texts(k)))
            yield Formula(self.band(keys, k), f"IF({j}<{count},{at['s']}*{V}+{right},-1)", Style.INTEGER)
            yield Formula(self.band(key_rows, k), f"MATCH({at['key']},merge_keys,1)", Style.INTEGER)
            yield Formula(self.band(ranks, k), f"IF(INDEX(merge_keys,{at['row']})={at['key']},"
                                              f"INDEX(merge_ranks,{at['row']}),{none})", Style.INTEGER)
            yield Formula(self.band(self.best, k), f"MIN({self.band(ranks, k).rows_ref(0)})", Style.INTEGER)
            yield Formula(self.band(merges, k, 0, 1), f"IF(AND({at['r']}={best},{best}<{none}),1,0)", Style.INTEGER)
            for jj in range(1, W):  # one column at a time: each reads the one before
                yield Formula(self.band(merges, k, jj, 1), f"IF(AND({self.band(ranks, k).cell(0, jj)}={best},"
                              f"{best}<{none},{self.band(merges, k).cell(0, jj - 1)}=0),1,0)", Style.INTEGER)
            m0 = self.band(merges, k).cell(0, 0, abs_col=True)
            yield Formula(self.band(slots, k), f"{j}-SUM({m0}:{at['m']})+{at['m']}", Style.INTEGER)
            yield Formula(self.band(emits, k), f"IF({at['m']}=1,INDEX(merge_ids,{at['row']}),{at['s']})",
                          Style.INTEGER)

    def _texts(self, k: int):
        def shown(v: Values, vocab) -> list:
            ids = v[self.symbols.name][self.band_rows(k)]
            return ["" if i < 0 else vocab(int(i)) for i in ids.ravel()]
        return shown

    def compute(self, v: Values) -> None:
        NW, W, V, none = self.n_words, WORD_SLOTS, self.layout.cfg.vocab_size, self.tables.none_rank
        pairs = self.tables.pairs(v, V)
        keys = v[self.tables.keys.name][:, 0]
        shape = (self.symbols.n_rows, W)
        out = {n: np.full(shape, np.nan) for n in (self.symbols.name, *self.work)}  # NaN: the empty rows
        counts, best = np.full((shape[0], 1), np.nan), np.full((shape[0], 1), np.nan)
        symbols0 = v[self.words.chars.blocks["char_symbols"].name][:, 0].astype(np.int64)
        firsts, lengths = v[self.words.starts.name][:, 0].astype(int), v[self.words.lengths.name][:, 0].astype(int)
        for w in range(NW):
            word = [int(s) for s in symbols0[firsts[w] - 1:firsts[w] - 1 + min(lengths[w], W)]] if firsts[w] else []
            for k in range(W):
                r = k * self.stride + w
                n = len(word)
                row_syms = word + [-1] * (W - n)
                key = [row_syms[j] * V + row_syms[j + 1] if j + 1 < n else -1 for j in range(W)]
                ranks = [pairs.get((row_syms[j], row_syms[j + 1]), (none, -1))[0] if j + 1 < n else none
                         for j in range(W)]
                b = min(ranks)
                merges, nxt, j = [0] * W, [], 0
                while j < n:  # OpenAI's bpe(): merge the best pair left to right, never overlapping
                    if j + 1 < n and b < none and ranks[j] == b:
                        merges[j] = 1
                        nxt.append(pairs[(row_syms[j], row_syms[j + 1])][1])
                        j += 2
                    else:
                        nxt.append(row_syms[j])
                        j += 1
                slots = np.arange(1, W + 1) - np.cumsum(merges) + np.array(merges)
                emits = [pairs[(row_syms[j], row_syms[j + 1])][1] if merges[j] else row_syms[j] for j in range(W)]
                out[self.symbols.name][r] = row_syms
                out["bpe_pair_keys"][r] = key
                out["bpe_key_rows"][r] = np.searchsorted(keys, key, side="right")
                out["bpe_ranks"][r] = ranks
                out["bpe_merges"][r] = merges
                out["bpe_out_slots"][r] = slots
                out["bpe_emits"][r] = emits
                counts[r], best[r] = n, b
                word = nxt
        v.update(out)
        v[self.counts.name], v[self.best.name] = counts, best


class PromptIds(Component):
    """The words' tokens in order, then padding: the ids the `tokens` sheet takes."""

    stage, kind, short_title = "input", "tok_ids", "Tokenizer: the token ids"
    lesson = """
<p>The words' tokens, in order: position <i>t</i> belongs to the last word whose tokens
start at or before <i>t</i>, and takes that word's symbol after the last round of merges.
Positions after the prompt's last token are padding; causal attention keeps them from
touching the real ones, and the prediction reads the last real position.</p>
<p>These ids go to the <code>tokens</code> sheet, where a learner can still type an id of
their own over any of them.</p>
"""

    def __init__(self, layout: Layout, words: PromptWords, bpe: BytePairMerges, guide: Sheet):
        super().__init__(layout)
        T, NW = layout.T, words.n_rows
        self.bpe, self.words = bpe, words
        self.pad_id = layout.cfg.vocab_size - 1
        self.add_sheet("tok_ids", f"Tokenizer 4: token ids of the prompt, word by word, then padding "
                                  f"[{T} positions]")
        self.word_of = self.add_block("prompt_words", T, 1, note="Which word this position's token comes from "
                                                                 "(0: padding).")
        self.piece = self.add_block("prompt_pieces", T, 1, col=3, note="Which of the word's tokens it is.")
        self.ids = self.add_block("prompt_ids", T, 1, col=4, note="The token id: the word's symbol after the last "
                                                                  f"round of merges (padding: {self.pad_id}).")
        self.word_tokens = self.add_block("word_tokens", NW, 1, col=7, note="Tokens of this word.")
        self.offsets = self.add_block("word_offsets", NW, 1, col=8, note="Tokens before this word.")
        self.needed = self.add_block("prompt_token_count", 1, 1, row=3, col=11, note="Tokens the prompt needs.")
        self.n_tokens = self.add_block("n_tokens", 1, 1, row=4, col=11, note=f"Positions it fills (at most {T}): "
                                       "the prediction reads the last of them.")
        self.status = self.add_block("prompt_status", 1, 1, sheet=guide, row=STATUS_ROW, col=2, step=False)
        self.read(bpe.symbols, bpe.counts)

    def cells(self, inputs: BuildInputs) -> Iterable[Cells]:
        T, NW, W = self.layout.T, self.words.n_rows, WORD_SLOTS
        yield column(labels_column(self.word_of), range(T))
        yield header(self.word_of, ["word", "piece", "token id"])
        yield column(self.word_tokens.part(col=6), range(1, NW + 1))
        yield header(self.word_tokens.part(col=6, n_cols=3), ["word", "tokens", "tokens before"])
        t, word, piece = f"$A{FIRST_ROW}", self.word_of.cell(0, 0), self.piece.cell(0, 0)
        last = self.bpe.band(self.bpe.symbols, W - 1)
        last_counts = self.bpe.band(self.bpe.counts, W - 1)
        yield Formula(self.word_of, f"IF({t}>=n_tokens,0,MATCH({t},word_offsets,1))", Style.INTEGER)
        yield Formula(self.piece, f"IF({word}=0,0,{t}-INDEX(word_offsets,{word})+1)", Style.INTEGER)
        yield Formula(self.ids, f"IF({word}=0,{self.pad_id},INDEX({last.ref()},MAX(1,{word}),MAX(1,{piece})))",
                      Style.INTEGER)
        yield Formula(self.word_tokens, last_counts.at(0, 0), Style.INTEGER)
        yield Formula(self.offsets.part(n_rows=1), "0", Style.INTEGER)
        yield Formula(self.offsets.part(row0=1), f"{self.offsets.cell(0, 0)}+{self.word_tokens.cell(0, 0)}",
                      Style.INTEGER)
        yield Formula(self.needed, "SUM(word_tokens)", Style.INTEGER)
        yield Formula(self.n_tokens, f"MIN(prompt_token_count,{T})", Style.INTEGER)
        yield Constants(self.needed.part(col=10, n_rows=2), [["tokens needed"], ["n_tokens"]], Style.HEADER)
        yield Formula(self.status, self._status_formula(), Style.DEFAULT,
                      shows=Shown("prompt_status", lambda v, vocab: [v["_status"]]))

    def _status_formula(self) -> str:
        T, W, C = self.layout.T, WORD_SLOTS, chars_capacity(self.layout.T)
        rebuild = "sheetgpt build \"\"your prompt\"\" --positions N"
        bad = f"MATCH({UNSUPPORTED},char_classes,0)"
        longest = "MAX(word_lengths)"
        long_word = f"MATCH({longest},word_lengths,0)"
        return (
            f"IF(prompt_length=0,\"Type a prompt into the yellow cell above.\","
            f"IF(prompt_length>{C},\"The prompt has \"&prompt_length&\" characters; this book reads {C}. "
            f"Rebuild it: {rebuild}.\","
            f"IF(ISNUMBER({bad}),\"Character \"&{bad}&\" (\"&MID(prompt,{bad},1)&\") is not ASCII: the sheet reads "
            f"letters, digits, punctuation, spaces, tabs and line breaks. sheetgpt build tokenizes any text.\","
            f"IF(n_words>{T},\"The prompt has more than {T} tokens; this book holds {T}. Rebuild it: {rebuild}.\","
            f"IF({longest}>{W},\"Word \"&{long_word}&\" has \"&{longest}&\" characters; the merge grid holds {W}. "
            f"Put a space in it.\","
            f"IF(prompt_token_count>{T},\"The prompt is \"&prompt_token_count&\" tokens; this book holds {T}. "
            f"Rebuild it: {rebuild}.\","
            f"\"OK: \"&prompt_token_count&\" tokens, \"&({T}-prompt_token_count)&\" positions of padding.\"))))))")

    def compute(self, v: Values) -> None:
        T, NW, W = self.layout.T, self.words.n_rows, WORD_SLOTS
        last = v[self.bpe.symbols.name][self.bpe.band_rows(W - 1)]
        counts = v[self.bpe.counts.name][self.bpe.band_rows(W - 1), 0].astype(int)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        needed = int(counts.sum())
        n = min(needed, T)
        word_of, piece, ids = np.zeros(T), np.zeros(T), np.full(T, float(self.pad_id))
        for t in range(n):
            w = int(np.searchsorted(offsets, t, side="right"))  # 1-based: the last word starting at or before t
            word_of[t], piece[t] = w, t - offsets[w - 1] + 1
            ids[t] = last[w - 1, int(piece[t]) - 1]
        v[self.word_of.name], v[self.piece.name], v[self.ids.name] = word_of[:, None], piece[:, None], ids[:, None]
        v[self.word_tokens.name], v[self.offsets.name] = counts[:, None].astype(float), offsets[:, None].astype(float)
        v[self.needed.name], v[self.n_tokens.name] = np.array([[needed]], float), np.array([[n]], float)
        text = self.words.chars.text(v)
        words = v[PromptChars.WORDS]
        v["_status"] = status_message(text, T, len(words), [len(w) for w in words], needed)
