"""Checks for lesson 07 (text conditioning)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..models import text
from ._common import CheckFailed, as_int_list, as_tensor, call, close, ok


def _vocab() -> dict[str, int]:
    from ..data import caption_words

    return {w: i for i, w in enumerate(list(text.SPECIAL_TOKENS) + sorted(caption_words()))}


def check_prompt_to_ids(fn: Callable) -> None:
    """fn(prompt, vocab, max_length) -> list of max_length ids: [BOS] words [EOS] [PAD]..., matching the tokenizer."""
    name = "prompt_to_ids"
    vocab = _vocab()
    tok = text.build_tokenizer([w for w in vocab if w not in text.SPECIAL_TOKENS], max_length=8)
    for prompt in ("a red 3 moving left", "Blue 7", "moving up", ""):
        want = text.tokenize(tok, [prompt])[0][0].tolist()
        got = as_int_list(call(fn, name, prompt, dict(vocab), 8), f"{name}({prompt!r})")
        if got != want:
            ids = [vocab[w] for w in prompt.lower().split()]
            if isinstance(got, list) and got[:len(ids)] == ids:
                hint = "start with the [BOS] id, then the words, then [EOS]"
            elif isinstance(got, list) and len(got) != 8:
                hint = f"pad with the [PAD] id up to max_length = 8 (you returned {len(got)} ids)"
            elif prompt != prompt.lower():
                hint = "lower-case the prompt first: the vocabulary is lower case"
            else:
                hint = "[BOS] + one id per word + [EOS], then [PAD] until the list has max_length ids"
            raise CheckFailed(f"{name}({prompt!r}): expected {want}, got {got}. Hint: {hint}.")
    ok(name, "matches the Hugging Face tokenizer on 4 prompts, including the empty one")


def check_pool_at_eos(fn: Callable) -> None:
    """fn(hidden, input_ids, eos_token_id) -> (B, D): each prompt's hidden state at its [EOS] token."""
    name = "pool_at_eos"
    g = torch.Generator().manual_seed(71)
    vocab = _vocab()
    tok = text.build_tokenizer([w for w in vocab if w not in text.SPECIAL_TOKENS], max_length=8)
    ids, _ = text.tokenize(tok, ["a red 3 moving left", "green 9", "", "a 1 moving up"])
    hidden = torch.randn(4, 8, 6, generator=g)
    eos = vocab["[EOS]"]
    want = text.pool_at_eos(hidden, ids, eos)
    out = as_tensor(call(fn, name, hidden.clone(), ids.clone(), eos), name, tuple(want.shape))
    if close(out, want):
        ok(name, "picks the [EOS] hidden state of prompts with 0 to 5 words")
        return
    h = hidden.double()
    if close(out, h[:, -1]):
        hint = "the last position is padding for short prompts; find where input_ids == eos_token_id"
    elif close(out, h.mean(1)):
        hint = "that is mean pooling over all positions, padding included; CLIP takes the [EOS] position"
    elif close(out, h[:, 0]):
        hint = "position 0 is [BOS], which (causal attention) has seen nothing of the prompt"
    else:
        hint = "index hidden[b, position of [EOS] in input_ids[b]] for each b"
    raise CheckFailed(f"{name}: wrong pooled vectors for 4 prompts. Hint: {hint}.")


def check_clip_loss(fn: Callable) -> None:
    """fn(text_emb, video_emb, logit_scale) -> CLIP's symmetric cross-entropy over cosine similarities."""
    name = "clip_loss"
    g = torch.Generator().manual_seed(72)
    for b, d, scale in [(6, 8, 10.0), (4, 5, 1.0)]:
        t, v = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
        want = text.clip_loss(t, v, scale)
        out = call(fn, name, t.clone(), v.clone(), scale)
        if not isinstance(out, torch.Tensor) or out.numel() != 1:
            raise CheckFailed(f"{name} should return a scalar tensor, got {out!r:.80}")
        out = out.detach().double().reshape(())
        if close(out, want.double()):
            continue
        tn, vn = torch.nn.functional.normalize(t.double(), dim=-1), torch.nn.functional.normalize(v.double(), dim=-1)
        target = torch.arange(b)
        ce = torch.nn.functional.cross_entropy
        raw = scale * t.double() @ v.double().T
        if close(out, (ce(raw, target) + ce(raw.T, target)) / 2):
            hint = "normalise both embeddings to unit length first (cosine similarity)"
        elif close(out, ce(scale * tn @ vn.T, target)):
            hint = "CLIP's loss is symmetric: average the text->video and the video->text cross-entropies"
        elif close(out, (ce(tn @ vn.T, target) + ce(vn @ tn.T, target)) / 2):
            hint = "multiply the similarities by logit_scale (1 / temperature) before the cross-entropy"
        else:
            hint = "logits = logit_scale * t @ v.T of the normalised embeddings; targets arange(B); both directions"
        raise CheckFailed(f"{name}: wrong loss for B={b}, D={d}, logit_scale={scale}. Hint: {hint}.")
    ok(name, "matches the symmetric contrastive loss for 2 batch sizes and temperatures")
