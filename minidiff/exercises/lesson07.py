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


def _tiny_clip(seed: int = 73):
    """A very small TinyCLIP with fixed random weights and its temperature above CLIP's clip (log 100), so a step that
    forgets the clip shows; what the training-step check runs on."""
    from ..data import caption_words

    with torch.random.fork_rng(devices=[]):  # the learner's own random stream is left as it was
        torch.manual_seed(seed)
        clip = text.TinyCLIP(text.TinyCLIPConfig(
            text=text.TextEncoderConfig(words=sorted(caption_words()), max_length=8, hidden_size=16, num_layers=1,
                                        num_heads=2), latent_channels=4, video_width=8, embed_dim=8))
    with torch.no_grad():
        clip.logit_scale.fill_(5.0)
    return clip.train()


def _params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in model.parameters()])


def check_clip_training_step(fn: Callable) -> None:
    """fn(clip, optimizer, latents, prompts) -> the loss (a number) of one contrastive step that also updated clip:
    scale = exp(logit_scale clipped at log 100), loss = clip_loss(embed_text, embed_video, scale), zero_grad, backward,
    step."""
    import math

    name = "clip_training_step"
    lr = 0.5
    g = torch.Generator().manual_seed(74)
    latents = torch.randn(4, 4, 3, 4, 4, generator=g)
    prompts = ["a red 3 moving left", "a blue 7 moving up", "a green 0 moving right", "a red 8 moving down"]

    def with_stale_gradients(model: torch.nn.Module) -> torch.nn.Module:
        for p in model.parameters():  # gradients left over from an earlier step: a step must not add them in
            p.grad = torch.ones_like(p)
        return model

    def reference(clamp: float | None) -> tuple[float, torch.Tensor, torch.Tensor]:
        """One step of the package's TinyCLIP.loss (clamp None), or of the same loss clipped at `clamp`."""
        ref = with_stale_gradients(_tiny_clip())
        opt = torch.optim.SGD(ref.parameters(), lr=lr)
        loss = ref.loss(latents, prompts) if clamp is None else text.clip_loss(
            ref.embed_text(prompts), ref.embed_video(latents), ref.logit_scale.clamp(max=clamp).exp())
        opt.zero_grad()
        loss.backward()
        grads = torch.cat([p.grad.double().flatten() for p in ref.parameters()])
        opt.step()
        return float(loss.detach()), _params(ref), grads

    mine = with_stale_gradients(_tiny_clip())
    start = _params(mine)
    out = call(fn, name, mine, torch.optim.SGD(mine.parameters(), lr=lr), latents.clone(), list(prompts))
    got = _params(mine)
    # CLIP clips the scale at 100: OpenAI's code (and the package) writes log 100 as 4.6052; math.log(100) is right too
    refs = [reference(c) for c in (None, math.log(100))]
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        out = float(out.detach())
    if isinstance(out, bool) or not isinstance(out, (int, float)):
        raise CheckFailed(f"{name} should return the loss as a number (loss.item()), got {type(out).__name__} "
                          f"{repr(out)[:60]}")
    out = float(out)
    if not math.isfinite(out) or all(abs(out - r[0]) > 1e-4 * max(1.0, abs(r[0])) for r in refs):
        want_loss = refs[0][0]
        ref = _tiny_clip()
        with torch.no_grad():
            t, v = ref.embed_text(prompts), ref.embed_video(latents)
            losses = {"unclipped": float(text.clip_loss(t, v, math.exp(5.0))), "log": float(text.clip_loss(t, v, 5.0))}
        if abs(out - losses["unclipped"]) < 1e-4:
            hint = ("clip the temperature as CLIP does: clip logit_scale at log 100 before taking its exponential, so "
                    "the scale never exceeds 100 (this model's logit_scale is 5.0 > log 100)")
        elif abs(out - losses["log"]) < 1e-4:
            hint = "logit_scale is the log of the scale (CLIP learns log(1 / temperature)): use its exp()"
        elif abs(out - float(mine.loss(latents, prompts).detach())) < 1e-4:  # the loss after the step
            hint = "return the loss you back-propagated (computed before optimizer.step()), not a new one"
        else:
            hint = ("embed the prompts and the latents with the clip's two towers (unit vectors), take the scale as "
                    "the exponential of logit_scale clipped at log 100, and compute your clip_loss")
        raise CheckFailed(f"{name}: returned loss {out:.5f}, expected {want_loss:.5f}. Hint: {hint}.")
    if not any(torch.allclose(got, want, atol=1e-5, rtol=1e-4) for _, want, _ in refs):
        _, want, grads = min(refs, key=lambda r: abs(out - r[0]))
        ones = torch.ones_like(start)
        if torch.allclose(got, start, atol=1e-7):
            hint = ("the parameters did not change: call optimizer.step() after loss.backward(), and "
                    "optimizer.zero_grad() before backward (after it, it throws the fresh gradients away)")
        elif torch.allclose(got, start - lr * (grads + ones), atol=1e-5, rtol=1e-4):
            hint = ("the update used the fresh gradients plus the ones left over from an earlier step: call "
                    "optimizer.zero_grad() before loss.backward() (PyTorch adds gradients up)")
        elif torch.allclose(got, start - lr * ones, atol=1e-5, rtol=1e-4):
            hint = "the step used only the stale gradients: call loss.backward() before optimizer.step()"
        else:
            hint = "one step is: optimizer.zero_grad(); loss.backward(); optimizer.step()"
        raise CheckFailed(f"{name}: the right loss, but the parameters after the step differ from one SGD step by up "
                          f"to {float((got - want).abs().max()):.3g}. Hint: {hint}.")
    ok(name, "one step of the contrastive loss with the temperature clipped: same loss and same updated weights")
