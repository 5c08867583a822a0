"""GPT-2 as a workbook: its components composed in forward order, as picoGPT composes
its functions. To add a step, write its component and add one line here."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from . import probes
from .layout import Block, Layout
from .probes import Forward, Inputs, Probe
from .steps.attention import (QKV, AttentionProjection, AttentionResidual, AttentionWeights, KeysT, MixValues,
                              Scores, Softmax)
from .steps.base import Component
from .steps.controls import Controls
from .steps.embedding import AddPositions, TokenEmbedding
from .steps.guide import Guide
from .steps.layer_norm import LayerNorm
from .steps.metadata import Metadata
from .steps.mlp import Gelu, MlpDown, MlpResidual, MlpUp
from .steps.prediction import Prediction
from .steps.prompt import BytePairMerges, MergeTable, PromptChars, PromptIds, PromptWords
from .steps.selftest import SelfTest
from .steps.tokens import TokenIds, Vocabulary
from .steps.unembed import Logits
from .steps.weights import Weights

def gpt2(layout: Layout) -> list[Component]:
    """Every component of a GPT-2 workbook, in forward order."""
    inputs, parts = embedding(layout)
    streams, layers = [parts[-1].out], []
    for i in range(layout.cfg.n_layer):
        layers.append(transformer_block(layout, i, streams[-1], inputs))
        parts += layers[-1]
        streams.append(parts[-1].out)
    return parts + output(layout, streams[-1], inputs, streams, layers)


def embedding(layout: Layout) -> tuple[Inputs, list[Component]]:
    """The inputs and the controls (with a typed prompt: tokenized in the sheet), then token
    ids to the residual stream: the first components of the book."""
    guide, w, vocab = Guide(layout, probe_lines(layout)), Weights(layout), Vocabulary(layout)
    controls = Controls(layout)
    parts: list[Component] = [w, vocab, controls]
    prompt = None
    if layout.typed_prompt:
        parts += tokenizer(layout, guide, vocab)
        prompt = parts[-1]
    tokens = TokenIds(layout, vocab, prompt)
    embed_tok = TokenEmbedding(layout, tokens.positions, tokens.ids, w["wte.weight"])
    embed = AddPositions(layout, tokens.positions, embed_tok.out, w["wpe.weight"], controls)
    return Inputs(w, vocab, tokens, controls, guide, prompt), parts + [tokens, embed_tok, embed]


def tokenizer(layout: Layout, guide: Guide, vocab: Vocabulary) -> list[Component]:
    """The prompt cell to token ids: GPT-2's tokenizer in formulas."""
    tables = MergeTable(layout, layout.n_merges)
    chars = PromptChars(layout, guide.sheet, tables)
    words = PromptWords(layout, chars)
    bpe = BytePairMerges(layout, words, tables, vocab.text)
    return [tables, chars, words, bpe, PromptIds(layout, words, bpe, guide.sheet)]


def output(layout: Layout, x: Block, inputs: Inputs, streams: Sequence[Block] = (),
           layers: Sequence[Sequence[Component]] = ()) -> list[Component]:
    """The final stream x to a prediction, with the probes the book holds: those that write
    before it, the others after it (they read `streams`, the stream entering each layer and
    then the last layer's output, and the `layers`' components); then the program's
    self-test, the Guide and the metadata."""
    w, vocab = inputs.weights, inputs.vocab
    ln_f = LayerNorm(layout, "ln_f", "ln_f", "Final layer norm", x, w["ln_f.weight"], w["ln_f.bias"],
                     stage="output", kind="ln_f", short_title="Final layer norm", positions=inputs.positions,
                     purpose=f"This is the last one, after layer {layout.cfg.n_layer - 1}: its last row is what "
                             "the model predicts from.")
    model = Forward(inputs, inputs.positions, list(streams) or [x], [list(layer) for layer in layers], ln_f)
    parts: list[Component] = [ln_f]
    for probe, value in _probes(layout, writes=True):
        written = probe.compose(layout, model, value)
        parts += written.components
        model = dataclasses.replace(model, positions=written.positions)
    logits = Logits(layout, model.positions, ln_f.out, w["wte.weight"], vocab.text)
    prediction = Prediction(layout, logits, vocab.text, inputs.controls)
    parts += [logits, prediction]
    model = dataclasses.replace(model, prediction=prediction)
    for probe, value in _probes(layout, writes=False):
        parts += probe.compose(layout, model, value)
    selftest = SelfTest(layout)
    inputs.guide.show(prediction, selftest, None if inputs.prompt is None else inputs.prompt.n_tokens)
    return parts + [selftest, inputs.guide, Metadata(layout, [p.name for p in probes.options()])]


def _probes(layout: Layout, writes: bool) -> list[tuple[Probe, int]]:
    """The probes the book holds that write tokens (or that do not), with their values."""
    return [(p, layout.options.probe(p.name)) for p in probes.options()
            if p.compose is not None and p.writes == writes and layout.options.probe(p.name)]


def probe_lines(layout: Layout) -> list[str]:
    """What the book's probes say on the Guide."""
    return [line for p in probes.options() if layout.options.probe(p.name)
            for line in p.guide(layout, layout.options.probe(p.name))]


def transformer_block(layout: Layout, i: int, x: Block, inputs: Inputs) -> list[Component]:
    """Layer i: attention then MLP, each after a layer norm and added to the stream."""
    p, w, pos, controls = f"h.{i}.", inputs.weights, inputs.positions, inputs.controls
    ln_1 = LayerNorm(layout, f"h{i}_ln_1", f"h{i} ln_1",
                     f"Layer {i}: layer norm 1 of x: (x - mean) / sqrt(var + eps) * gain + bias", x,
                     w[p + "ln_1.weight"], w[p + "ln_1.bias"], stage="attention", kind="ln_1", layer=i, positions=pos,
                     short_title="Layer norm 1", purpose="This one prepares the stream for the layer's attention.")
    qkv = QKV(layout, pos, i, ln_1.out, w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"])
    keys = KeysT(layout, i, qkv.out)
    scores = Scores(layout, i, qkv.out, keys.out)
    softmax = Softmax(layout, i, scores.out)
    probs = AttentionWeights(layout, i, softmax)
    mix = MixValues(layout, pos, i, probs.out, qkv.out, controls)
    proj = AttentionProjection(layout, pos, i, mix.out, w[p + "attn.c_proj.weight"], w[p + "attn.c_proj.bias"])
    resid_1 = AttentionResidual(layout, pos, i, x, proj.out, controls)
    ln_2 = LayerNorm(layout, f"h{i}_ln_2", f"h{i} ln_2", f"Layer {i}: layer norm 2 of the residual stream",
                     resid_1.out, w[p + "ln_2.weight"], w[p + "ln_2.bias"], stage="mlp", kind="ln_2", layer=i,
                     positions=pos, short_title="Layer norm 2",
                     purpose="This one prepares the stream for the layer's MLP.")
    fc = MlpUp(layout, pos, i, ln_2.out, w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"])
    gelu = Gelu(layout, pos, i, fc.out)
    down = MlpDown(layout, pos, i, gelu.out, w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"])
    resid_2 = MlpResidual(layout, pos, i, resid_1.out, down.out, controls)
    return [ln_1, qkv, keys, scores, softmax, probs, mix, proj, resid_1, ln_2, fc, gelu, down, resid_2]
