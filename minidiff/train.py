"""One training loop for every lesson: AdamW, EMA of the weights, gradient clipping, tqdm, a time/step budget,
atomic safetensors checkpoints and exact resume — in one process, or in several under torchrun (DDP).

    result = train(model, loss_fn, (images, labels), TrainConfig(steps=3000, max_minutes=5))

`loss_fn(model, x, y, generator) -> scalar` computes the objective for one batch (e.g. DDPM's L_simple); all its
randomness must come from `generator` (a CPU generator: draw on the CPU, then move to the device), so that a run
resumed from a checkpoint continues exactly where it stopped.

Started by `torchrun --nproc_per_node=N` (see distributed.py), the same call trains data-parallel: batch_size stays
the global batch, every rank draws the same batch indices and keeps its 1/N shard, the model is wrapped in
DistributedDataParallel (gradients averaged across ranks in backward), each rank's loss randomness has its own seed,
the logged loss is the mean over ranks, the time budget ends all ranks at the same step, and only rank 0 writes the
checkpoint (holding every rank's random state, so resume is exact) and draws the progress bar.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from . import checkpoint, distributed
from .checks import check_float_tensor, check_int, check_number
from .utils import bf16_is_fast


@dataclass
class TrainConfig:
    """Everything one training run needs besides the model, the loss and the data."""

    steps: int = 1000  # total optimiser steps (a resumed run continues up to this number)
    batch_size: int = 128  # the global batch: under torchrun each of N processes takes batch_size / N of it
    lr: float = 3e-4
    lr_schedule: str = "constant"  # or "cosine": from lr down to lr * final_lr_fraction at `steps`
    warmup_steps: int = 0  # linear warm-up from 0 to lr over the first warmup_steps steps
    final_lr_fraction: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    max_minutes: float | None = None  # stop early after this much wall time (the learner's budget)
    seed: int = 0
    bf16: bool | None = None  # bfloat16 autocast; None = use it where it is fast (AMX CPUs, GPUs)
    checkpoint_path: str | None = None
    checkpoint_every: int = 500
    log_every: int = 25
    live_plot: bool = False  # redraw a loss curve in the notebook every `plot_every` steps
    plot_every: int = 200


@dataclass
class TrainResult:
    """The trained model, its EMA copy (sample from this one), the loss per step, and how the run ended."""

    model: nn.Module
    ema: nn.Module
    losses: list[float] = field(default_factory=list)
    step: int = 0
    minutes: float = 0.0
    stopped_by: str = "steps"
    world_size: int = 1  # processes that trained it (torchrun --nproc_per_node); 1 without torchrun
    device: str = "cpu"


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate for optimiser step `step` (0-based): linear warm-up, then constant or cosine decay."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule != "cosine":
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {config.lr_schedule!r}")
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    low = config.lr * config.final_lr_fraction
    return low + (config.lr - low) * 0.5 * (1 + math.cos(math.pi * progress))


def check_config(config: TrainConfig) -> None:
    """Every TrainConfig field a number of the right kind and range, before any training: a NaN time budget would
    train forever, a zero checkpoint interval crash at the first step, a NaN learning rate waste a run."""
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    c = config
    for name in ("steps", "batch_size", "checkpoint_every", "log_every", "plot_every"):
        check_int(f"TrainConfig.{name}", getattr(c, name), low=1)
    check_int("TrainConfig.warmup_steps", c.warmup_steps, low=0)
    check_int("TrainConfig.seed", c.seed)
    check_number("TrainConfig.lr", c.lr, low=0, low_open=True)
    check_number("TrainConfig.final_lr_fraction", c.final_lr_fraction, 0, 1)
    check_number("TrainConfig.weight_decay", c.weight_decay, low=0)
    check_number("TrainConfig.ema_decay", c.ema_decay, 0, 1)
    check_number("TrainConfig.grad_clip", c.grad_clip or 0.0, low=0)
    if c.max_minutes is not None:
        check_number("TrainConfig.max_minutes (the time budget)", c.max_minutes, low=0, low_open=True)
    if not (isinstance(c.adam_betas, (tuple, list)) and len(c.adam_betas) == 2):
        raise ValueError(f"TrainConfig.adam_betas must be two numbers in [0, 1), got {c.adam_betas!r}")
    for i, b in enumerate(c.adam_betas):
        check_number(f"TrainConfig.adam_betas[{i}]", b, 0, 1, high_open=True)
    if c.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"TrainConfig.lr_schedule must be 'constant' or 'cosine', got {c.lr_schedule!r}")


def check_data(data: object) -> tuple[torch.Tensor, torch.Tensor | None]:
    """data = (x, y or None): x a non-empty float tensor without NaN, y one label per input."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError("data must be a pair (x, y) of tensors, or (x, None) without labels; got "
                         f"{type(data).__name__}{f' of length {len(data)}' if isinstance(data, (tuple, list)) else ''}")
    x, y = data
    if isinstance(x, torch.Tensor) and x.ndim >= 1 and x.shape[0] == 0:
        raise ValueError("the dataset is empty (x has 0 examples): give at least one training example")
    check_float_tensor("data x", x, finite=True)
    if y is not None:
        if not isinstance(y, torch.Tensor):
            raise ValueError(f"data y must be a tensor of labels or None, got {type(y).__name__}")
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(f"data has {x.shape[0]} inputs but labels of shape {tuple(y.shape)}: give one label per "
                             "input")
    return x, y


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite."""


class DivergingLoss(UserWarning):
    """The loss grew by orders of magnitude (DIVERGENCE_FACTOR over its best running mean)."""


DIVERGENCE_FACTOR = 100.0


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta.get("scalars", {}).items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(path: str, model: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer, step: int,
                    generator: torch.Generator, losses: Sequence[float], config: TrainConfig,
                    extra: dict | None = None, rank_rngs: Sequence[torch.Tensor] | None = None) -> None:
    """Model, EMA, optimizer state, step, RNG state and loss history in one atomic safetensors file
    (+ under torchrun, `rank_rngs`: each rank's loss generator state, in rank order)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    ot, ometa = _optimizer_tensors(opt)
    tensors.update(ot)
    tensors["rng"] = generator.get_state()
    if rank_rngs is not None:
        tensors["rank_rngs"] = torch.stack(list(rank_rngs))
    tensors["losses"] = torch.tensor(list(losses), dtype=torch.float64)
    meta = {"step": step, "optimizer": ometa, "train_config": asdict(config),
            "world_size": len(rank_rngs) if rank_rngs is not None else 1, **(extra or {})}
    checkpoint.save_atomic(path, tensors, meta)


def rank_seed(seed: int, rank: int, step: int) -> int:
    """The seed of rank `rank`'s loss generator when a run (re)starts at `step` under torchrun: a hash of the three,
    so no two ranks (and no rank and the shared batch-index generator, seeded `seed`) draw the same noise."""
    return int.from_bytes(hashlib.sha256(f"minidiff-{seed}-{rank}-{step}".encode()).digest()[:8], "little") >> 1


class _LossModule(nn.Module):
    """model + loss_fn as one module, so DDP sees every parameter the loss touches (loss_fns may call
    model.loss(...) or model.encode(...), not only model(...)) and averages their gradients in backward."""

    def __init__(self, model: nn.Module, loss_fn: Callable) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        return self.loss_fn(self.model, x, y, generator)


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(pm.detach(), 1 - decay)
        for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
            be.copy_(bm)


class LivePlot:
    """A loss curve redrawn in place in a notebook (a display handle, so the progress bar above it stays)."""

    def __init__(self) -> None:
        self.handle = None

    def __call__(self, losses: list[float], step: int) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        fig, ax = plt.subplots(figsize=(6, 2.8))
        ax.plot(losses, alpha=0.3, label="loss")
        k = max(1, len(losses) // 50)
        smooth = [sum(losses[max(0, i - k):i + 1]) / len(losses[max(0, i - k):i + 1]) for i in range(len(losses))]
        ax.plot(smooth, label="running mean")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"training loss (step {step})")
        ax.legend()
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor | None, torch.Generator], torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor | None],
    config: TrainConfig,
    device: torch.device | str | None = None,
    resume: bool = True,
    progress: bool = True,
    callback: Callable[[int, nn.Module], None] | None = None,
    callback_every: int = 0,
) -> TrainResult:
    """Train `model` on `data` = (x, y or None) with minibatches drawn uniformly at random.

    If `config.checkpoint_path` exists and `resume`, training continues from it (same step count, optimizer, EMA,
    random state); checkpoints are written every `checkpoint_every` steps and at the end. Returns the trained model,
    its EMA copy (use that one for sampling) and the loss history. Interrupting it (Ctrl-C, the notebook's stop
    button) ends training cleanly: the checkpoint is written and the result so far is returned.
    `callback(step, ema)` runs every `callback_every` steps on the main process (e.g. to measure a curve); its time
    counts neither toward the time budget nor toward the minutes reported.
    Under torchrun it trains data-parallel (see the module docstring); every rank returns the same model.
    """
    from tqdm.auto import tqdm

    check_config(config)
    if not isinstance(model, nn.Module) or not any(True for _ in model.parameters()):
        raise ValueError(f"model must be a torch.nn.Module with parameters, got {type(model).__name__}")
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be a function loss_fn(model, x, y, generator), got {type(loss_fn).__name__}")
    ctx = distributed.context()
    if config.batch_size % ctx.world_size:
        raise ValueError(f"TrainConfig.batch_size {config.batch_size} (the global batch) must be divisible by the "
                         f"{ctx.world_size} processes torchrun started: choose a multiple of {ctx.world_size} or "
                         "another --nproc_per_node")
    device = ctx.device(device) or next(model.parameters()).device
    x_all, y_all = check_data(data)
    path = config.checkpoint_path
    if path and ctx.is_main:  # fail now, not at the first save after hours of training
        checkpoint.check_writable(path, "checkpoint_path")
    model.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    learning_rate(config, 0)  # validates the schedule
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                            betas=tuple(config.adam_betas))
    gen = torch.Generator().manual_seed(config.seed)  # batch indices: the same on every rank
    losses: list[float] = []
    step = 0
    rank_rngs = None
    ctx.barrier()  # rank 0's check above, and any checkpoint it wrote, come before the others read
    if path and resume and os.path.exists(path):
        tensors, meta = checkpoint.load(path)
        if "optimizer" not in meta or "step" not in meta or "rng" not in tensors or "losses" not in tensors:
            raise ValueError(f"{path} is not a training checkpoint (it has no optimizer state, step or random state; "
                             "a model saved with save_pretrained cannot be resumed): delete it or choose another "
                             "checkpoint_path")
        checkpoint.check_finite({k: v for k, v in tensors.items() if k != "losses"}, path)
        try:
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        except RuntimeError as e:
            raise ValueError(
                f"the checkpoint {path} was written for a different model ({str(e).splitlines()[0]}); "
                "delete it, choose another checkpoint_path, or pass resume=False"
            ) from None
        _load_optimizer(opt, tensors, meta["optimizer"])
        gen.set_state(tensors["rng"])
        losses = tensors["losses"].tolist()
        step = int(meta["step"])
        rank_rngs = tensors.get("rank_rngs")
    # each rank's loss randomness (t, noise): in one process the same generator as the indices (as it always was)
    noise_gen = gen
    if ctx.distributed:
        noise_gen = torch.Generator()
        if rank_rngs is not None and rank_rngs.shape[0] == ctx.world_size:
            noise_gen.set_state(rank_rngs[ctx.rank].clone())  # exact resume
        else:  # a fresh run, or a checkpoint from another number of processes: a new stream per rank
            noise_gen.manual_seed(rank_seed(config.seed, ctx.rank, step))
    x_all = x_all.to(device)
    y_all = y_all.to(device) if y_all is not None else None
    n = x_all.shape[0]
    shard = config.batch_size // ctx.world_size
    lo = ctx.rank * shard
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        step_fn: nn.Module | Callable = DistributedDataParallel(
            _LossModule(model, loss_fn), device_ids=[device.index] if device.type == "cuda" else None)
        # the U-Net's 1x1 convolutions get weight gradients in channels-last strides; DDP copies them into its
        # all-reduce buffer (correct, a little slower) and would warn about it at every step
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    else:
        def step_fn(xb, yb, g):
            return loss_fn(model, xb, yb, g)

    def save() -> None:
        states = ctx.gather(noise_gen.get_state()) if ctx.distributed else None  # a collective: every rank calls it
        if ctx.is_main:
            save_checkpoint(path, model, ema, opt, step, gen, losses, config, rank_rngs=states)

    start = time.perf_counter()
    stopped_by = "steps"
    live_plot = LivePlot() if config.live_plot and ctx.is_main else None
    use_bf16 = bf16_is_fast(device) if config.bf16 is None else config.bf16
    budget = f" (stops after {config.max_minutes:g} min)" if config.max_minutes is not None else ""
    procs = f" on {ctx.world_size} processes" if ctx.distributed else ""
    bar = tqdm(total=config.steps, initial=step, desc="training" + procs + budget,
               disable=not progress or not ctx.is_main)
    best_window, warned = None, False
    try:
        while step < config.steps:
            time_up = config.max_minutes is not None and (time.perf_counter() - start) / 60 >= config.max_minutes
            if ctx.any(time_up):  # every rank stops at the same step, whichever clock ran out first
                stopped_by = "time"
                break
            for group in opt.param_groups:
                group["lr"] = learning_rate(config, step)
            idx = torch.randint(0, n, (config.batch_size,), generator=gen)[lo:lo + shard].to(device)
            xb, yb = x_all[idx], (y_all[idx] if y_all is not None else None)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = step_fn(xb, yb, noise_gen)
            value = ctx.mean(loss.detach().item())  # every rank sees the same value, so all raise together
            if not math.isfinite(value):
                raise NonFiniteLoss(
                    f"the loss became {value} at step {step + 1}; lower the learning rate (now {config.lr}) or check "
                    "the data for NaNs" + (f"; the last good checkpoint is {path}" if path else "")
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()  # under DDP this also averages the gradients across ranks
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            _ema_update(ema, model, config.ema_decay)
            losses.append(value)
            step += 1
            bar.update(1)
            if step % config.log_every == 0:
                window = sum(losses[-config.log_every:]) / config.log_every
                if best_window is None or window < best_window:
                    best_window = window
                elif not warned and best_window > 0 and window > DIVERGENCE_FACTOR * best_window:
                    warned = True
                    message = (f"the loss grew from {best_window:.3g} to {window:.3g} (mean of {config.log_every} "
                               f"steps, at step {step}): training is diverging; lower the learning rate (now "
                               f"{config.lr:g}) or clip gradients (grad_clip)")
                    if ctx.is_main:
                        warnings.warn(message, DivergingLoss, stacklevel=2)
                        if progress:
                            tqdm.write("warning: " + message)
                info = {"loss": f"{window:.4f}"}
                if config.max_minutes is not None:  # the time budget, not the step count, ends these runs
                    left = max(0.0, config.max_minutes * 60 - (time.perf_counter() - start))
                    info["time_left"] = f"{int(left // 60)}:{int(left % 60):02d}"
                bar.set_postfix(info)
            if live_plot is not None and step % config.plot_every == 0:
                live_plot(losses, step)
            if path and step % config.checkpoint_every == 0:
                save()
            if callback is not None and callback_every and step % callback_every == 0 and ctx.is_main:
                paused = time.perf_counter()
                callback(step, ema)
                start += time.perf_counter() - paused  # a measurement is not training time
    except KeyboardInterrupt:  # a learner stopped the cell: keep what was trained
        stopped_by = "interrupted"
    except RuntimeError as e:  # under torchrun: another rank crashed or hung -> say so, instead of torch's message
        if not ctx.distributed or isinstance(e, NonFiniteLoss):
            raise
        cause = e.__cause__ if isinstance(e, distributed.DistributedError) and e.__cause__ else e
        if cause is e and not distributed.is_peer_failure(e):
            raise
        raise distributed.peer_failure(cause, f"training step {step + 1}", path) from cause
    bar.close()
    if path:
        if stopped_by == "interrupted" and ctx.distributed:
            # the ranks may have stopped at different points, so no collective now: rank 0 keeps its weights; the
            # ranks' noise streams restart from (seed, rank, step) on resume
            if ctx.is_main:
                save_checkpoint(path, model, ema, opt, step, gen, losses, config)
        else:
            save()
            ctx.barrier()  # no rank returns before the checkpoint exists
    model.eval()
    return TrainResult(model, ema, losses, step, (time.perf_counter() - start) / 60, stopped_by,
                       world_size=ctx.world_size, device=str(device))
