"""The latent cache: moving-digit videos encoded once by a video VAE and kept on disk (data/cache/, ignored by git,
safe to delete), so a text-to-video run or benchmark does not encode 20,000 videos again. Open-Sora and
DiffSynth-Studio cache their frozen encoders' outputs the same way. A cache file is keyed by the VAE's weights, so a
different VAE never reuses it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from . import checkpoint
from .data import caption_index, moving_digits
from .models.vae import VideoVAE, encode_videos

CACHE_DIR = Path(__file__).resolve().parents[1] / "data" / "cache"


def weights_digest(model: torch.nn.Module) -> str:
    """A short fingerprint of a model's weights."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def cached_video_latents(vae: VideoVAE, n_videos: int, seed: int, split: str = "train"
                         ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """(scaled latent means, caption indices, video shape) of moving_digits(n_videos, seed, split), encoded once."""
    path = CACHE_DIR / f"latents-{split}-{n_videos}-{seed}-{weights_digest(vae)}.safetensors"
    if path.exists():
        try:
            tensors, meta = checkpoint.load(str(path))
            return tensors["latents"], tensors["index"], tuple(meta["video_shape"])
        except (ValueError, KeyError):
            path.unlink()  # a damaged cache file: encode again
    md = moving_digits(n_videos, seed=seed, split=split)
    latents = encode_videos(vae, md.videos)
    index = caption_index(md.digits, md.colours, md.directions)
    checkpoint.save_atomic(str(path), {"latents": latents, "index": index},
                           {"video_shape": list(md.videos.shape[1:])})
    return latents, index, tuple(md.videos.shape[1:])
