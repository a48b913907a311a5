"""The command line: turn prompts into a GIF with the shipped text-to-video model.

    python -m minidiff generate "a red 3 moving left" -o out.gif [--steps 20 --cfg 4 --seed 0]
    minidiff generate "a red 3 moving left" "a blue 7 moving up" -o two.gif

Several prompts are drawn side by side in one GIF. Uses a GPU when there is one (--device to choose).
Exit codes: 0 written, 2 bad input (unknown word, empty prompt, bad option), 1 anything else.
"""

from __future__ import annotations

import argparse
import math
import sys
import time


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minidiff", description="minidiff: the course's command line")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="prompts -> a GIF with the shipped text-to-video MMDiT",
                       description=__doc__.split("\n\n")[0])
    g.add_argument("prompts", nargs="+", help='captions like "a red 3 moving left" (one video each)')
    g.add_argument("-o", "--output", default="out.gif", help="the GIF to write (default: out.gif)")
    g.add_argument("--steps", type=int, default=None, help="Euler steps (default: the model card's, 20)")
    g.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale (default: the card's)")
    g.add_argument("--seed", type=int, default=0, help="the noise seed: the same seed gives the same video")
    g.add_argument("--fps", type=int, default=4, help="frames per second of the GIF")
    g.add_argument("--scale", type=int, default=4, help="each pixel becomes scale x scale (default 4: 128 px)")
    g.add_argument("--model", default="t2v-mmdit", help="the shipped MMDiT to use (data/pretrained/NAME)")
    g.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    return p


def generate(args: argparse.Namespace) -> int:
    from .pipeline import TextToVideo
    from .viz import save_gif

    if args.steps is not None and args.steps <= 0:
        print(f"minidiff: error: --steps must be a positive integer, got {args.steps}", file=sys.stderr)
        return 2
    if args.cfg is not None and not (math.isfinite(args.cfg) and args.cfg >= 0):
        print(f"minidiff: error: --cfg must be a finite number >= 0 (1 = no guidance), got {args.cfg}",
              file=sys.stderr)
        return 2
    if not 1 <= args.fps <= 50:
        print(f"minidiff: error: --fps must be an integer from 1 to 50, got {args.fps}", file=sys.stderr)
        return 2
    if not args.output.lower().endswith(".gif"):
        print(f"minidiff: error: the output must be a .gif file, got {args.output!r}", file=sys.stderr)
        return 2
    try:
        pipe = TextToVideo.from_pretrained(args.model, device=args.device)
        prompts = pipe.check_prompts(args.prompts)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # unknown words, empty prompts, missing model
        print(f"minidiff: error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    videos = pipe(prompts, steps=args.steps, cfg_scale=args.cfg, seed=args.seed)
    try:
        path = save_gif(videos, args.output, fps=args.fps, scale=args.scale)
    except (ValueError, FileNotFoundError) as e:
        print(f"minidiff: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}: {len(prompts)} video(s) of {videos.shape[2]} frames in {time.perf_counter() - t0:.1f} s "
          f"({args.steps or pipe.steps} steps, guidance {pipe.cfg_scale if args.cfg is None else args.cfg}, "
          f"seed {args.seed}, {pipe.device})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "generate":
        return generate(args)
    return 2  # pragma: no cover (argparse rejects unknown commands itself)


if __name__ == "__main__":
    sys.exit(main())
