"""Export a workbook as a static HTML lesson: an index and one page per step sheet, in
forward-pass order, each with a plain-words explanation, the step's formula as the workbook
stores it, shapes, a preview of the evaluated values, and pictures.

Everything shown is read from the workbook after our engine evaluated it: the lesson
teaches what the file computes, not what the Python reference computes.
Templates (Jinja2) live in the repository's `templates/`, installed as `sheetgpt/templates`.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from markupsafe import Markup

from . import __version__, figures
from .errors import UserError
from .lesson import BARS, IMG_DIR, Figure, Page, PageReader, fmt, page_filename, stacked_heads, visible
from .probes import PROBES
from .progress import Progress
from .readback import BookContents, load_book
from .steps.prediction import top_k
from .steps.unembed import Logits

GENERATOR = "sheetgpt lesson"  # in every page's <meta name="generator">: marks a directory as ours


def templates_dir() -> Path:
    """Installed: the wheel ships templates/ as sheetgpt/templates (pyproject package-dir).
    Source checkout or editable install: the repository's top-level templates/."""
    here = Path(__file__).resolve().parent
    for d in (here / "templates", here.parent / "templates"):
        if (d / "step.html").is_file():
            return d
    raise UserError("this sheetgpt installation has no lesson templates (templates/step.html)")


def export_lesson(book: str | Path, out_dir: str | Path, progress: bool | None = None) -> Path:
    """Evaluate `book` with sheetgpt's engine and write the lesson into `out_dir`; return
    the path of its index.html. Files of an earlier lesson there are overwritten."""
    out = check_out_dir(Path(out_dir))
    book = Path(book)
    contents = load_book(book, progress=progress)
    pages = PageReader(contents).pages()
    facts = _facts(contents, book, out)
    env = _environment()
    for page in pages:  # the component's words, with this book's sizes
        c = page.component
        page.explain = Markup(env.from_string(c.lesson).render(m=facts, layer=c.layer, c=c)) if c.lesson else ""
    drawn = sum(page.kind in figure_makers() for page in pages)
    with Progress(total=len(pages) + drawn + 1, desc="writing lesson",
                  enabled=progress, unit="file") as bar:
        make_dir(out / IMG_DIR)
        _draw_figures(contents, pages, facts, out, bar)
        for page in pages:
            html = env.get_template("step.html").render(page=page, m=facts)
            _write(out / page.filename, html)
            bar.update(1)
        index = out / "index.html"
        _write(index, env.get_template("index.html").render(pages=pages, groups=_groups(pages), m=facts))
        shutil.copyfile(templates_dir() / "style.css", out / "style.css")
        bar.update(1)
    return index


# -- what the index and every page say about the whole run ------------------------------
@dataclass
class Prediction:
    rank: int
    id: int
    text: str  # visible() token text
    prob: float
    logit: float


def _facts(book: BookContents, book_path: Path, out: Path) -> dict:
    """Model size, prompt, prediction: the numbers the explanations and the index quote."""
    cfg, L, meta = book.layout.cfg, book.layout, book.meta
    top_ids, top_probs, top_logits = (book[n][:, 0] for n in ("top_ids", "top_probs", "top_logits"))
    top = [Prediction(k + 1, int(i), visible(book.token_text(int(i))), float(p), float(lg))
           for k, (i, p, lg) in enumerate(zip(top_ids, top_probs, top_logits))]
    tokens = [(t, i, visible(book.token_text(i))) for t, i in enumerate(book.ids)]
    filled = book.layout.find(Logits).positions.last_row(book) + 1  # the prompt's and the written tokens
    try:
        book_href = book_path.resolve().relative_to(out.resolve()).as_posix()
    except ValueError:  # the book lives elsewhere: links stay inside the lesson
        book_href = None
    return {
        "model": book.model_name, "about": book.model_about, "random": bool(meta.get("random_weights")),
        "prompt": str(meta.get("prompt", "")), "tokens": tokens, "filled": filled, "top": top,
        "book_name": book_path.name, "book_href": book_href, "version": __version__, "generator": GENERATOR,
        "T": L.T, "D": cfg.n_embd, "H": cfg.n_head, "dh": cfg.head_dim, "V": cfg.vocab_size,
        "n_layer": cfg.n_layer, "n_ctx": cfg.n_ctx, "eps": f"{cfg.layer_norm_epsilon:g}",
        "n_params": sum(int(np.prod(a.shape)) for a in book.weights.params.values()),
        "last_token": tokens[filled - 1][2], "pca_src": f"{IMG_DIR}/embed-pca.png",
        "top_src": f"{IMG_DIR}/prediction-top.png",
    }


def _groups(pages: list[Page]) -> list[tuple[str, str, list[Page]]]:
    """Consecutive pages with the same index heading: (heading, stage, pages)."""
    groups: list[tuple[str, str, list[Page]]] = []
    for p in pages:
        if not groups or groups[-1][0] != p.group:
            groups.append((p.group, p.stage, []))
        groups[-1][2].append(p)
    return groups


# -- pictures -----------------------------------------------------------------------------
def _draw_figures(book: BookContents, pages: list[Page], facts: dict, out: Path, bar: Progress) -> None:
    """The pictures of the steps that have some (by the kind of page their component makes)."""
    by_sheet = {p.sheet: p for p in pages}
    for page in pages:
        draw = figure_makers().get(page.kind)
        if draw:
            for sheet, figure in draw(book, page.component, facts, out):
                by_sheet[sheet].figures.append(figure)
            bar.update(1)


