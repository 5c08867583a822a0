"""Train sheetgpt's bundled Shakespeare model: a small GPT-2 on the tiny Shakespeare corpus.

Run from the repository root (one CPU thread; the corpus is not part of the repository):

    OMP_NUM_THREADS=1 nice -n 19 python3 training/train_shakespeare.py

Arguments: [CORPUS] (default ../shared/corpus/tinyshakespeare.txt relative to the repository
root), --out DIR (default sheetgpt/data/shakespeare), --steps 1400, --lr 5e-3 (peak),
--dropout 0.1, --seed 1337, --eval-every 200. The defaults made the committed checkpoint.

What it does
  * Tokenizes the corpus with sheetgpt's own GPT-2 tokenizer (50,257 ids): 338,025 tokens.
    The first 90% of the TOKENS (304,222) train; the last 10% (33,803) are held out and are
    never used for training or for any choice the script makes (it only prints their loss).
  * Trains a standard Hugging Face GPT2LMHeadModel: width 64, 4 layers, 4 heads, 128
    positions, tanh GELU ("gelu_new"), pre-LayerNorm, eps 1e-5, tied embeddings.
  * Ids that never occur in the TRAINING split (38,992 of 50,257: a superset of the 38,551
    ids that never occur in the whole corpus) share ONE learned "unseen" vector, so they all
    get the same logit and the saved wte compresses well. This is trained exactly and cheaply:
    the model has the 11,265 training ids plus one "unseen" row whose logit gets + log(38,992)
    (the log-sum-exp of its 38,992 identical copies); it is expanded to 50,257 rows at the end.
  * The unseen row gets the Good-Turing probability of a new token: the loss is
    (1 - eps) * cross-entropy + eps * cross-entropy of the "unseen" class, eps = N1/N = 0.0118
    (training ids that occur once / training tokens). 706 held-out tokens (2.1%) never occur in
    training; they cost 15.1 nats each, 0.32 nats/token of the held-out loss.
  * AdamW (betas 0.9/0.95, weight decay 0.1 on matrices and embeddings, none on biases and
    LayerNorms), 100 steps linear warmup then cosine decay to 10% of the peak, gradient
    clipping at 1.0, dropout 0.1, batches of 32 random windows of 128 training tokens, seed
    1337 for the initialisation and the batches (one thread, so a run repeats exactly).
  * Held-out loss = mean cross-entropy (nats/token) over every held-out token but the first,
    in NON-OVERLAPPING windows of 128 tokens (in each window the first target is predicted
    from 1 token, the last from 128); float32, eval mode, the full 50,257-way softmax of the
    saved model. Baselines on the same split and targets: an add-one unigram and a Witten-Bell
    interpolated bigram backing off to that unigram.
  * Saves config.json + model.safetensors (fp32, standard HF keys; lm_head is tied to wte and
    not stored) into --out, dropping the generation_config.json that save_pretrained adds.

Measured for the committed checkpoint (2026-12-02; 2 CPU cores shared with other work, one
thread, nice 19): training 2,034 s wall (34 min), 1,618 s CPU; 3,424,704 parameters saved
(929,280 trained); held-out loss 4.7933 nats/token (4.7797 with a sliding evaluation of
stride 64, computed separately); baselines unigram 6.5102, bigram 5.0414; model.safetensors
13,703,720 bytes, 3,539,663 zlib-compressed. Greedy continuation of "ROMEO:" (newlines as /):
"/I'll be a word.//ROMEO:/I'll not, I am a word.//ROMEO:/I am". See training/README.md.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from sheetgpt.tokenizer import Tokenizer  # noqa: E402

VOCAB = 50257
N_CTX, N_EMBD, N_LAYER, N_HEAD = 128, 64, 4, 4
BATCH = 32
WARMUP = 100
BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.1
CLIP = 1.0


def split_corpus(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """GPT-2 token ids of the corpus: (first 90% of the tokens, last 10%)."""
    ids = np.array(Tokenizer.gpt2().encode(path.read_text(encoding="utf-8")), dtype=np.int64)
    n_train = int(len(ids) * 0.9)
    return ids[:n_train], ids[n_train:]


def baselines(train: np.ndarray, heldout: np.ndarray) -> tuple[float, float]:
    """Held-out loss (nats/token, every held-out token but the first) of an add-one unigram and
    a Witten-Bell interpolated bigram that backs off to that unigram."""
    uni = (np.bincount(train, minlength=VOCAB) + 1.0) / (len(train) + VOCAB)
    prev, nxt = heldout[:-1], heldout[1:]
    pair, count = np.unique(train[:-1] * VOCAB + train[1:], return_counts=True)
    c_prev = np.bincount(train[:-1], minlength=VOCAB).astype(float)  # c(a)
    types = np.bincount(pair // VOCAB, minlength=VOCAB).astype(float)  # distinct followers of a
    pos = np.searchsorted(pair, prev * VOCAB + nxt).clip(max=len(pair) - 1)
    c_ab = np.where(pair[pos] == prev * VOCAB + nxt, count[pos], 0)
    denom = c_prev[prev] + types[prev]
    with np.errstate(invalid="ignore", divide="ignore"):
        p_bi = np.where(denom > 0, (c_ab + types[prev] * uni[nxt]) / denom, uni[nxt])
    return float(-np.log(uni[nxt]).mean()), float(-np.log(p_bi).mean())


def gpt2_config(vocab_size: int, dropout: float, **extra) -> transformers.GPT2Config:
    return transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=N_CTX, n_embd=N_EMBD, n_layer=N_LAYER, n_head=N_HEAD,
        activation_function="gelu_new", layer_norm_epsilon=1e-5, tie_word_embeddings=True,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, **extra)


def windows(ids: np.ndarray, n_ctx: int):
    """Non-overlapping (input, target) windows predicting ids[1:]; the last one may be shorter."""
    for start in range(0, len(ids) - 1, n_ctx):
        end = min(start + n_ctx, len(ids) - 1)
        yield ids[start:end], ids[start + 1:end + 1]


@torch.no_grad()
def heldout_loss(logits_fn, heldout: np.ndarray, n_ctx: int = N_CTX, batch: int = 16) -> float:
    """Mean over held-out targets of -log p(target); logits_fn(x [B, T]) -> nll [B, T]."""
    total, count, full, last = 0.0, 0, [], []
    for x, y in windows(heldout, n_ctx):
        (full if len(x) == n_ctx else last).append((x, y))
    groups = [full[i:i + batch] for i in range(0, len(full), batch)] + [[w] for w in last]
    for group in groups:
        x = torch.from_numpy(np.stack([w[0] for w in group]))
        y = torch.from_numpy(np.stack([w[1] for w in group]))
        total += float(logits_fn(x, y).double().sum())
        count += y.numel()
    return total / count


def full_model_nll(model: transformers.GPT2LMHeadModel):
    def nll(x, y):
        logits = model(x).logits
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    return nll


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", nargs="?", type=Path, default=REPO.parent / "shared" / "corpus" / "tinyshakespeare.txt")
    ap.add_argument("--out", type=Path, default=REPO / "sheetgpt" / "data" / "shakespeare")
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--lr", type=float, default=5e-3, help="peak learning rate")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--eval-every", type=int, default=200, help="print the held-out loss every N steps")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    train, heldout = split_corpus(args.corpus)
    uni_loss, bi_loss = baselines(train, heldout)
    print(f"{len(train):,} training tokens, {len(heldout):,} held out; baselines on the held-out "
          f"tokens: unigram {uni_loss:.4f}, bigram {bi_loss:.4f} nats/token", flush=True)

    # compact vocabulary: the ids seen in training, then one shared "unseen" row
    seen = np.unique(train)
    k = len(seen)  # index of the "unseen" row
    log_n_unseen = math.log(VOCAB - k)
    to_compact = np.full(VOCAB, k, dtype=np.int64)
    to_compact[seen] = np.arange(k)
    counts = np.bincount(train, minlength=VOCAB)
    eps = float((counts == 1).sum() / len(train))  # Good-Turing: probability of a new token
    print(f"{k:,} distinct training ids; {VOCAB - k:,} ids share the 'unseen' vector; "
          f"unseen-token mass eps = {eps:.4f}", flush=True)
    logit_bias = torch.zeros(k + 1)
    logit_bias[k] = log_n_unseen  # the unseen row stands for VOCAB - k identical logits

    model = transformers.GPT2LMHeadModel(gpt2_config(k + 1, args.dropout, bos_token_id=None, eos_token_id=None))
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=BETAS)

    def lr_at(step: int) -> float:
        if step < WARMUP:
            return args.lr * (step + 1) / WARMUP
        t = (step - WARMUP) / max(1, args.steps - WARMUP)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    def compact_nll(x, y):  # exact full-vocabulary nll, computed over the compact vocabulary
        xc, yc = torch.from_numpy(to_compact[x.numpy()]), torch.from_numpy(to_compact[y.numpy()])
        logits = model(xc).logits + logit_bias
        nll = F.cross_entropy(logits.flatten(0, 1), yc.flatten(), reduction="none").view_as(yc)
        return nll + log_n_unseen * (yc == k)  # a particular unseen id is one of its VOCAB - k copies

    train_c = torch.from_numpy(to_compact[train])
    gen = torch.Generator().manual_seed(args.seed)
    print(f"model: {n_params:,} parameters in training ({N_LAYER} layers, width {N_EMBD}, "
          f"{k + 1:,} embedding rows); {args.steps} steps of {BATCH} x {N_CTX} tokens", flush=True)
    t0, c0, smooth = time.time(), time.process_time(), None
    for step in range(args.steps):
        model.train()
        starts = torch.randint(0, len(train_c) - N_CTX, (BATCH,), generator=gen)
        xy = torch.stack([train_c[s:s + N_CTX + 1] for s in starts.tolist()])
        logp = F.log_softmax(model(xy[:, :-1]).logits + logit_bias, dim=-1)
        ce = -logp.gather(-1, xy[:, 1:, None]).mean()
        loss = (1 - eps) * ce - eps * logp[..., k].mean()
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        ce_value = float(ce.detach())
        smooth = ce_value if smooth is None else 0.95 * smooth + 0.05 * ce_value
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            model.eval()
            print(f"step {step + 1:5d}  lr {lr_at(step):.2e}  train ce {smooth:.4f}  "
                  f"held-out {heldout_loss(compact_nll, heldout):.4f}  {time.time() - t0:6.0f} s", flush=True)
    wall, cpu = time.time() - t0, time.process_time() - c0

    # expand to the full vocabulary: every id gets its compact row (unseen ids: the shared row)
    full = transformers.GPT2LMHeadModel(gpt2_config(VOCAB, args.dropout))
    state = model.state_dict()
    state["transformer.wte.weight"] = state["transformer.wte.weight"][torch.from_numpy(to_compact)]
    state["lm_head.weight"] = state["transformer.wte.weight"]
    full.load_state_dict(state)
    full.eval()
    loss = heldout_loss(full_model_nll(full), heldout)

    # save only config.json and model.safetensors (save_pretrained also writes generation_config.json)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        full.save_pretrained(tmp, safe_serialization=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(Path(tmp) / name, args.out / name)
        dropped = sorted(set(os.listdir(tmp)) - {"config.json", "model.safetensors"})
    n_full = sum(p.numel() for p in full.parameters())  # tied lm_head counted once
    raw = (args.out / "model.safetensors").read_bytes()
    print(f"saved {args.out}: config.json, model.safetensors ({len(raw):,} bytes, zlib -6 "
          f"{len(zlib.compress(raw, 6)):,}); not kept: {', '.join(dropped) or 'nothing'}")

    tok = Tokenizer.gpt2()
    for prompt in ("ROMEO:", "First Citizen:"):
        out = full.generate(torch.tensor([tok.encode(prompt)]), max_new_tokens=24, do_sample=False,
                            pad_token_id=VOCAB - 1)
        print(f"greedy {prompt!r} -> {tok.decode(out[0].tolist())!r}")
    print(f"training: {wall:.0f} s wall, {cpu:.0f} s CPU; {n_full:,} parameters in the saved model")
    print(f"held-out loss {loss:.4f} nats/token (non-overlapping {N_CTX}-token windows); "
          f"baselines: unigram {uni_loss:.4f}, bigram {bi_loss:.4f}")


if __name__ == "__main__":
    main()
