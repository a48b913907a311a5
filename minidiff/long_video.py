r"""Longer videos than the model was trained on (lesson 09): context frames, segment after segment.

The shipped MMDiT makes 9 frames (3 latent frames) and can start from a given first frame (image-to-video,
`i2v_condition`). A longer video is a chain of segments, each one's prompt its own (a storyboard, as in Phenaki
and Open-Sora's multi-prompt generation): segment k + 1 starts from the last frame of segment k, encoded by the
causal VAE as one latent frame (the context), and adds 8 new frames. A chain of S segments has 9 + 8 (S - 1) frames.

Errors can pile up along the chain: each context frame is a decoded, re-encoded sample. Lesson 09 measures a colour
cast that grows segment by segment (the VAE's round trip adds a little blue; the model continues the colour it is
given) and two remedies: colour matching (`match_colour`: give the context frame the first frame's ink colour
again, a low-frequency correction) and conditioning augmentation
(Ho et al., "Imagen Video", 2022; Stable Video Diffusion's noise augmentation) noises the context before it is given,
x_c = (1 - s) x_c + s eps, so that a model trained that way learns not to copy the context's flaws. `context_noise`
= s applies it at sampling time; the shipped model was trained with clean context frames only (lesson 09 measures
what that does).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .checks import check_float_tensor, check_int, check_number
from .models.vae import encode_videos


def match_colour(frames: torch.Tensor, reference: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """`frames` (B, 3, T, H, W) in [-1, 1] with each video's ink (pixels whose brightest channel exceeds `threshold`
    in [0, 1]) rescaled channel by channel to the mean ink colour of `reference` (B, 3, T', H, W): a colour cast is
    removed, the shapes are untouched. A video without ink in either is returned as it is."""
    def ink_mean(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = (v + 1) / 2
        bright = (u.amax(1, keepdim=True) > threshold).float()
        count = bright.sum((2, 3, 4))
        return (u * bright).sum((2, 3, 4)) / count.clamp_min(1), count.squeeze(1) > 0

    check_float_tensor("frames", frames, finite=True)
    check_float_tensor("reference", reference, finite=True)
    if frames.ndim != 5 or reference.ndim != 5 or frames.shape[:2] != reference.shape[:2]:
        raise ValueError(f"frames and reference must be video batches (B, 3, T, H, W) of the same B, got "
                         f"{tuple(frames.shape)} and {tuple(reference.shape)}")
    (have, has), (want, wants) = ink_mean(frames), ink_mean(reference)
    gain = torch.where((has & wants)[:, None], want / have.clamp_min(1e-3), torch.ones_like(want))
    return (((frames + 1) / 2) * gain[:, :, None, None, None]).clamp(0, 1) * 2 - 1


@torch.no_grad()
def extend_video(pipe, storyboard: Sequence[list[str] | str], *, seed: int = 0, context_noise: float = 0.0,
                 colour_match: bool = False, steps: int | None = None, cfg_scale: float | None = None
                 ) -> torch.Tensor:
    """Videos (B, 3, 9 + 8 (S - 1), H, W) in [-1, 1] from a storyboard of S segments, each the B prompts (or one
    prompt) of that segment, e.g. ["a red 3 moving left", "a red 3 moving right"]: segment 1 from text (text ->
    image -> video), each next one from the last frame of the one before (`pipe.sample_latents(first_frame=...)`),
    its context noised to level `context_noise` (0: clean) and, with `colour_match`, its ink colour matched to the
    video's first frame first. Segment k samples with seed `seed + k`."""
    if isinstance(storyboard, str) or not isinstance(storyboard, Sequence) or not storyboard:
        raise ValueError("storyboard must be a non-empty list of segments, each a prompt or a list of prompts, e.g. "
                         "['a red 3 moving left', 'a red 3 moving right']")
    segments = [pipe.check_prompts(p) for p in storyboard]
    if len({len(p) for p in segments}) != 1:
        raise ValueError(f"every segment needs the same number of prompts, got {[len(p) for p in segments]}")
    seed = check_int("seed", seed)
    s = check_number("context_noise", context_noise, 0.0, 1.0)
    video = pipe.decode(pipe.sample_latents(segments[0], steps, cfg_scale, seed=seed))
    parts = [video]
    first = video[:, :, :1]
    for k, prompts in enumerate(segments[1:], start=1):
        last = match_colour(video[:, :, -1:], first) if colour_match else video[:, :, -1:]
        context = encode_videos(pipe.vae, last.to(pipe.device))  # (B, C, 1, h, w), scaled
        eps = torch.randn(context.shape, generator=torch.Generator().manual_seed(seed + 10_000 + k))
        given = (1 - s) * context + s * eps.to(context.device)
        latents = pipe.sample_latents(prompts, steps, cfg_scale, seed=seed + k, first_frame=given)
        latents[:, :, :1] = context  # decode from the clean context: its frame is the last one already shown
        video = pipe.decode(latents)
        parts.append(video[:, :, 1:])
    return torch.cat(parts, dim=2)


REVERSE = {0: 1, 1: 0, 2: 3, 3: 2}  # left <-> right, up <-> down (indices into data.DIRECTION_NAMES)


def back_and_forth(segments: int, every: int = 1) -> tuple[list[list[str]], torch.Tensor, torch.Tensor,
                                                           list[torch.Tensor]]:
    """A storyboard that keeps the digit on the canvas: every `every`-th training combination (digit, colour, left or
    up) whose reverse is a training combination too, moving one way in odd segments and back in even ones. Returns
    (storyboard, digits, colours, [directions of each segment]) for `extend_video` and the judge."""
    from .data import HELDOUT_COMBOS, caption

    segments = check_int("segments", segments, low=1)
    every = check_int("every", every, low=1)
    combos = [(d, c, m) for d in range(10) for c in range(6) for m in (0, 2)
              if (d, c, m) not in HELDOUT_COMBOS and (d, c, REVERSE[m]) not in HELDOUT_COMBOS][::every]
    digits, colours = torch.tensor([x[0] for x in combos]), torch.tensor([x[1] for x in combos])
    directions = [torch.tensor([m if k % 2 == 0 else REVERSE[m] for _, _, m in combos]) for k in range(segments)]
    board = [[caption(int(d), int(c), int(m)) for d, c, m in zip(digits, colours, directions[k], strict=True)]
             for k in range(segments)]
    return board, digits, colours, directions


def judge_segments(videos: torch.Tensor, judge, digits: torch.Tensor, colours: torch.Tensor,
                   directions: list[torch.Tensor]) -> list[dict[str, float]]:
    """The video judge's accuracies on each 9-frame segment (frames 8k .. 8k + 8) of long videos."""
    from .eval import judge_videos

    need = 8 * len(directions) + 1
    if videos.ndim != 5 or videos.shape[2] < need:
        raise ValueError(f"{len(directions)} segments need videos (N, 3, T, H, W) of at least {need} frames, got shape "
                         f"{tuple(getattr(videos, 'shape', ()))}")
    return [judge_videos(videos[:, :, 8 * k: 8 * k + 9], judge, digits, colours, m).accuracy
            for k, m in enumerate(directions)]
