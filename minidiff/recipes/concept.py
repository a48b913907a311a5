"""A new concept for the shipped text-to-video model (lesson 09): a new word, a hundred videos, a few minutes.

The word gets a row in the text encoder's vocabulary (`models.text.add_words`: a fresh embedding, the rest of the
encoder unchanged, so every old caption encodes exactly as before); the MMDiT gets LoRA adapters on its attention
projections and on its modulation path (`lora.add_lora`: the shipped weights frozen, a rank-r update trained);
nothing else moves. The training
videos are moving digits re-tinted (`data.retint`), captioned with the new word, optionally mixed with the old
data ("replay") so the old words are rehearsed while the new one is learned.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from ..data import moving_digits, retint
from ..lora import add_lora, merge_lora
from ..models.text import add_words
from ..models.vae import encode_videos
from ..train import TrainConfig, TrainResult, train
from .video import t2v_loss_fn

# LoRA on the attention projections and on the path that carries the pooled text into every block (the MLPEmbedders'
# in_layer / out_layer, each block's Modulation `lin`): attention alone learned the new colour in 0.28-0.45 of videos,
# with the modulation path 0.95 (benchmarks/new_concept.py, lesson 09 section 4) -- a colour is read from y_vec.
CONCEPT_TARGETS = ("qkv", "proj", "lin", "in_layer", "out_layer")
CONCEPT_TRAIN = TrainConfig(steps=600, batch_size=16, lr=2e-3, warmup_steps=20, ema_decay=0.98, grad_clip=1.0,
                            log_every=25, seed=0)


def concept_videos(word: str, rgb: tuple[float, float, float], n: int, seed: int = 0):
    """n moving-digit videos (train split) re-tinted `rgb` and their captions with `word` for the colour."""
    data = moving_digits(n, seed=seed, split="train")
    captions = [c.split()[0] + f" {word} " + " ".join(c.split()[2:]) for c in data.captions]
    return retint(data.videos, rgb), captions, data


def word_captions(word: str) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The 40 captions "a <word> <digit> moving <direction>" (every digit and direction) with their digits and
    directions (indices into data.DIRECTION_NAMES): what adherence to a new colour word is measured on."""
    from ..data import DIRECTION_NAMES

    digits = torch.arange(10).repeat_interleave(len(DIRECTION_NAMES))
    directions = torch.arange(len(DIRECTION_NAMES)).repeat(10)
    prompts = [f"a {word} {int(d)} moving {DIRECTION_NAMES[int(m)]}" for d, m in zip(digits, directions, strict=True)]
    return prompts, digits, directions


def teach_word(pipe, word: str, rgb: tuple[float, float, float], *, n_videos: int = 100, replay: int = 0,
               rank: int = 8, targets: tuple[str, ...] = CONCEPT_TARGETS, train_config: TrainConfig | None = None,
               progress: bool = True, seed: int = 0) -> tuple[object, TrainResult]:
    """A copy of the pipeline `pipe` that knows `word` (a colour, tint `rgb`), and its training run: `n_videos` new
    videos, plus `replay` videos of the old training data; LoRA of `rank` on the MMDiT's linear layers named
    `targets`, merged into the copy's weights at the end (rank 0: full fine-tuning instead); the shipped pipeline is
    not changed."""
    videos, captions, _ = concept_videos(word, rgb, n_videos, seed)
    if replay:
        old = moving_digits(replay, seed=seed + 1, split="train")
        videos, captions = torch.cat([videos, old.videos]), captions + old.captions
    encoder = add_words(pipe.text_encoder, [word], seed=seed)
    prompts = sorted(set(captions)) + [""]
    with torch.no_grad():
        txt, vec = encoder(prompts)
        latents = encode_videos(pipe.vae, videos.to(pipe.device)).cpu()
    y = torch.tensor([prompts.index(c) for c in captions])
    mmdit = copy.deepcopy(pipe.mmdit).cpu().train()
    if rank:  # else: full fine-tuning, every weight trains
        add_lora(mmdit, rank, targets)
    loss = t2v_loss_fn(txt.cpu(), vec.cpu(), len(prompts) - 1, 0.1, pipe.shift, tasks={"t2i": 0.5, "i2v": 0.5})
    result = train(mmdit, loss, (latents, y), train_config or CONCEPT_TRAIN, device=pipe.device, progress=progress)
    merged = merge_lora(copy.deepcopy(result.ema)).eval().to(pipe.device)
    return replace(pipe, mmdit=merged, text_encoder=encoder.to(pipe.device)), result
