"""GPT-2 as a workbook: its components composed in forward order, as picoGPT composes
its functions. To add a step, write its component and add one line here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .layout import Block, Layout
from .steps.attention import (QKV, AttentionProjection, AttentionResidual, AttentionWeights, KeysT, MixValues,
                              Scores, Softmax)
from .steps.base import Component
from .steps.controls import Controls
from .steps.embedding import AddPositions, TokenEmbedding
from .steps.generate import Generation, NextTokenLogits
from .steps.guide import Guide
from .steps.layer_norm import LayerNorm
from .steps.lens import logit_lens
from .steps.metadata import Metadata
from .steps.mlp import Gelu, MlpDown, MlpResidual, MlpUp
from .steps.prediction import Prediction
from .steps.selftest import SelfTest
from .steps.prompt import BytePairMerges, MergeTable, PromptChars, PromptIds, PromptWords
from .steps.tokens import TokenIds, Vocabulary
from .steps.unembed import Logits
from .steps.weights import Weights


@dataclass
class Inputs:
    """What every part of the model reads besides the stream: weights, vocabulary, token ids;
    and the Guide, which holds a typed prompt and shows the prediction."""

    weights: Weights
    vocab: Vocabulary
    tokens: TokenIds
    guide: Guide


def gpt2(layout: Layout) -> list[Component]:
    """Every component of a GPT-2 workbook, in forward order."""
    inputs, parts = embedding(layout)
    x, layer_outputs = parts[-1].out, []
    for i in range(layout.cfg.n_layer):
        parts += transformer_block(layout, i, x, inputs.weights)
        x = parts[-1].out
        layer_outputs.append(x)
    return parts + output(layout, x, inputs, layer_outputs)


def embedding(layout: Layout) -> tuple[Inputs, list[Component]]:
    """The inputs and the controls (with a typed prompt: tokenized in the sheet), then token
    ids to the residual stream: the first components of the book."""
    guide, w, vocab = Guide(layout), Weights(layout), Vocabulary(layout)
    parts: list[Component] = [w, vocab, Controls(layout)]
    prompt_ids = None
    if layout.typed_prompt:
        parts += tokenizer(layout, guide, vocab)
        prompt_ids = parts[-1].ids
    tokens = TokenIds(layout, vocab, prompt_ids)
    embed_tok = TokenEmbedding(layout, tokens.ids, w["wte.weight"])
    embed = AddPositions(layout, embed_tok.out, w["wpe.weight"])
    return Inputs(w, vocab, tokens, guide), parts + [tokens, embed_tok, embed]


def tokenizer(layout: Layout, guide: Guide, vocab: Vocabulary) -> list[Component]:
    """The prompt cell to token ids: GPT-2's tokenizer in formulas."""
    tables = MergeTable(layout, layout.n_merges)
    chars = PromptChars(layout, guide.sheet)
    words = PromptWords(layout, chars)
    bpe = BytePairMerges(layout, words, tables, vocab.text)
    return [tables, chars, words, bpe, PromptIds(layout, words, bpe, guide.sheet)]


def output(layout: Layout, x: Block, inputs: Inputs, layer_outputs: Sequence[Block] = ()) -> list[Component]:
    """The final stream to a prediction; generation and the logit lens (of layer_outputs,
    each layer's) if the book has them; then the program's self-test, the Guide and the
    metadata."""
    w, vocab = inputs.weights, inputs.vocab
    ln_f = LayerNorm(layout, "ln_f", "ln_f", "Final layer norm", x, w["ln_f.weight"], w["ln_f.bias"],
                     stage="output", kind="ln_f", short_title="Final layer norm",
                     purpose=f"This is the last one, after layer {layout.cfg.n_layer - 1}: its last row is what "
                             "the model predicts from.")
    parts: list[Component] = [ln_f]
    generation = None
    if layout.options.generate:
        next_logits = NextTokenLogits(layout, ln_f.out, w["wte.weight"], vocab.text)
        generation = Generation(layout, next_logits, vocab.text)
        inputs.tokens.generate_from(generation.next_ids)
        parts += [next_logits, generation]
    logits = Logits(layout, ln_f.out, w["wte.weight"], vocab.text)
    prediction = Prediction(layout, logits, vocab.text)
    parts += [logits, prediction]
    if layout.options.lens:
        if not layer_outputs:
            raise ValueError("the logit lens needs the layers' outputs")
        parts += logit_lens(layout, list(layer_outputs), w["ln_f.weight"], w["ln_f.bias"], w["wte.weight"], vocab.text,
                            prediction.top_ids)
    selftest = SelfTest(layout)
    inputs.guide.show(prediction, generation, selftest)
    return parts + [selftest, inputs.guide, Metadata(layout)]


def transformer_block(layout: Layout, i: int, x: Block, w: Weights) -> list[Component]:
    """Layer i: attention then MLP, each after a layer norm and added to the stream."""
    p = f"h.{i}."
    ln_1 = LayerNorm(layout, f"h{i}_ln_1", f"h{i} ln_1",
                     f"Layer {i}: layer norm 1 of x: (x - mean) / sqrt(var + eps) * gain + bias", x,
                     w[p + "ln_1.weight"], w[p + "ln_1.bias"], stage="attention", kind="ln_1", layer=i,
                     short_title="Layer norm 1", purpose="This one prepares the stream for the layer's attention.")
    qkv = QKV(layout, i, ln_1.out, w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"])
    keys = KeysT(layout, i, qkv.out)
    scores = Scores(layout, i, qkv.out, keys.out)
    softmax = Softmax(layout, i, scores.out)
    probs = AttentionWeights(layout, i, softmax)
    mix = MixValues(layout, i, probs.out, qkv.out)
    proj = AttentionProjection(layout, i, mix.out, w[p + "attn.c_proj.weight"], w[p + "attn.c_proj.bias"])
    resid_1 = AttentionResidual(layout, i, x, proj.out)
    ln_2 = LayerNorm(layout, f"h{i}_ln_2", f"h{i} ln_2", f"Layer {i}: layer norm 2 of the residual stream",
                     resid_1.out, w[p + "ln_2.weight"], w[p + "ln_2.bias"], stage="mlp", kind="ln_2", layer=i,
                     short_title="Layer norm 2", purpose="This one prepares the stream for the layer's MLP.")
    fc = MlpUp(layout, i, ln_2.out, w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"])
    gelu = Gelu(layout, i, fc.out)
    down = MlpDown(layout, i, gelu.out, w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"])
    resid_2 = MlpResidual(layout, i, resid_1.out, down.out)
    return [ln_1, qkv, keys, scores, softmax, probs, mix, proj, resid_1, ln_2, fc, gelu, down, resid_2]
