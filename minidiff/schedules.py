r"""Noise schedules for DDPM: the betas and every quantity derived from them.

Forward process (one step):  q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I),  alpha_t = 1 - beta_t.
Closed form:                 q(x_t | x_0)     = N(sqrt(alphas_cumprod_t) x_0, (1 - alphas_cumprod_t) I),
                             alphas_cumprod_t = prod_{s<=t} alpha_s  (written \bar\alpha_t in the lessons).

Timesteps are integers t in {0, ..., T-1}; index 0 is the first noising step (the papers' t = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULES = ("linear", "cosine")


def _check_T(T: int) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
        raise ValueError(f"the number of timesteps T must be a positive integer, got {T!r}")


def linear_beta_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    r"""beta_t rising linearly from `beta_start` to `beta_end` over T steps (Ho et al. 2020, section 4).

    beta_t = beta_start + (beta_end - beta_start) * t / (T - 1),  t = 0..T-1.
    """
    _check_T(T)
    if not (0.0 < beta_start < 1.0 and 0.0 < beta_end < 1.0):
        raise ValueError(
            f"betas must lie in the open interval (0, 1); got beta_start={beta_start}, beta_end={beta_end}"
        )
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64).float()


def cosine_beta_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    r"""The cosine schedule of Nichol & Dhariwal (2021), defined through alphas_cumprod.

    alphas_cumprod(u) = f(u) / f(0),  f(u) = cos^2( (u + s) / (1 + s) * pi / 2 ),  u = t / T,
    beta_t = min(1 - alphas_cumprod((t+1)/T) / alphas_cumprod(t/T), max_beta).
    """
    _check_T(T)
    if not 0.0 < max_beta < 1.0:
        raise ValueError(f"max_beta must lie in (0, 1), got {max_beta}")

    def f(u: torch.Tensor) -> torch.Tensor:
        return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    u = torch.arange(T + 1, dtype=torch.float64) / T
    abar = f(u) / f(torch.zeros((), dtype=torch.float64))
    betas = 1 - abar[1:] / abar[:-1]
    return betas.clamp(max=max_beta).float()


@dataclass(frozen=True)
class NoiseSchedule:
    r"""Everything the DDPM equations need, precomputed from the betas (all 1-D tensors of length T).

    alphas                          = 1 - betas
    alphas_cumprod                  = cumprod(alphas)              (\bar\alpha_t)
    alphas_cumprod_prev             = [1, alphas_cumprod[:-1]]     (\bar\alpha_{t-1})
    sqrt_alphas_cumprod             = sqrt(\bar\alpha_t)           (signal coefficient of q(x_t | x_0))
    sqrt_one_minus_alphas_cumprod   = sqrt(1 - \bar\alpha_t)       (noise coefficient of q(x_t | x_0))
    sqrt_recip_alphas               = 1 / sqrt(alpha_t)
    snr                             = \bar\alpha_t / (1 - \bar\alpha_t)
    posterior_variance              = beta_t (1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t)   (of q(x_{t-1} | x_t, x_0))
    posterior_mean_coef1            = sqrt(\bar\alpha_{t-1}) beta_t / (1 - \bar\alpha_t)      (multiplies x_0)
    posterior_mean_coef2            = sqrt(alpha_t) (1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t)  (multiplies x_t)
    All are computed in float64 and stored in float32 (1 - \bar\alpha_t is tiny for small t: computing it from a
    float32 \bar\alpha_t would lose digits).
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    sqrt_recip_alphas: torch.Tensor
    snr: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor
    name: str = "custom"

    @classmethod
    def from_betas(cls, betas: torch.Tensor, name: str = "custom") -> NoiseSchedule:
        """Build the schedule from a 1-D tensor of betas, each strictly between 0 and 1."""
        betas = torch.as_tensor(betas)
        if betas.ndim != 1 or betas.numel() == 0:
            raise ValueError(
                f"betas must be a non-empty 1-D tensor (one beta per timestep), got shape {tuple(betas.shape)}"
            )
        b = betas.double()
        bad = ~((b > 0) & (b < 1))
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise ValueError(f"every beta must lie in the open interval (0, 1); betas[{i}] = {float(b[i])}")
        alphas = 1 - b
        abar = torch.cumprod(alphas, dim=0)
        abar_prev = torch.cat([torch.ones(1, dtype=b.dtype), abar[:-1]])
        f = torch.float32
        return cls(
            betas=b.to(f),
            alphas=alphas.to(f),
            alphas_cumprod=abar.to(f),
            alphas_cumprod_prev=abar_prev.to(f),
            sqrt_alphas_cumprod=abar.sqrt().to(f),
            sqrt_one_minus_alphas_cumprod=(1 - abar).sqrt().to(f),
            sqrt_recip_alphas=alphas.rsqrt().to(f),
            snr=(abar / (1 - abar)).to(f),
            posterior_variance=(b * (1 - abar_prev) / (1 - abar)).to(f),
            posterior_mean_coef1=(abar_prev.sqrt() * b / (1 - abar)).to(f),
            posterior_mean_coef2=(alphas.sqrt() * (1 - abar_prev) / (1 - abar)).to(f),
            name=name,
        )

    @property
    def T(self) -> int:
        """Number of timesteps."""
        return int(self.betas.shape[0])

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """A copy with every tensor on `device`."""
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return NoiseSchedule(**moved)


def make_schedule(name: str = "linear", T: int = 1000) -> NoiseSchedule:
    """The named schedule ("linear" or "cosine") with T steps."""
    if name == "linear":
        return NoiseSchedule.from_betas(linear_beta_schedule(T), name="linear")
    if name == "cosine":
        return NoiseSchedule.from_betas(cosine_beta_schedule(T), name="cosine")
    raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")


def extract(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """values[t] reshaped to (B, 1, ..., 1) with `ndim` dims in all, so it broadcasts over a batch of x."""
    out = values.to(t.device)[t]
    return out.reshape(t.shape[0], *([1] * (ndim - 1)))
