"""What the samplers' and the training loop's own code costs, apart from the network: values read back from the
device per step (each one a sync on a GPU: the CPU waits for the device to finish), and the time per sample and per
training step on this CPU. Records go to benchmarks/results/loop_overhead.json.

    python benchmarks/loop_overhead.py [--label NAME] [--repeats 3]

A read is any .item(), .tolist(), float(), int(), bool() on a tensor made while the sampler or the loop runs
(the network's own reads, e.g. the U-Net's label range check, included; Adam's CPU step counter excluded). Times are
the minimum of `repeats` runs; compare two versions of the code only in the same session, one after the other
(PYTHONPATH=/other/checkout python benchmarks/loop_overhead.py --label before).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def count_reads(fn, exclude: tuple[str, ...] = ("torch/optim",)) -> int:
    """How many tensor values `fn()` reads back into Python."""
    n = [0]
    names = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__")
    real = {k: getattr(torch.Tensor, k) for k in names}

    def wrap(k):
        def read(self, *a, **kw):
            if not any(e in traceback.extract_stack(limit=3)[0].filename for e in exclude):
                n[0] += 1
            return real[k](self, *a, **kw)
        return read

    for k in names:
        setattr(torch.Tensor, k, wrap(k))
    try:
        fn()
    finally:
        for k in names:
            setattr(torch.Tensor, k, real[k])
    return n[0]


def best_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", default="current")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    import minidiff
    from minidiff import ddim, ddpm, flow
    from minidiff.pretrained import load_pretrained
    from minidiff.schedules import make_schedule
    from minidiff.train import TrainConfig, train

    unet, _ = load_pretrained("ddpm-digits")
    fm, _ = load_pretrained("flow-digits")
    schedule, y = make_schedule("cosine", 1000), torch.tensor([3, 1, 4, 1])
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    runs = {
        "ddpm_1000": (1000, lambda: ddpm.p_sample_loop(unet, schedule, (4, 1, 16, 16), cond={"y": y}, generator=g(),
                                                       progress=False)),
        "ddim_50": (50, lambda: ddim.ddim_sample(unet, schedule, (4, 1, 16, 16), steps=50, cond={"y": y},
                                                 generator=g(), progress=False)),
        "euler_20": (20, lambda: flow.euler_sample(fm, (4, 1, 16, 16), steps=20, cond={"y": y}, generator=g(),
                                                   progress=False)),
    }
    x, labels = torch.randn(512, 1, 16, 16).clamp(-1, 1), torch.randint(0, 10, (512,))
    loss = getattr(flow, "flow_loss_fn", None)
    if loss is None:  # older checkouts kept the loss adapters in recipes
        from minidiff.recipes import flow_loss_fn as loss
    steps = 100

    def training():
        train(load_pretrained("flow-digits")[0].train(), loss(10, 0.1), (x, labels),
              TrainConfig(steps=steps, batch_size=128, lr=1e-4, bf16=False, log_every=25), progress=False)

    rec = {"label": a.label, "package": str(Path(minidiff.__file__).parent), "threads": a.threads,
           "date": datetime.date.today().isoformat()}
    for name, (n_steps, fn) in runs.items():
        rec[f"{name}_reads_per_step"] = round(count_reads(fn) / n_steps, 3)
        rec[f"{name}_seconds_batch4"] = round(best_seconds(fn, a.repeats), 3)
    rec["train_reads_per_step"] = round(count_reads(training) / steps, 3)
    rec["train_steps_per_second"] = round(steps / best_seconds(training, a.repeats), 2)
    print(rec)
    from _results import append_records

    append_records("loop_overhead", [rec])
    return 0


if __name__ == "__main__":
    sys.exit(main())
