"""Shipped checkpoints: data/pretrained/NAME.safetensors (weights) + NAME.json (the card).

The card holds the model kind and config, the recipe that produced it, its measured metrics, the training
minutes and the commit. Loading validates the config against the weights and never unpickles.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import torch
import torch.nn as nn

from . import checkpoint
from .checks import short
from .models.classifier import ClassifierConfig, DigitClassifier
from .models.dit import DiT, DiTConfig
from .models.mmdit import MMDiT, MMDiTConfig
from .models.text import TinyCLIP, TinyCLIPConfig
from .models.unet import UNet, UNetConfig
from .models.vae import VAEConfig, VideoVAE

ROOT = Path(__file__).resolve().parents[1] / "data" / "pretrained"
KINDS: dict[str, tuple[type, type]] = {
    "unet": (UNetConfig, UNet),
    "dit": (DiTConfig, DiT),
    "vae": (VAEConfig, VideoVAE),
    "tiny-clip": (TinyCLIPConfig, TinyCLIP),
    "digit-classifier": (ClassifierConfig, DigitClassifier),
    "mmdit": (MMDiTConfig, MMDiT),
}


def _commit() -> str:
    """HEAD's hash, with "+uncommitted" when the working tree has changes (the recipe may not be in HEAD yet)."""
    try:
        here = Path(__file__).parent
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True, cwd=here).stdout.strip()
        return head + ("+uncommitted" if dirty else "")
    except Exception:
        return "unknown"


def check_name(name: object) -> str:
    """A model name is a name, not a path: letters, digits, '-', '_' and '.', not starting with '.' (so
    load_pretrained("../elsewhere/x") cannot read outside its folder)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name) or ".." in name:
        raise ValueError(f"a pretrained model name is a plain name like 'ddpm-digits' (letters, digits, '-', '_', "
                         f"'.'; no folders), got {short(name)}; to use another folder pass root=...")
    return name


def save_pretrained(name: str, model: nn.Module, kind: str, card: dict, root: str | Path = ROOT) -> Path:
    """Write NAME.safetensors and NAME.json (atomically); `card` adds recipe, metrics, train_minutes, ..."""
    check_name(name)
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {sorted(KINDS)}")
    root = Path(root)
    full = {"name": name, "kind": kind, "config": model.config.to_dict(), "commit": _commit(), **card}
    checkpoint.save_atomic(str(root / f"{name}.safetensors"), dict(model.state_dict()), {"kind": kind})
    checkpoint.write_json_atomic(root / f"{name}.json", full)
    return root / f"{name}.json"


def load_card(name: str, root: str | Path = ROOT) -> dict:
    """NAME.json as a dict, with a clear error (naming the file) if it is missing, not JSON, or not a model card."""
    check_name(name)
    path = Path(root) / f"{name}.json"
    if not path.exists():
        have = sorted(p.stem for p in Path(root).glob("*.json")) if Path(root).exists() else []
        raise FileNotFoundError(f"no pretrained model {name!r} in {root} (available: {have}); "
                                f"train it with: python -m minidiff.recipes {name} --install")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"the model card {path} is not valid JSON ({e}); restore it from git "
                         f"(git checkout -- {path.name}) or retrain the model") from None
    if not isinstance(card, dict):
        raise ValueError(f"the model card {path} must hold a JSON object {{...}}, got a JSON {type(card).__name__}")
    for key, types in (("kind", str), ("config", dict), ("metrics", dict), ("pipeline", dict)):
        if key in card and not isinstance(card[key], types):
            raise ValueError(f"the model card {path} has a wrongly typed field {key!r}: expected a JSON "
                             f"{'string' if types is str else 'object'}, got {short(card[key])}")
    return card


def update_card(name: str, fields: dict, root: str | Path = ROOT) -> None:
    """Merge `fields` into NAME.json (atomically), e.g. metrics measured by a benchmark after training."""
    card = load_card(name, root)
    card.update(fields)
    checkpoint.write_json_atomic(Path(root) / f"{name}.json", card)


def load_pretrained(name: str, root: str | Path = ROOT, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode, card). Clear errors for a missing/corrupt file or a config that does not match."""
    card = load_card(name, root)
    kind = card.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{name}.json names an unknown model kind {kind!r}; known: {sorted(KINDS)}")
    cfg_cls, model_cls = KINDS[kind]
    if "config" not in card:
        raise ValueError(f"the model card {Path(root) / (name + '.json')} has no 'config'; retrain the model with "
                         f"python -m minidiff.recipes {name} --install")
    try:
        config = cfg_cls.from_dict(card["config"])
        model = model_cls(config)
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{Path(root) / (name + '.json')} has an invalid config for {kind}: {e}") from None
    tensors, _ = checkpoint.load(str(Path(root) / f"{name}.safetensors"))
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [k for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"the weights in {name}.safetensors do not match the config in {name}.json "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}); "
            f"regenerate both with: python -m minidiff.recipes {name}"
        )
    checkpoint.check_finite(tensors, f"{name}.safetensors")
    model.load_state_dict(tensors)
    return model.to(device).eval(), card


def install(name: str, run_dir: str | Path, root: str | Path | None = None) -> None:
    """Copy run_dir/NAME.{safetensors,json} over the shipped root/NAME.* : each is first copied to a temporary
    file next to its target, then renamed over it (weights first, then the card), so the shipped files are never
    half-written and stay as they were if the run's files are missing."""
    import shutil

    root = Path(root) if root is not None else ROOT
    run_dir = Path(run_dir)
    load_pretrained(name, run_dir)  # the new files are complete and consistent, or this raises
    for ext in (".safetensors", ".json"):
        src = run_dir / f"{name}{ext}"
        checkpoint.write_atomic(root / f"{name}{ext}", lambda tmp, src=src: shutil.copyfile(src, tmp), ext)
