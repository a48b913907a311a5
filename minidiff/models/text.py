"""A tiny text encoder for prompts like "a red 3 moving left": word-level tokenizer + a small CLIP text Transformer.

Open-Sora conditions on two text encoders: T5 gives a *sequence* of token embeddings (`txt`, attended to by the
video tokens) and CLIP a single *pooled* vector (`y_vec`, added to the timestep embedding). One small Hugging Face
`CLIPTextModel` gives both here: `last_hidden_state` plays the T5 role, `pooler_output` (the hidden state at the
end-of-text token) the CLIP role. It is trained CLIP-style (`clip_loss`) against videos.

    tokenizer:  "a red 3 moving left" -> [BOS] a red 3 moving left [EOS] [PAD] ...   (ids, attention mask)
    encoder:    ids -> txt (B, L, D), y_vec (B, D)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import short
from ..config import Config

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")


def build_tokenizer(words: list[str], max_length: int = 8):
    """A word-level `tokenizers` tokenizer over SPECIAL_TOKENS + sorted(words), wrapped as a `transformers`
    PreTrainedTokenizerFast that adds [BOS] ... [EOS] and pads to max_length."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(list(SPECIAL_TOKENS) + sorted(set(w.lower() for w in words)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = TemplateProcessing(single="[BOS] $A [EOS]",
                                            special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]", model_max_length=max_length)


