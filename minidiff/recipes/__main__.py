"""The recipes' command line: train one shipped model, write it to runs/NAME/ (or --out), and with --install replace
the shipped data/pretrained/NAME.* once the new files are complete.

    python -m minidiff.recipes t2v-mmdit [--minutes 30] [--steps N] [--device cuda] [--preset gpu] [--install]

(the full list: python -m minidiff.recipes --help; what each recipe is: minidiff/recipes/__init__.py)
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .. import checkpoint, distributed, recipes
from ..pretrained import ROOT, install, save_pretrained
from ..utils import check_device
from . import (
    PRESETS,
    RecipeRun,
    ddpm_digits,
    digit_classifier,
    dit_digits,
    flow_digits,
    settings,
    t2v_mmdit,
    text_encoder,
    video_vae,
)

# name -> recipe(minutes=, steps=, checkpoint_path=, device=, batch_size=, bf16= [, preset=]) -> RecipeRun
RUNS = {"ddpm-digits": ddpm_digits, "flow-digits": flow_digits, "dit-digits": dit_digits, "video-vae": video_vae,
        "text-encoder": text_encoder, "t2v-mmdit": t2v_mmdit}

RUNS_DIR = Path(__file__).resolve().parents[2] / "runs"  # ignored by git


def _minutes(text: str) -> float:
    """argparse type of --minutes: a finite number of minutes > 0 (NaN would train forever, 0 not at all)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of minutes, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of minutes > 0, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    """argparse type of --steps and --batch-size: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return v


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.recipes", description=recipes.__doc__.split("\n\n")[0])
    p.add_argument("name", choices=["digit-classifier", *RUNS])
    p.add_argument("--minutes", type=_minutes, default=None, help="override the training time budget (minutes > 0)")
    p.add_argument("--steps", type=_positive_int, default=None, help="override the number of optimiser steps")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="override the (global) batch size; under torchrun it must divide by --nproc_per_node")
    p.add_argument("--preset", default="default",
                   help="default (the shipped checkpoint's settings) or gpu (a larger model for one GPU: "
                        f"{', '.join(PRESETS)})")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N or mps (default: the best available; under torchrun each process takes "
                        "cuda:LOCAL_RANK)")
    p.add_argument("--precision", choices=["recipe", "bf16", "fp32"], default="recipe",
                   help="bf16 autocast or fp32 (default: the recipe's, resolved for the device)")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="write a training checkpoint here every few hundred steps and resume from it if it exists "
                        "(an interrupted run continues where it stopped; the time budget restarts)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write NAME.safetensors and NAME.json (default: runs/NAME/)")
    p.add_argument("--install", action="store_true",
                   help="then replace the shipped data/pretrained/NAME.* with the new model (without this flag the "
                        "shipped files are never touched)")
    a = p.parse_args(argv)
    out = Path(a.out) if a.out else RUNS_DIR / a.name
    try:
        ctx = distributed.context()
    except (ValueError, RuntimeError) as e:
        p.error(str(e))
    main = ctx.is_main
    try:  # before training: a run must not fail at its first save, or lose its result at the last
        dev = check_device(a.device)
        if a.preset != "default":
            settings(a.name, a.preset)
        if main:
            checkpoint.check_writable(out / f"{a.name}.json", "the output folder (--out)")
            if a.install:
                checkpoint.check_writable(ROOT / f"{a.name}.json", "the shipped models' folder")
            if a.checkpoint:
                checkpoint.check_writable(a.checkpoint, "--checkpoint")
    except (PermissionError, ValueError) as e:
        p.error(str(e))
    if a.name == "digit-classifier":
        if ctx.distributed:
            p.error("digit-classifier trains in about 2 minutes in one process; run it without torchrun")
        if a.steps or a.batch_size or a.preset != "default" or a.precision != "recipe" or a.minutes:
            p.error("digit-classifier has fixed settings; --minutes, --steps, --batch-size, --preset and "
                    "--precision do not apply to it")
        print(digit_classifier(root=out).card)
    else:
        kw = {"steps": a.steps, "device": dev, "batch_size": a.batch_size,
              "bf16": {"recipe": None, "bf16": True, "fp32": False}[a.precision]}
        if a.name in PRESETS:
            kw["preset"] = a.preset
        try:
            run: RecipeRun = RUNS[a.name](minutes=a.minutes, checkpoint_path=a.checkpoint, **kw)
        except ValueError as e:  # e.g. a batch size that does not divide by the number of processes
            print(f"error: {e}", file=sys.stderr)
            return 2
        if not main:  # rank 0 writes the files; the others are done
            return 0
        if run.result.step == 0:
            print(f"error: the time budget ended before the first training step; nothing was written (give more "
                  f"--minutes than {a.minutes})", file=sys.stderr)
            return 1
        save_pretrained(a.name, run.model, run.kind, run.card, out)
        print({k: v for k, v in run.card.items() if k != "recipe_config"})
    print(f"wrote {out / a.name}.safetensors and .json")
    if a.install:
        install(a.name, out, ROOT)
        print(f"installed them as {ROOT / a.name}.safetensors and .json")
    else:
        print(f"the shipped {ROOT / a.name}.* are unchanged (add --install to replace them)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The CLI, with torchrun's error recording (a failing rank's error appears in torchrun's summary) and the
    process group left at the end."""
    from torch.distributed.elastic.multiprocessing.errors import record

    try:
        return record(_main)(argv)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