def _embedding_map(book: BookContents, step, facts: dict, out: Path) -> list[tuple[str, Figure]]:
    """The prompt's vectors before and after adding positions, on both pages (the filled
    positions only: padding repeats one token)."""
    n = facts["filled"]
    labels = [text for _, _, text in facts["tokens"][:n]]
    figures.embedding_pca(book[step.embed_tok.name][:n], book[step.out.name][:n], labels, out / facts["pca_src"])
    pca = Figure(facts["pca_src"], "PCA map of the prompt's token vectors before and after adding positions",
                 "Each dot is one prompt token, its vector squeezed from "
                 f"{book.layout.cfg.n_embd} numbers to 2 (PCA, fitted on both panels together). Left: the row of "
                 "wte alone; right: after adding the position's row of wpe (grey arrows show the move).")
    return [(step.embed_tok.sheet, pca), (step.sheet.name, pca)]


def _attention_maps(book: BookContents, step, facts: dict, out: Path) -> list[tuple[str, Figure]]:
    """One heatmap per head: who looks at whom, among the filled positions (padding rows
    attending to each other teach nothing)."""
    n = facts["filled"]
    labels = [text for _, _, text in facts["tokens"][:n]]
    found = []
    for h, probs in enumerate(stacked_heads(book[step.out.name], step.out.heads)):
        src = f"{IMG_DIR}/h{step.layer}-probs-head{h}.png"
        figures.attention_heatmap(probs[:n, :n], labels, f"Layer {step.layer}, head {h}: who looks at whom", out / src)
        left_out = f" The {book.layout.T - n} positions of padding are left out." if n < book.layout.T else ""
        found.append((step.sheet.name, Figure(src, f"Attention weights of layer {step.layer}, head {h}",
                                              f"Head {h}. Row: the token looking; column: the token it looks at."
                                              + left_out)))
    return found


def _prediction_bars(book: BookContents, step, facts: dict, out: Path) -> list[tuple[str, Figure]]:
    probs = book[step.probs.name][:, 0]
    top = top_k(probs, BARS)
    title = f"What comes after \u201c{facts['last_token']}\u201d? Top {len(top)} of {len(probs)} tokens"
    if facts["random"]:
        title += "\n(random weights: the mechanics are real, the guesses are not)"
    figures.prediction_bars([visible(book.token_text(int(i))) for i in top], [float(probs[i]) for i in top],
                            title, out / facts["top_src"])
    return [(step.sheet.name, Figure(facts["top_src"], "Bar chart of the most likely next tokens",
                                     f"The {len(top)} largest values of the probability column on sheet "
                                     f"{step.probs.sheet}."))]


def _merge_rounds(book: BookContents, step, facts: dict, out: Path) -> list[tuple[str, Figure]]:
    """The prompt's words merging, round by round (the typed prompt's tokenizer)."""
    symbols, n_words = book[step.symbols.name], int(book["n_words"][0, 0])
    words = []
    for w in range(min(n_words, step.n_words, MAX_WORDS_DRAWN)):
        rounds = [[book.token_text(int(i)) for i in symbols[step.band_rows(k)][w] if i >= 0]
                  for k in range(step.symbols.n_cols)]
        words.append([r for k, r in enumerate(rounds) if k == 0 or r != rounds[k - 1]])
    src = f"{IMG_DIR}/tok-bpe-rounds.png"
    figures.merge_rounds(words, out / src)
    return [(step.sheet.name, Figure(src, "The prompt's words merging into tokens, round by round",
                                     "Each word starts as its bytes; every round merges the pair with the lowest "
                                     "rank, wherever it occurs. Rows that would repeat are left out."
                                     + (f" The first {MAX_WORDS_DRAWN} words." if n_words > MAX_WORDS_DRAWN
                                        else "")))]


MAX_WORDS_DRAWN = 8
# the pictures a kind of page gets (Component.kind); the probes' own come with them
FIGURES = {"embed": _embedding_map, "probs": _attention_maps, "prediction": _prediction_bars,
           "tok_bpe": _merge_rounds}


def figure_makers() -> dict:
    """What draws the pictures of each kind of page: the steps' and the probes'."""
    return FIGURES | {kind: draw for probe in PROBES.values() for kind, draw in probe.figures.items()}


# -- files ----------------------------------------------------------------------------------
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(templates_dir()), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["fmt"] = fmt
    env.filters["pct"] = percent
    env.filters["repr"] = lambda v: repr(float(v))  # full precision, for tests and the curious
    env.filters["page_href"] = page_filename
    return env


def check_out_dir(out: Path) -> Path:
    """Refuse a file, or a directory whose index.html some other tool wrote (we would
    overwrite it). Creates nothing: a failed export leaves no empty directory behind."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; give a directory for the lesson")
    index = out / "index.html"
    if index.exists():
        head = index.read_text(encoding="utf-8", errors="replace")[:2000]
        if f'content="{GENERATOR}' not in head:
            raise UserError(f"{index} exists and is not a sheetgpt lesson; choose another directory")
    return out


def make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the directory {path} ({e.strerror})") from None


def percent(p: float) -> str:
    """3 significant digits: a random model's 0.00281% must not read as 0.00%."""
    return f"{p * 100:.3g}%"


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")