def tokenize(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each (B, max_length). "" is valid (the null text for guidance). A word outside
    the vocabulary, or a prompt too long, is a ValueError that says which and lists the known words."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if isinstance(prompts, tuple):
        prompts = list(prompts)
    if not isinstance(prompts, list) or not prompts:
        raise ValueError(f"prompts must be a non-empty list of strings (or one string), got {short(prompts)}")
    known = [w for w in tokenizer.get_vocab() if w not in SPECIAL_TOKENS]
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ValueError(f"prompts[{i}] must be a string, got {type(p).__name__} {short(p)}")
        unknown = [w for w in p.lower().split() if w not in tokenizer.get_vocab() or w in SPECIAL_TOKENS]
        if unknown:
            raise ValueError(f"unknown word(s) {short(sorted(set(unknown)), 60)} in prompt {short(p, 60)}; the "
                             f"text encoder knows only: {' '.join(sorted(known))}")
        if len(p.split()) + 2 > tokenizer.model_max_length:
            raise ValueError(f"prompt {short(p, 60)} has {len(p.split())} words; at most "
                             f"{tokenizer.model_max_length - 2} fit")
    enc = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


@dataclass
class TextEncoderConfig(Config):
    """The tiny CLIP text tower: vocabulary, prompt length and Transformer sizes."""

    words: list[str] = field(default_factory=list)  # the vocabulary (besides SPECIAL_TOKENS)
    max_length: int = 8
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4


def pool_at_eos(hidden: torch.Tensor, input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """CLIP's pooled output: for each prompt, the hidden state (B, L, D) at its (first) [EOS] token -> (B, D).

    CLIP's text Transformer is causal, so [EOS], the last real token, is the only one that has seen the whole prompt.
    """
    if hidden.ndim != 3 or input_ids.shape != hidden.shape[:2]:
        raise ValueError(f"expected hidden (B, L, D) and input_ids (B, L), got {tuple(hidden.shape)} and "
                         f"{tuple(input_ids.shape)}")
    is_eos = input_ids == eos_token_id
    if not bool(is_eos.any(dim=1).all()):
        raise ValueError("every prompt needs an [EOS] token: tokenize with minidiff.models.text.tokenize")
    return hidden[torch.arange(len(hidden), device=hidden.device), is_eos.int().argmax(dim=1)]


class TextEncoder(nn.Module):
    """prompts -> (txt (B, L, D) token sequence, y_vec (B, D) pooled at [EOS]) with a small CLIPTextModel."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModel

        if not config.words:
            raise ValueError("TextEncoderConfig.words is empty: give the vocabulary, e.g. data.caption_words()")
        self.config = config
        self.tokenizer = build_tokenizer(config.words, config.max_length)
        vocab = self.tokenizer.get_vocab()
        self.model = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=config.hidden_size, intermediate_size=4 * config.hidden_size,
            num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
            max_position_embeddings=config.max_length, pad_token_id=vocab["[PAD]"], bos_token_id=vocab["[BOS]"],
            eos_token_id=vocab["[EOS]"]))

    def forward(self, prompts: list[str] | str) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = tokenize(self.tokenizer, prompts)
        device = next(self.parameters()).device
        out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device))
        return out.last_hidden_state, out.pooler_output


def clip_loss(text_emb: torch.Tensor, video_emb: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP's symmetric contrastive loss: with unit-normalised embeddings and logits = scale * t @ v^T, the i-th text
    should pick the i-th video among the batch and vice versa:
        loss = (CE(logits, arange(B)) + CE(logits^T, arange(B))) / 2."""
    if text_emb.shape != video_emb.shape or text_emb.ndim != 2:
        raise ValueError(f"expected two (B, D) embeddings of the same shape, got {tuple(text_emb.shape)} and "
                         f"{tuple(video_emb.shape)}")
    t, v = F.normalize(text_emb, dim=-1), F.normalize(video_emb, dim=-1)
    logits = logit_scale * t @ v.T
    target = torch.arange(len(t), device=t.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


# ------------------------------------------------------------------------------------- the tiny CLIP (training)


class LatentVideoEncoder(nn.Module):
    """The video tower of the tiny CLIP: VAE latents (B, C, T, h, w) -> (B, embed_dim).

    Three 3-D convolutions (the last two halve h and w), SiLU, global average pooling, a Linear."""

    def __init__(self, latent_channels: int = 4, width: int = 64, embed_dim: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(latent_channels, width, 3, padding=1), nn.SiLU(),
            nn.Conv3d(width, width, 3, stride=(1, 2, 2), padding=1), nn.SiLU(),
            nn.Conv3d(width, width, 3, stride=(1, 2, 2), padding=1), nn.SiLU())
        self.proj = nn.Linear(width, embed_dim)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The feature map before pooling, (B, width, T, h / 4, w / 4): what REPA aligns lesson 08's MMDiT to."""
        if z.ndim != 5:
            raise ValueError(f"expected latents (B, C, T, h, w), got shape {tuple(z.shape)}")
        return self.net(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(z).mean(dim=(2, 3, 4)))


@dataclass
class TinyCLIPConfig(Config):
    """The tiny CLIP: its text tower and the video tower over VAE latents."""

    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    latent_channels: int = 4
    video_width: int = 64
    embed_dim: int = 64
    # weight of the per-token word loss beside the contrastive one (0: CLIP's loss alone, and no word head)
    word_loss_weight: float = 0.0


def word_loss(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The per-token objective: cross-entropy of each real token's word, read back from its own output position,
        loss = mean over tokens i with mask_i = 1 of CE(logits_i, id_i)      (logits (B, L, V), ids (B, L)).
    CLIP's loss reads only the pooled [EOS] output, which leaves every other position free to forget its word; this
    keeps each position's word in `txt`, the job T5's per-token (denoising) objective does for Flux and Open-Sora."""
    keep = attention_mask.bool()
    return F.cross_entropy(logits[keep], input_ids[keep])


class TinyCLIP(nn.Module):
    """A text tower (TextEncoder, pooled y_vec -> Linear) and a video tower (LatentVideoEncoder) trained with
    `clip_loss` and a learned temperature, as in CLIP (Radford et al. 2021).

    embed_text(prompts) -> (B, embed_dim) and embed_video(latents (B, C, T, h, w)) -> (B, embed_dim), unit vectors;
    `text_encoder(prompts)` gives the conditioning of lesson 08: txt (B, max_length, hidden), y_vec (B, hidden)."""

    def __init__(self, config: TinyCLIPConfig):
        super().__init__()
        self.config = config
        self.text_encoder = TextEncoder(config.text)
        self.text_proj = nn.Linear(config.text.hidden_size, config.embed_dim)
        self.video_encoder = LatentVideoEncoder(config.latent_channels, config.video_width, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07), CLIP's initial temperature
        # a linear read-out of the word at every position of txt, trained only if word_loss_weight > 0
        self.word_head = (nn.Linear(config.text.hidden_size, len(self.text_encoder.tokenizer.get_vocab()))
                          if config.word_loss_weight > 0 else None)

    def embed_text(self, prompts: list[str]) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text_encoder(prompts)[1]), dim=-1)

    def embed_video(self, latents: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.video_encoder(latents), dim=-1)

    def loss(self, latents: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """clip_loss of the pooled text against the videos, + word_loss_weight * word_loss on every position of txt."""
        scale = self.logit_scale.clamp(max=4.6052).exp()  # temperature >= 0.01, as CLIP clips it
        if self.word_head is None:
            return clip_loss(self.embed_text(prompts), self.embed_video(latents), scale)
        ids, mask = tokenize(self.text_encoder.tokenizer, prompts)
        device = next(self.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        out = self.text_encoder.model(input_ids=ids, attention_mask=mask)
        text_emb = F.normalize(self.text_proj(out.pooler_output), dim=-1)
        loss = clip_loss(text_emb, self.embed_video(latents), scale)
        return loss + self.config.word_loss_weight * word_loss(self.word_head(out.last_hidden_state), ids, mask)


def add_words(encoder: TextEncoder, words: list[str], seed: int = 0) -> TextEncoder:
    """A copy of `encoder` that also knows `words` (lesson 09's new concept): every trained weight copied, each old
    word's embedding row moved to its place in the new (sorted) vocabulary, each new word's row drawn from a normal
    with the old rows' mean and covariance (what Hugging Face's `resize_token_embeddings` does), so a new word looks
    like a word to the Transformer and is told apart from the others. The rest of the model cannot know what it
    means until a model is trained on captions that use it."""
    if isinstance(words, str):
        words = [words]
    new = sorted({w.lower() for w in words} - set(encoder.config.words))
    if not new or any(not w.isalnum() for w in new):
        raise ValueError(f"words must be new single words (letters or digits), not already in the vocabulary "
                         f"({' '.join(sorted(encoder.config.words))}); got {short(words, 60)}")
    from dataclasses import replace

    bigger = TextEncoder(replace(encoder.config, words=[*encoder.config.words, *new]))
    old_state = encoder.model.state_dict()
    key = next(k for k in old_state if k.endswith("token_embedding.weight"))
    state = {k: v for k, v in old_state.items() if k != key}
    old_rows, old_vocab = old_state[key], encoder.tokenizer.get_vocab()
    g = torch.Generator().manual_seed(seed)
    mean = old_rows.float().mean(0)
    chol = torch.linalg.cholesky(torch.cov(old_rows.float().T) + 1e-5 * torch.eye(old_rows.shape[1]))
    rows = torch.empty(len(bigger.tokenizer.get_vocab()), old_rows.shape[1])
    for token, i in bigger.tokenizer.get_vocab().items():
        if token in old_vocab:
            rows[i] = old_rows[old_vocab[token]]
        else:
            rows[i] = mean + chol @ torch.randn(len(mean), generator=g)
    state[key] = rows
    bigger.model.load_state_dict(state)
    return bigger.to(old_rows.device).eval()
