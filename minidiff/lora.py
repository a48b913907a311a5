r"""LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) for fine-tuning a trained model on
a new concept with little data (lesson 09):

    y = W x + b + (alpha / r) B A x,      A: (r, in) small random,  B: (out, r) zeros,  W, b frozen

Only A and B train (r (in + out) numbers per layer instead of in * out); B = 0 at the start, so the adapted model is
exactly the base model until training moves it. `merge_lora` folds (alpha / r) B A into W for sampling at no cost.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .checks import check_int, check_number


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update (alpha / r) B A."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        rank = check_int("rank", rank, low=1, high=min(base.in_features, base.out_features))
        self.base = base.requires_grad_(False)
        self.rank, self.scale = rank, check_number("alpha", alpha if alpha is not None else rank, low=0) / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear's own weights (and peft's lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * (x @ self.lora_A.t() @ self.lora_B.t())


def add_lora(model: nn.Module, rank: int, targets: tuple[str, ...], alpha: float | None = None) -> list[str]:
    """Replace every nn.Linear of `model` whose name ends with one of `targets` (e.g. ("qkv", "proj")) by a LoRALinear
    of that rank, freeze everything else, and return the names replaced. A ValueError if nothing matched."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    targets = (targets,) if isinstance(targets, str) else tuple(targets)  # "qkv" is one name, not three letters
    matches = [(name, m) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and name.split(".")[-1] in targets]
    if not matches:
        linear = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"no nn.Linear named {list(targets)} in {type(model).__name__}; its linear layers are "
                         f"named {linear}")
    model.requires_grad_(False)
    for name, linear in matches:
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        setattr(parent, name.split(".")[-1], LoRALinear(linear, rank, alpha))
    return [name for name, _ in matches]


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRALinear back into a plain nn.Linear with W + (alpha / r) B A (in place; returns the model)."""
    for name, m in list(model.named_modules()):
        if isinstance(m, LoRALinear):
            m.base.weight += m.scale * m.lora_B @ m.lora_A
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.split(".")[-1], m.base)
    return model
