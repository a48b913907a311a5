"""VAEs: a tiny MLP `ImageVAE` (the idea in full, with a 2-D latent you can draw) and a small causal 3-D `VideoVAE`
for videos (B, C, T, H, W), where images are 1-frame videos (B, C, 1, H, W).

    encoder: x -> (mean, logvar), each (B, latent_channels, T_lat, H / s, W / s)
    z = mean + exp(logvar / 2) * eps                       (the reparameterisation trick)
    decoder: z -> x_hat (B, C, T, H, W)
    loss = MSE(x_hat, x) + kl_weight * KL(N(mean, var) || N(0, I))

Causal in time, as in Open-Sora's and CogVideoX's video VAEs: every temporal convolution pads only on the past side,
so latent frame 0 is computed from video frame 0 alone (an image is a 1-frame video) and each later latent frame
from frames up to its own. Each temporal downsampling stage maps T -> (T - 1) / 2 + 1, so with
temporal_compression k (1, 2 or 4) T_lat = (T - 1) / k + 1: 9 frames -> 3 latent frames for k = 4.
Diffusion then runs on z * scaling_factor, where scaling_factor = 1 / std(z) over the data (so latents have unit
variance, like the noise they are mixed with).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_float_tensor
from ..config import Config

LOGVAR_RANGE = (-30.0, 20.0)  # the encoder's log-variance is clamped to this range (as in Stable Diffusion, Open-Sora)


@dataclass
class VAEConfig(Config):
    """The causal video VAE: channels, compression in space and time, KL weight, latent scaling factor."""

    in_channels: int = 3
    latent_channels: int = 4
    channels: tuple[int, ...] = (16, 32, 32)  # full resolution, then after each downsampling stage
    spatial_compression: int = 2  # 1, 2 or 4
    temporal_compression: int = 4  # 1, 2 or 4
    kl_weight: float = 1e-3
    scaling_factor: float = 1.0  # set from data by the recipe after training
    norm_groups: int = 8  # GroupNorm groups (statistics per frame, see FrameGroupNorm)

    def __post_init__(self) -> None:
        n = max(_stages(self.spatial_compression, "spatial_compression"),
                _stages(self.temporal_compression, "temporal_compression"))
        g = self.norm_groups
        if len(self.channels) != n + 1 or any(c % g for c in self.channels):
            raise ValueError(f"channels needs {n + 1} entries (full resolution + one per downsampling stage), each a "
                             f"multiple of norm_groups = {g} (GroupNorm), got {self.channels}")


def causal_pad(x: torch.Tensor, time_pad: int) -> torch.Tensor:
    """Pad a video (B, C, T, H, W) in time on the past side only: `time_pad` copies of frame 0 go in front.

    A kernel of kt frames then needs time_pad = kt - 1, and output frame i sees input frames i - kt + 1 .. i, never a
    later one. (Open-Sora's and CogVideoX's CausalConv3d do the same; zeros instead of copies would also be causal.)
    """
    if time_pad == 0:
        return x
    return torch.cat([x[:, :, :1].expand(-1, -1, time_pad, -1, -1), x], dim=2)


class CausalConv3d(nn.Module):
    """A 3-D convolution that pads time on the past side only (repeating the first frame), space on both sides.

    With kernel kt and stride st in time, T -> (T - 1) // st + 1 frames, and output frame i only sees input frames
    up to i * st.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (3, 3, 3),
                 stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()
        self.time_pad = kernel[0] - 1
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=(0, kernel[1] // 2, kernel[2] // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(causal_pad(x, self.time_pad))


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame (over channels-in-group, H, W), never across time: a plain GroupNorm
    on (B, C, T, H, W) would let later frames change how the first one is normalised, breaking causality."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, c, h, w).transpose(1, 2)


class ResBlock3d(nn.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x)))))), with causal convolutions (1x1x1 skip when channels change)."""

    def __init__(self, cin: int, cout: int, groups: int = 8):
        super().__init__()
        self.norm1, self.conv1 = FrameGroupNorm(groups, cin), CausalConv3d(cin, cout)
        self.norm2, self.conv2 = FrameGroupNorm(groups, cout), CausalConv3d(cout, cout)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


def _stages(factor: int, name: str) -> int:
    if factor not in (1, 2, 4):
        raise ValueError(f"{name} must be 1, 2 or 4, got {factor!r}")
    return int(math.log2(factor))


def _stage_counts(cfg: VAEConfig) -> tuple[int, int]:
    return _stages(cfg.spatial_compression, "spatial_compression"), \
        _stages(cfg.temporal_compression, "temporal_compression")


class Encoder(nn.Module):
    """A per-frame conv at full resolution, then one stage per downsampling (a strided causal 3x3x3 conv and a
    residual block), then (mean, logvar)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, (s_st, t_st), g = cfg.channels, _stage_counts(cfg), cfg.norm_groups
        layers: list[nn.Module] = [CausalConv3d(cfg.in_channels, ch[0], (1, 3, 3))]
        for i in range(len(ch) - 1):
            st, ss = (2 if i < t_st else 1), (2 if i < s_st else 1)
            layers += [CausalConv3d(ch[i], ch[i + 1], (3, 3, 3), (st, ss, ss)), ResBlock3d(ch[i + 1], ch[i + 1], g)]
        if len(ch) == 1:
            layers.append(ResBlock3d(ch[0], ch[0], g))
        layers += [FrameGroupNorm(g, ch[-1]), nn.SiLU(), CausalConv3d(ch[-1], 2 * cfg.latent_channels, (1, 3, 3))]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.net(x).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by (t, s, s), then a causal conv. In time, frame 0 is not duplicated:
    T -> 2T - 1 (the inverse of the encoder's (T - 1) / 2 + 1)."""

    def __init__(self, cin: int, cout: int, t: int, s: int):
        super().__init__()
        self.t, self.s = t, s
        self.conv = CausalConv3d(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=(self.t, self.s, self.s), mode="nearest")
        if self.t > 1:
            x = x[:, :, self.t - 1:]
        return self.conv(x)


class Decoder(nn.Module):
    """The encoder's mirror: a residual block on the latents, one upsampling stage per downsampling, a per-frame
    conv back to pixels."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, (s_st, t_st), g = cfg.channels, _stage_counts(cfg), cfg.norm_groups
        layers: list[nn.Module] = [CausalConv3d(cfg.latent_channels, ch[-1], (1, 3, 3)), ResBlock3d(ch[-1], ch[-1], g)]
        for i in reversed(range(len(ch) - 1)):
            layers.append(Upsample(ch[i + 1], ch[i], 2 if i < t_st else 1, 2 if i < s_st else 1))
            if i > 0:
                layers.append(ResBlock3d(ch[i], ch[i], g))
        layers += [FrameGroupNorm(g, ch[0]), nn.SiLU(), CausalConv3d(ch[0], cfg.in_channels, (1, 3, 3))]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@dataclass
class VAEOutput:
    """What a VAE forward pass returns: reconstruction (like x), mean, logvar and the sampled z (like mean)."""

    recon: torch.Tensor
    mean: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per element = 0.5 (mean^2 + var - 1 - logvar); always >= 0."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z = mean + sigma * noise with sigma = exp(logvar / 2) and noise ~ N(0, I): a sample of N(mean, sigma^2) that
    gradients can flow through to mean and logvar (the reparameterisation trick)."""
    return mean + torch.exp(0.5 * logvar) * noise


def latent_scaling_factor(latents: torch.Tensor) -> float:
    """1 / std of latents over a dataset: multiplying by it gives the diffusion model unit-variance inputs, like the
    N(0, I) noise they are mixed with (Stable Diffusion's 0.18215, Open-Sora's Hunyuan VAE 0.476986)."""
    std = float(latents.float().std())
    if not std > 0:
        raise ValueError("latents have zero spread: encode real data (more than one sample) to get a scaling factor")
    return 1.0 / std


class GaussianVAE(nn.Module):
    """What every VAE here shares: a sample of q(z | x) through the reparameterisation, and the loss
    MSE(x_hat, x) + kl_weight * KL (both averaged per element). Subclasses give encode, decode and kl_weight."""

    kl_weight: float

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        mean, logvar = self.encode(x)
        z = reparameterize(mean, logvar, torch.randn(mean.shape, generator=generator).to(mean.device))
        return VAEOutput(self.decode(z), mean, logvar, z)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        out = self(x, generator)
        return F.mse_loss(out.recon, x) + self.kl_weight * kl_divergence(out.mean, out.logvar).mean()


@dataclass
class ImageVAEConfig(Config):
    """Lesson 06's MLP VAE for small images with a drawable latent."""

    image_shape: tuple[int, int, int] = (1, 16, 16)  # (C, H, W)
    latent_dim: int = 2
    hidden: int = 256
    kl_weight: float = 1e-2


class ImageVAE(GaussianVAE):
    """The VAE in its simplest form, for small images (B, C, H, W): MLP encoder -> (mean, logvar) of a `latent_dim`
    Gaussian, reparameterised sample, MLP decoder -> image in [-1, 1] (tanh).

        loss = MSE(x_hat, x) + kl_weight * KL(q(z|x) || N(0, I))     (both averaged per element, as in VideoVAE)
    """

    def __init__(self, config: ImageVAEConfig | None = None):
        super().__init__()
        self.config = cfg = config or ImageVAEConfig()
        self.image_shape, self.latent_dim, self.kl_weight = tuple(cfg.image_shape), cfg.latent_dim, cfg.kl_weight
        latent_dim, hidden = cfg.latent_dim, cfg.hidden
        n = math.prod(self.image_shape)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(n, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                     nn.SiLU(), nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                     nn.Linear(hidden, n), nn.Tanh())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) -> (mean, logvar), each (B, latent_dim)."""
        check_float_tensor("x", x)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"expected images (B, {', '.join(map(str, self.image_shape))}), got shape "
                             f"{tuple(x.shape)}")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> x_hat (B, C, H, W)."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latents (B, {self.latent_dim}), got shape {tuple(z.shape)}")
        return self.decoder(z).reshape(len(z), *self.image_shape)


class VideoVAE(GaussianVAE):
    """The causal 3-D VAE for videos (B, in_channels, T, H, W) in [-1, 1], T = k n + 1 frames (k the temporal
    compression; images are T = 1): encode -> (mean, logvar), each (B, latent_channels, (T - 1) / k + 1, H / s,
    W / s) with s the spatial compression; decode maps unscaled latents back to (B, in_channels, T, H, W).
    Diffusion models work on mean * config.scaling_factor and decode latents / scaling_factor."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder, self.decoder = Encoder(config), Decoder(config)

    @property
    def kl_weight(self) -> float:
        return self.config.kl_weight

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(latent_channels, T_lat, H / s, W / s) for a video of `frames` x height x width, checking the sizes fit."""
        cfg = self.config
        k, s = cfg.temporal_compression, cfg.spatial_compression
        if (frames - 1) % k:
            raise ValueError(f"a causal VAE with temporal compression {k} needs T = {k}n + 1 frames (1, {k + 1}, "
                             f"{2 * k + 1}, ...), got T = {frames}")
        if height % s or width % s:
            raise ValueError(f"height and width must be divisible by the spatial compression {s}, got "
                             f"{height}x{width}")
        return cfg.latent_channels, (frames - 1) // k + 1, height // s, width // s

    def _check(self, x: torch.Tensor) -> None:
        check_float_tensor("videos", x)
        if x.ndim != 5 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected videos (B, {self.config.in_channels}, T, H, W) (images as T = 1), got shape "
                             f"{tuple(x.shape)}")
        self.latent_shape(*x.shape[2:])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, T, H, W) in [-1, 1] -> (mean, logvar) of q(z | x)."""
        self._check(x)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_channels, T_lat, h, w), unscaled -> x_hat (B, C, T, H, W)."""
        if z.ndim != 5 or z.shape[1] != self.config.latent_channels:
            raise ValueError(f"expected latents (B, {self.config.latent_channels}, T_lat, h, w), got shape "
                             f"{tuple(z.shape)}")
        return self.decoder(z)


def encode_videos(vae: VideoVAE, videos: torch.Tensor, batch: int = 200) -> torch.Tensor:
    """Scaled latent means z * scaling_factor of videos (N, 3, T, H, W), in batches, without gradients: what the
    tiny CLIP and the text-to-video MMDiT train on (lessons 07-08)."""
    with torch.no_grad():
        return torch.cat([vae.encode(v)[0] for v in videos.split(batch)]) * vae.config.scaling_factor


def autoencoder_loss(model: ImageVAE, x: torch.Tensor, y, generator: torch.Generator) -> torch.Tensor:
    """A plain autoencoder's loss on an ImageVAE, as loss_fn(model, x, y, generator) for `train.train`: the code is
    the encoder's mean, no noise, no KL: ||x - Dec(Enc(x))||^2 (averaged per pixel)."""
    mean, _ = model.encode(x)
    return F.mse_loss(model.decode(mean), x)
