"""Measurements behind lesson 06: autoencoder vs VAE on a 2-D latent, the KL weight's trade-off, and what latent
space saves a Transformer denoiser.

usage: python benchmarks/latents.py [image-vae] [latent-cost] [--threads 2]
Appends to benchmarks/results/latents.json:
  image-vae, one record per model (recipes.image_vae: plain autoencoder, VAE with kl_weight 1e-3, 1e-2, 1e-1):
    {"component": "image-vae", "model", "kl_weight", "steps", "train_seconds", "recon_mse" (decoding the mean),
     "code_std_per_axis", "mean_sigma", "kl_per_digit", "prior_digit_counts" (the digit classifier's reading of
     1,000 decoded draws z ~ N(0, I), seed 1), "threads", "date"}
  latent-cost: {"component": "latent-cost", pixel and latent "numbers", "tokens" (2x2 patches per frame),
    "attention_pairs", "block_ms" (one DiT block of width 128, batch 4, mean of 10 runs), "speedup", "threads", "date"}
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

import torch
import torch.nn.functional as F
from _results import append_records


def measure_image_vaes(threads: int) -> None:
    from minidiff.data import load_digits
    from minidiff.eval import predict
    from minidiff.models.vae import kl_divergence
    from minidiff.pretrained import load_pretrained
    from minidiff.recipes import IMAGE_VAE, image_vae

    digits, _ = load_digits(16)
    classifier, _ = load_pretrained("digit-classifier")
    z_prior = torch.randn(1000, 2, generator=torch.Generator().manual_seed(1))
    for kl in (None, 1e-3, 1e-2, 1e-1):
        t0 = time.perf_counter()
        model = image_vae(kl, progress=False).model
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            mean, logvar = model.encode(digits)
            rec = {"component": "image-vae", "model": "autoencoder" if kl is None else "vae", "kl_weight": kl,
                   "steps": IMAGE_VAE["train"].steps, "train_seconds": round(seconds, 1),
                   "recon_mse": round(float(F.mse_loss(model.decode(mean), digits)), 4),
                   "code_std_per_axis": [round(float(s), 2) for s in mean.std(0)],
                   "mean_sigma": round(float(logvar.mul(0.5).exp().mean()), 3),
                   "kl_per_digit": round(float(kl_divergence(mean, logvar).sum(1).mean()), 2),
                   "prior_digit_counts": torch.bincount(predict(classifier, model.decode(z_prior)),
                                                        minlength=10).tolist(),
                   "threads": threads, "date": datetime.date.today().isoformat()}
        print(json.dumps(rec))
        append_records("latents", [rec])


def measure_latent_cost(threads: int) -> None:
    from minidiff.models.dit import DiTBlock

    torch.manual_seed(0)
    block = DiTBlock(128, 4).eval()
    shapes = {"pixels": (3, 9, 32, 32), "latents": (4, 3, 16, 16)}
    rec: dict = {"component": "latent-cost"}
    for name, (c, t, h, w) in shapes.items():
        n = t * (h // 2) * (w // 2)
        x, cond = torch.randn(4, n, 128), torch.randn(4, 128)
        with torch.no_grad():
            block(x, cond)
            t0 = time.perf_counter()
            for _ in range(10):
                block(x, cond)
        rec[name] = {"shape": [c, t, h, w], "numbers": c * t * h * w, "tokens": n, "attention_pairs": n * n,
                     "block_ms": round((time.perf_counter() - t0) / 10 * 1000, 2)}
    rec["speedup"] = round(rec["pixels"]["block_ms"] / rec["latents"]["block_ms"], 1)
    rec |= {"threads": threads, "date": datetime.date.today().isoformat()}
    print(json.dumps(rec))
    append_records("latents", [rec])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("parts", nargs="*", help="image-vae and/or latent-cost (default: both)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    a.parts = a.parts or ["image-vae", "latent-cost"]
    unknown = set(a.parts) - {"image-vae", "latent-cost"}
    if unknown:
        p.error(f"unknown part(s) {sorted(unknown)}: choose from image-vae, latent-cost")
    if "image-vae" in a.parts:
        measure_image_vaes(a.threads)
    if "latent-cost" in a.parts:
        measure_latent_cost(a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
