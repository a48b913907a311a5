"""The tiny text encoder: word-level tokenizer (Hugging Face tokenizers/transformers), CLIPTextModel, CLIP loss."""

import pytest
import torch
import torch.nn.functional as F

from minidiff.data import caption, caption_index, caption_words, moving_digits
from minidiff.models.text import TextEncoder, TextEncoderConfig, build_tokenizer, clip_loss, tokenize


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return TextEncoder(TextEncoderConfig(words=caption_words())).eval()


def test_every_caption_round_trips_through_the_tokenizer():
    tok = build_tokenizer(caption_words())
    caps = sorted({caption(d, c, m) for d in range(10) for c in range(6) for m in range(4)})
    ids, mask = tokenize(tok, caps)
    assert ids.shape == mask.shape == (240, 8)
    assert (ids[:, 0] == tok.bos_token_id).all() and (mask.sum(1) == 7).all()  # [BOS] + 5 words + [EOS]
    assert tok.batch_decode(ids, skip_special_tokens=True) == caps
    assert tok.unk_token_id not in ids.tolist()


def test_empty_prompt_is_the_null_text(encoder):
    ids, mask = tokenize(encoder.tokenizer, [""])
    assert ids[0, :2].tolist() == [encoder.tokenizer.bos_token_id, encoder.tokenizer.eos_token_id]
    assert mask[0].tolist() == [1, 1] + [0] * 6
    with torch.no_grad():
        txt, y_vec = encoder(["", "a red 3 moving left"])
    assert txt.shape == (2, 8, 64) and y_vec.shape == (2, 64)
    assert not torch.allclose(y_vec[0], y_vec[1])


def test_unknown_words_and_long_prompts_are_clear_errors(encoder):
    with pytest.raises(ValueError, match=r"unknown word\(s\) \['purple'\].*knows only: 0 1 2 .* yellow"):
        encoder(["a purple 3 moving left"])
    with pytest.raises(ValueError, match="at most 6 fit"):
        tokenize(encoder.tokenizer, ["a red 3 moving left a red"])
    with pytest.raises(ValueError, match=r"\['\[eos\]'\]|unknown"):
        tokenize(encoder.tokenizer, ["[EOS]"])
    with pytest.raises(ValueError, match="words is empty"):
        TextEncoder(TextEncoderConfig())


def test_prompts_are_case_insensitive_and_padding_does_not_change_the_pooled_vector(encoder):
    with torch.no_grad():
        _, a = encoder(["a red 3 moving left"])
        _, b = encoder(["A Red 3 Moving LEFT"])
    torch.testing.assert_close(a, b)
    # the pooled vector sits at [EOS]; what follows it (padding) cannot change it
    ids, mask = tokenize(encoder.tokenizer, ["a red 3"])
    other = ids.clone()
    other[mask == 0] = 5
    with torch.no_grad():
        p1 = encoder.model(input_ids=ids, attention_mask=mask).pooler_output
        p2 = encoder.model(input_ids=other, attention_mask=mask).pooler_output
    torch.testing.assert_close(p1, p2)


def test_clip_loss_prefers_matched_pairs():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(16, 32, generator=g)
    matched = clip_loss(v + 0.01 * torch.randn(16, 32, generator=g), v, 20.0)
    shuffled = clip_loss(v[torch.randperm(16, generator=g)], v, 20.0)
    assert matched < 0.05 < shuffled
    t = torch.randn(16, 32, generator=g)
    torch.testing.assert_close(clip_loss(t, v, 10.0), clip_loss(v, t, 10.0))  # symmetric in its two inputs
    with pytest.raises(ValueError, match="same shape"):
        clip_loss(t, v[:8], 1.0)


def test_captions_of_the_video_world_all_encode(encoder):
    md = moving_digits(32, seed=0)
    with torch.no_grad():
        txt, y_vec = encoder(md.captions)
    assert txt.shape == (32, 8, 64) and torch.isfinite(y_vec).all()


def test_tiny_clip_towers_and_loss():
    from minidiff.models.text import LatentVideoEncoder, TinyCLIP, TinyCLIPConfig

    clip = TinyCLIP(TinyCLIPConfig(text=TextEncoderConfig(words=caption_words())))
    z = torch.randn(3, 4, 3, 16, 16)
    v = clip.embed_video(z)
    t = clip.embed_text(["a red 3 moving left", "a blue 7 moving up", ""])
    assert v.shape == t.shape == (3, 64)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(3))
    loss = clip.loss(z, ["a red 3 moving left", "a blue 7 moving up", "a green 1 moving down"])
    loss.backward()
    assert clip.logit_scale.grad is not None and torch.isfinite(loss)
    assert TinyCLIPConfig.from_dict(clip.config.to_dict()) == clip.config
    with pytest.raises(ValueError, match="expected latents"):
        LatentVideoEncoder()(torch.randn(3, 4, 16, 16))


