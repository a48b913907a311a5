r"""REPA, representation alignment (Yu et al. 2024, "Representation Alignment for Generation: Training Diffusion
Transformers Is Easier Than You Think"): while the denoiser learns its velocity, a small MLP on its hidden video
tokens after a few blocks is pulled toward a frozen, pretrained encoder's features of the *clean* latents:

    loss = flow_loss  +  repa_weight * (1 - 1/N sum_n cos(h_phi(z_n), y_n))        n over the video tokens

where z_n is token n of the denoiser given the noisy x_t, h_phi the projector (`MMDiT.repa_projector`) and y_n the
encoder's feature at that token's place. To predict the clean video's features from a noisy one, the early blocks
must recognise what is forming where; the paper found DiTs learn many times faster that way. REPA uses DINOv2;
minidiff uses lesson 07's video tower (`TinyCLIP.video_encoder`), which has learnt digits, colours and motion
from captions. The encoder is not the judge: it never saw the judge's data or labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_targets(features: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Encoder features (B, D, T, h', w') -> one target per packed video token (B, T * height * width, D), in the
    order of `models.mmdit.pack`: each frame's map resized (bilinearly) to the height x width token grid."""
    if features.ndim != 5:
        raise ValueError(f"expected encoder features (B, D, T, h, w), got shape {tuple(features.shape)}")
    b, d, t = features.shape[:3]
    grid = F.interpolate(features.flatten(1, 2), size=(height, width), mode="bilinear", align_corners=False)
    return grid.reshape(b, d, t, height, width).permute(0, 2, 3, 4, 1).reshape(b, t * height * width, d)


def repa_loss(projected: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - mean_n cos(projected_n, target_n) over every token of every sample: 0 when aligned, 1 when unrelated.
    (REPA writes -mean cos; the 1 changes no gradient and keeps the total loss positive, which the training loop's
    divergence warning needs.)"""
    if projected.shape != targets.shape:
        raise ValueError(f"the projected tokens {tuple(projected.shape)} and the encoder's targets "
                         f"{tuple(targets.shape)} must have the same shape (B, N, D)")
    return 1 - F.cosine_similarity(projected.float(), targets.float(), dim=-1).mean()


def flow_repa_loss(model, x0: torch.Tensor, targets: torch.Tensor, weight: float, *, cond: dict,
                   generator: torch.Generator | None = None, shift: float = 1.0) -> torch.Tensor:
    """Rectified flow's velocity loss (logit-normal t, shifted) plus `weight` x `repa_loss` of the model's projected
    tokens (model(..., return_repa=True)) against `targets` (B, N, D), the encoder's features of the clean x0."""
    from .flow import noised, velocity_target

    t, noise, xt = noised(x0, generator, True, shift)
    pred, projected = model(xt, t, **cond, return_repa=True)
    flow_part = torch.mean((pred.float() - velocity_target(x0, noise).float()) ** 2)
    return flow_part + weight * repa_loss(projected, targets)
