"""The lesson's pictures, drawn with matplotlib's Agg canvas (no pyplot: no global state, no
display needed). PNGs carry no software/version metadata, so the same book gives the same files.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, PercentFormatter

DPI = 100
BLUE, ORANGE, GREY = "#4472C4", "#ED7D31", "#A5A5A5"


def tex_safe(label: str) -> str:
    """matplotlib reads text between two '$' as math: a token like '$' must stay literal."""
    return label.replace("$", r"\$")


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    with warnings.catch_warnings():  # a token's exotic character may lack a glyph: draw a box, quietly
        warnings.simplefilter("ignore", UserWarning)
        fig.savefig(path, dpi=DPI, metadata={"Software": None})


def attention_heatmap(probs: np.ndarray, labels: list[str], title: str, path: Path) -> None:
    """One head's attention weights [T queries, T keys]; future (masked) cells greyed out."""
    T = probs.shape[0]
    side = float(np.clip(2.2 + 0.32 * T, 4.0, 11.0))
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    shown = np.where(np.triu(np.ones((T, T), dtype=bool), k=1), np.nan, probs)
    cmap = colormaps["Blues"].with_extremes(bad="#eeeeee")  # bad = NaN = masked
    im = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0)
    ticks = [tex_safe(f"{t}: {lab}") for t, lab in enumerate(labels)]
    ax.set_xticks(range(T), ticks, rotation=60, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_yticks(range(T), ticks, fontsize=9)
    ax.set_xlabel("key: the token looked at")
    ax.set_ylabel("query: the token looking")
    ax.set_title(title)
    if T <= 12:  # room to print the weights themselves
        for q in range(T):
            for k in range(q + 1):
                v = probs[q, k]
                ax.text(k, q, f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if v > 0.6 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="attention weight")
    _save(fig, path)


def prediction_bars(labels: list[str], probs: list[float], title: str, path: Path) -> None:
    """Horizontal bars of the top next-token probabilities, the likeliest on top."""
    k = len(labels)
    fig = Figure(figsize=(7.0, 1.2 + 0.42 * k), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(k)[::-1]
    ax.barh(y, probs, color=BLUE)
    ax.set_yticks(y, [tex_safe(lab) for lab in labels], fontsize=10)
    for yi, p in zip(y, probs):
        ax.text(p, yi, f" {p * 100:.3g}%", va="center", fontsize=9)
    ax.set_xlim(0, max(probs) * 1.25 if probs and max(probs) > 0 else 1)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel("probability of being the next token")
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path)


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of x projected on their two main directions, and the share of variance each
    direction explains. Signs are fixed (largest loading positive) so reruns agree."""
    xc = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    vt = vt[:2].copy()
    for row in vt:
        if row[np.abs(row).argmax()] < 0:
            row *= -1
    coords = np.zeros((len(x), 2))
    coords[:, :vt.shape[0]] = xc @ vt.T
    var = s**2
    share = np.zeros(2)
    if var.sum() > 0:
        share[:len(var[:2])] = var[:2] / var.sum()
    return coords, share


def embedding_pca(before: np.ndarray, after: np.ndarray, labels: list[str], path: Path) -> None:
    """Token embeddings before and after the position embedding is added, in one shared
    2-D PCA basis (fitted on both sets), side by side with the same axes."""
    T = len(labels)
    coords, share = pca_2d(np.vstack([before, after]))
    b, a = coords[:T], coords[T:]
    fig = Figure(figsize=(11.0, 5.0), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    panels = [(axes[0], b, "before: token embedding (row of wte)", BLUE, False),
              (axes[1], a, "after: + position embedding (row of wpe)", ORANGE, True)]
    for ax, pts, title, color, with_pos in panels:
        if with_pos:  # where each token came from
            for (x0, y0), (x1, y1) in zip(b, a):
                ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", color=GREY, lw=0.8))
            ax.scatter(b[:, 0], b[:, 1], s=30, facecolors="none", edgecolors=GREY, zorder=2)
        ax.scatter(pts[:, 0], pts[:, 1], s=40, color=color, zorder=3)
        for t, (x, y) in enumerate(pts):
            ax.annotate(tex_safe(f"{labels[t]} @{t}" if with_pos else labels[t]), (x, y),
                        xytext=(4, 4), textcoords="offset points", fontsize=9)
        ax.set_title(title)
        ax.set_xlabel(f"PC 1 ({share[0]:.0%} of the variance)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"PC 2 ({share[1]:.0%} of the variance)")
    fig.suptitle("The prompt's tokens as points: a 2-D PCA map of their vectors")
    _save(fig, path)


def merge_rounds(words: list[list[list[str]]], path: Path) -> None:
    """Each word's symbols round by round, as boxes as wide as their text: words[w][k] is
    word w's symbols after k rounds of merges (only the rounds that changed something)."""
    rows = sum(len(rounds) + 1 for rounds in words)
    width = max((sum(len(s) for s in rounds[0]) for rounds in words), default=1)
    fig = Figure(figsize=(float(np.clip(2.0 + 0.32 * width, 6.0, 12.0)), 0.9 + 0.34 * rows), layout="constrained")
    ax = fig.add_subplot()
    y = 0
    shades = [BLUE, ORANGE]
    for w, rounds in enumerate(words):
        ax.text(-0.3, y, f"word {w + 1}", ha="right", va="center", fontsize=9, fontweight="bold")
        y += 1
        for k, symbols in enumerate(rounds):
            x = 0
            ax.text(-0.3, y, f"round {k}", ha="right", va="center", fontsize=8, color=GREY)
            for n, s in enumerate(symbols):
                ax.add_patch(Rectangle((x, y - 0.4), len(s), 0.8, facecolor=shades[n % 2], alpha=0.35,
                                       edgecolor="white"))
                ax.text(x + len(s) / 2, y, tex_safe(s.replace(" ", "\u2423").replace("\n", "\u21b5")
                                                    .replace("\t", "\u21e5")), ha="center", va="center",
                        fontsize=9, family="monospace")
                x += len(s)
            y += 1
    ax.set_xlim(-3.2, width + 0.2)
    ax.set_ylim(y - 0.5, -0.5)
    ax.axis("off")
    ax.set_title("Byte-pair merges: each word's symbols, round by round\n(the last row of a word: its tokens)")
    _save(fig, path)


def generation_steps(steps: list[tuple[str, list[tuple[str, float]]]], prompt: str, path: Path) -> None:
    """One panel per generated position: the token chosen (the favourite, in orange) among
    the top candidates after the position before it."""
    n = len(steps)
    fig = Figure(figsize=(3.2 * n + 0.6, 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n, sharex=True))
    text = prompt
    for ax, (chosen, candidates) in zip(axes, steps):
        labels, probs = [c for c, _ in candidates], [p for _, p in candidates]
        y = np.arange(len(labels))[::-1]
        ax.barh(y, probs, color=[ORANGE if lab == chosen else BLUE for lab in labels])
        ax.set_yticks(y, [tex_safe(lab) for lab in labels], fontsize=9)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.set_title(tex_safe(f"\u2026{text[-18:]}\n\u2192 {chosen}"), fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
        text += chosen
    fig.suptitle("Writing on: at each new position the favourite (orange) is appended", fontsize=11)
    _save(fig, path)


def lens_layers(tops: list[str], probs: list[float], ranks: list[int], final: str, path: Path) -> None:
    """The logit lens: the top token and its probability after each layer, and the rank of
    the final prediction there."""
    L = len(tops)
    fig = Figure(figsize=(8.0, 1.4 + 0.45 * L), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(L)[::-1]
    ax.barh(y, probs, color=[ORANGE if t == final else BLUE for t in tops])
    ax.set_yticks(y, [f"after layer {i}" for i in range(L)], fontsize=9)
    for yi, t, p, r in zip(y, tops, probs, ranks):
        ax.text(p, yi, tex_safe(f" {t}  {p * 100:.3g}%   (final prediction ranks {r})"), va="center", fontsize=9)
    right = max(probs) * 2.2 if max(probs) > 0 else 1  # room for the labels
    ax.set_xlim(0, right)
    ax.set_xticks([t for t in np.linspace(0, 1, 5) if t <= min(1.0, right)])
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("probability of the layer's top token")
    ax.set_title(tex_safe(f"The logit lens: the model's guess after each layer (final: {final})"))
    ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path)


def before_after(labels: list[str], before: list[float], after: list[float], what: str, path: Path) -> None:
    """The top next tokens' probabilities before and after an intervention."""
    k = len(labels)
    fig = Figure(figsize=(7.5, 1.4 + 0.5 * k), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(k)[::-1]
    ax.barh(y + 0.2, before, height=0.4, color=GREY, label="as trained")
    ax.barh(y - 0.2, after, height=0.4, color=ORANGE, label=tex_safe(what))
    ax.set_yticks(y, [tex_safe(lab) for lab in labels], fontsize=10)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("probability of being the next token")
    ax.set_title("One edit on sheet controls, before and after")
    ax.legend(loc="lower right", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path)


def attribution_grid(heads: np.ndarray, biases: np.ndarray, mlps: np.ndarray, embed: float, target: str,
                     path: Path) -> None:
    """Direct logit attribution: each head's contribution [layers, heads], then each layer's
    attention bias and MLP, on one diverging scale (red: up, blue: down), numbers written in;
    the embedding's in the title."""
    L, H = heads.shape
    grid = np.full((L, H + 3), np.nan)
    grid[:, :H], grid[:, H + 1], grid[:, H + 2] = heads, biases, mlps
    span = float(np.nanmax(np.abs(grid))) or 1.0
    fig = Figure(figsize=(min(16.0, 2.5 + 0.75 * (H + 3)), 1.8 + 0.45 * L), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(grid, cmap=colormaps["RdBu_r"].with_extremes(bad="#ffffff"), vmin=-span, vmax=span, aspect="auto")
    for (i, j), x in np.ndenumerate(grid):
        if np.isfinite(x):
            ax.text(j, i, f"{x:.2g}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(H + 3), [f"head {h}" for h in range(H)] + ["", "attn bias", "MLP"], fontsize=8, rotation=90)
    ax.set_yticks(range(L), [f"layer {i}" for i in range(L)], fontsize=8)
    ax.set_title(tex_safe(f"Who pushed \u201c{target}\u201d up (red) or down (blue); the embedding: {embed:.2g}"))
    fig.colorbar(im, ax=ax, shrink=0.8, label="contribution to the logit")
    _save(fig, path)


def seeded_texts(prompt: str, texts: list[tuple[int, str]], path: Path) -> None:
    """The same prompt written on under several seeds: one line each, the written part in orange."""
    fig = Figure(figsize=(9.0, 1.0 + 0.5 * len(texts)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    for k, (seed, text) in enumerate(texts):
        y = 1 - (k + 0.5) / len(texts)
        ax.text(0.0, y, f"seed {seed}", fontsize=10, color=GREY, va="center", transform=ax.transAxes)
        shown = ax.text(0.12, y, tex_safe(prompt), fontsize=11, va="center", transform=ax.transAxes)
        ax.annotate(tex_safe(text), xycoords=shown, xy=(1, 0.5), va="center", fontsize=11, color=ORANGE,
                    fontweight="bold")
    ax.set_title("One prompt, five seeds: each seed draws its own text")
    _save(fig, path)