def test_shipped_text_encoder_retrieves_captions_as_its_card_says():
    from minidiff.eval import retrieval_top1
    from minidiff.models.vae import encode_videos
    from minidiff.pretrained import load_pretrained

    clip, card = load_pretrained("text-encoder")
    vae, _ = load_pretrained("video-vae")
    assert card["recipe"] == "text-encoder" and card["train_minutes"] <= 5
    ev = moving_digits(300, seed=4, split="train")  # other videos than the card's 500
    acc = retrieval_top1(clip, encode_videos(vae, ev.videos), caption_index(ev.digits, ev.colours, ev.directions))
    assert acc >= card["metrics"]["retrieval_top1_train"] - 0.06, acc
    assert acc > 20 / 240  # far above chance (1 / 240) in any case


def test_pool_at_eos_is_clips_pooled_output(encoder):
    from minidiff.models.text import pool_at_eos

    prompts = ["a red 3 moving left", "green 9", "", "a 1 moving up"]
    ids, mask = tokenize(encoder.tokenizer, prompts)
    with torch.no_grad():
        out = encoder.model(input_ids=ids, attention_mask=mask)
    pooled = pool_at_eos(out.last_hidden_state, ids, encoder.tokenizer.eos_token_id)
    assert torch.allclose(pooled, out.pooler_output, atol=1e-6)
    with pytest.raises(ValueError, match="EOS"):
        pool_at_eos(out.last_hidden_state, torch.zeros_like(ids), encoder.tokenizer.eos_token_id)


def test_word_loss_reads_every_real_token_and_ignores_padding():
    from minidiff.models.text import word_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 7, generator=g)
    ids = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    by_hand = torch.stack([F.cross_entropy(logits[b, i][None], ids[b, i][None])
                           for b in range(2) for i in range(4) if mask[b, i]]).mean()
    torch.testing.assert_close(word_loss(logits, ids, mask), by_hand)
    logits2 = logits.clone()
    logits2[0, 3] += 100.0  # a padding position: no effect
    torch.testing.assert_close(word_loss(logits2, ids, mask), by_hand)


def test_tiny_clip_word_head_only_when_weighted():
    from minidiff.models.text import TinyCLIP, TinyCLIPConfig, clip_loss

    torch.manual_seed(0)
    plain = TinyCLIP(TinyCLIPConfig(text=TextEncoderConfig(words=caption_words())))
    assert plain.word_head is None and "word_head.weight" not in plain.state_dict()  # old checkpoints still load
    torch.manual_seed(0)
    clip = TinyCLIP(TinyCLIPConfig(text=TextEncoderConfig(words=caption_words()), word_loss_weight=0.5))
    z = torch.randn(3, 4, 3, 16, 16)
    prompts = ["a red 3 moving left", "a blue 7 moving up", "a green 1 moving down"]
    with torch.no_grad():
        contrastive = clip_loss(clip.embed_text(prompts), clip.embed_video(z), clip.logit_scale.exp())
        total = clip.loss(z, prompts)
    assert float(total) > float(contrastive) + 0.5  # + 0.5 x a cross-entropy over 26 words near log 26
    loss = clip.loss(z, prompts)
    loss.backward()
    assert clip.word_head.weight.grad is not None and clip.word_head.weight.grad.abs().sum() > 0


def test_text_probe_tells_words_kept_from_words_mixed():
    from minidiff.data import caption_attributes
    from minidiff.eval import text_probe

    d, c, m = caption_attributes(torch.arange(240))
    txt = torch.zeros(240, 8, 64)
    txt[torch.arange(240), 2, 10 + c] = 1  # each position holds its own word, one-hot
    txt[torch.arange(240), 3, d] = 1
    txt[torch.arange(240), 5, 20 + m] = 1
    y_vec = torch.randn(240, 64, generator=torch.Generator().manual_seed(0))  # carries nothing
    out = text_probe(txt, y_vec)
    assert out["probe"]["digit"]["txt"] == 1.0 and out["variance_share"]["digit"]["txt"] == 1.0
    assert out["probe"]["digit"]["y_vec"] < 0.3 and out["variance_share"]["digit"]["y_vec"] < 0.2
    # the digit's position mixed with its colour, each colour its own code: a probe from an unseen colour fails
    mixed = txt.clone()
    mixed[:, 3] = torch.randn(6, 10, 64, generator=torch.Generator().manual_seed(1))[c, d]
    assert text_probe(mixed, y_vec)["probe"]["digit"]["txt"] < 0.3
    with pytest.raises(ValueError, match="240 captions"):
        text_probe(txt[:10], y_vec[:10])
