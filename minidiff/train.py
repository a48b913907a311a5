"""One training loop for every lesson: AdamW, EMA of the weights, gradient clipping, tqdm, a time/step budget,
atomic safetensors checkpoints and exact resume — in one process, or in several under torchrun (DDP).

    result = train(model, loss_fn, (images, labels), TrainConfig(steps=3000, max_minutes=5))
    result = train(..., checkpoint_path="runs/mine.safetensors")     # resumable: run the same call again

`train` is the loop alone; around it, in this file, the set-up checks (`_check_run`), the run's checkpoint
(`save_checkpoint` / `load_checkpoint`) and the log (`TrainLog`: progress bar, loss history, time budget, warnings);
the optimizer's file format is in checkpoint.py and the data-parallel glue in distributed.py.

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

import contextlib
import copy
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
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
    checkpoint_every: int = 500  # steps between checkpoints (where they go is train()'s checkpoint_path)
    log_every: int = 25
    live_plot: bool = False  # redraw a loss curve in the notebook every `plot_every` steps
    plot_every: int = 200

    def to_dict(self) -> dict:
        return asdict(self)


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
    images_seen: int = 0  # training examples drawn: steps x the global batch (a budget a project can check)


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

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor | None, torch.Generator], torch.Tensor]


# ------------------------------------------------------------------------------------------------------ the loop


def train(model: nn.Module, loss_fn: LossFn, data: tuple[torch.Tensor, torch.Tensor | None], config: TrainConfig,
          device: torch.device | str | None = None, checkpoint_path: str | None = None, resume: bool = True,
          progress: bool = True, callback: Callable[[int, nn.Module], None] | None = None, callback_every: int = 0
          ) -> TrainResult:
    """Train `model` on `data` = (x, y or None) with minibatches drawn uniformly at random; returns the model, its EMA
    copy (sample from that one) and the loss history.

    With a `checkpoint_path`, a checkpoint is written every `config.checkpoint_every` steps and at the end; if it
    exists (and `resume`), training continues from it exactly. Interrupting it (Ctrl-C, the notebook's stop button)
    ends training cleanly: the checkpoint is written, the result so far returned. `callback(step, ema)` runs every
    `callback_every` steps on the main process (e.g. to measure a curve); its time is not training time.
    Under torchrun it trains data-parallel (see the module docstring); every rank returns the same model.
    """
    ctx = distributed.context()
    device, (x_all, y_all) = _check_run(model, loss_fn, data, config, ctx, device, checkpoint_path)
    model.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                            betas=tuple(config.adam_betas))
    gen = torch.Generator().manual_seed(config.seed)  # batch indices: the same on every rank
    ctx.barrier()  # rank 0's checks, and any checkpoint it wrote, come before the others read
    step, losses, saved_rngs = load_checkpoint(checkpoint_path if resume else None, model, ema, opt, gen)
    noise_gen = distributed.loss_generator(ctx, gen, config.seed, step, saved_rngs)
    loss_step = distributed.data_parallel(ctx, model, loss_fn, device)
    x_all, y_all = x_all.to(device), (y_all.to(device) if y_all is not None else None)
    shard = config.batch_size // ctx.world_size
    lo = ctx.rank * shard
    use_bf16 = bf16_is_fast(device) if config.bf16 is None else config.bf16
    log = TrainLog(config, ctx, losses, step, progress, checkpoint_path)

    def save(final: bool = False) -> None:
        # interrupted under torchrun, the ranks may have stopped at different points: no collective, rank 0 keeps its
        # weights, and the ranks' noise streams restart from (seed, rank, step) on resume
        alone = final and stopped_by == "interrupted" and ctx.distributed
        states = ctx.gather(noise_gen.get_state()) if ctx.distributed and not alone else None  # a collective
        if ctx.is_main:
            save_checkpoint(checkpoint_path, model, ema, opt, step, gen, log.losses, config, rank_rngs=states)
        if final and not alone:
            ctx.barrier()  # no rank returns before the checkpoint exists

    stopped_by = "steps"
    try:
        while step < config.steps:
            if ctx.any(log.time_up()):  # every rank stops at the same step, whichever clock ran out first
                stopped_by = "time"
                break
            for group in opt.param_groups:
                group["lr"] = learning_rate(config, step)
            idx = torch.randint(0, x_all.shape[0], (config.batch_size,), generator=gen)[lo:lo + shard].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = loss_step(x_all[idx], y_all[idx] if y_all is not None else None, noise_gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # under DDP this also averages the gradients across ranks
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            ema_update(ema, model, config.ema_decay)
            step += 1
            log.add(loss, step)
            if checkpoint_path and step % config.checkpoint_every == 0:
                log.flush()  # a checkpoint never holds weights after a non-finite loss
                save()
            if callback is not None and callback_every and step % callback_every == 0 and ctx.is_main:
                with log.paused():  # a measurement is not training time
                    callback(step, ema)
        log.flush()
    except KeyboardInterrupt:  # a learner stopped the cell: keep what was trained
        stopped_by = "interrupted"
        log.flush(across_ranks=False)  # the ranks may have stopped at different steps
    except RuntimeError as e:  # under torchrun: another rank crashed or hung -> say so, instead of torch's message
        if not ctx.distributed or isinstance(e, NonFiniteLoss):
            raise
        distributed.raise_peer_failure(e, f"training step {step + 1}", checkpoint_path)
    log.close()
    if checkpoint_path:
        save(final=True)
    model.eval()
    return TrainResult(model, ema, log.losses, step, log.minutes(), stopped_by, world_size=ctx.world_size,
                       device=str(device), images_seen=step * config.batch_size)


# ----------------------------------------------------------------------------------------- set-up and checkpoints


def _check_run(model: nn.Module, loss_fn: LossFn, data: object, config: TrainConfig, ctx: distributed.Context,
               device: torch.device | str | None, checkpoint_path: str | None
               ) -> tuple[torch.device, tuple[torch.Tensor, torch.Tensor | None]]:
    """Everything train() is given, checked before any work: (the device to train on, (x, y))."""
    check_config(config)
    if not isinstance(model, nn.Module) or not any(True for _ in model.parameters()):
        raise ValueError(f"model must be a torch.nn.Module with parameters, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"no parameter of the {type(model).__name__} requires a gradient, so there is nothing to "
                         "train: call model.requires_grad_(True), or add trainable adapters (lora.add_lora)")
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be a function loss_fn(model, x, y, generator), got {type(loss_fn).__name__}")
    if config.batch_size % ctx.world_size:
        raise ValueError(f"TrainConfig.batch_size {config.batch_size} (the global batch) must be divisible by the "
                         f"{ctx.world_size} processes torchrun started: choose a multiple of {ctx.world_size} or "
                         "another --nproc_per_node")
    data = check_data(data)
    if checkpoint_path and ctx.is_main:  # fail now, not at the first save after hours of training
        checkpoint.check_writable(checkpoint_path, "checkpoint_path")
    return ctx.device(device) or next(model.parameters()).device, data


def save_checkpoint(path: str, model: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer, step: int,
                    generator: torch.Generator, losses: Sequence[float], config: TrainConfig,
                    extra: dict | None = None, rank_rngs: Sequence[torch.Tensor] | None = None) -> None:
    """Model, EMA, optimizer state, step, RNG state and loss history in one atomic safetensors file
    (+ under torchrun, `rank_rngs`: each rank's loss generator state, in rank order)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    opt_tensors, opt_meta = checkpoint.optimizer_tensors(opt)
    tensors.update(opt_tensors)
    tensors["rng"] = generator.get_state()
    if rank_rngs is not None:
        tensors["rank_rngs"] = torch.stack(list(rank_rngs))
    tensors["losses"] = torch.tensor(list(losses), dtype=torch.float64)
    meta = {"step": step, "optimizer": opt_meta, "train_config": asdict(config),
            "world_size": len(rank_rngs) if rank_rngs is not None else 1, **(extra or {})}
    checkpoint.save_atomic(path, tensors, meta)


def load_checkpoint(path: str | None, model: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer,
                    generator: torch.Generator) -> tuple[int, list[float], torch.Tensor | None]:
    """Restore a run written by `save_checkpoint` into model, ema, opt and generator; returns (step, losses, every
    rank's loss-generator state or None), or (0, [], None) to start afresh when there is no file at `path`."""
    if not path or not os.path.exists(path):
        return 0, [], None
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
        raise ValueError(f"the checkpoint {path} was written for a different model ({str(e).splitlines()[0]}); "
                         "delete it, choose another checkpoint_path, or pass resume=False") from None
    checkpoint.load_optimizer(opt, tensors, meta["optimizer"])
    generator.set_state(tensors["rng"])
    return int(meta["step"]), tensors["losses"].tolist(), tensors.get("rank_rngs")


def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta (buffers copied)."""
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(pm.detach(), 1 - decay)
        for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
            be.copy_(bm)


# ------------------------------------------------------------------------------------------------------ logging


class TrainLog:
    """The loss history, the progress bar, the time budget and the warnings of one run.

    Each step's loss stays on the device until the next log line (every `log_every` steps, before a checkpoint, at
    the end): reading it back with .item() every step would wait for the device every step, as DiT's and nanoGPT's
    loops avoid. Then the losses are averaged over the ranks, checked (a non-finite loss stops the run and names its
    step) and the running mean is compared with its best (a loss grown DIVERGENCE_FACTOR-fold warns once)."""

    def __init__(self, config: TrainConfig, ctx: distributed.Context, losses: list[float], step: int,
                 progress: bool, checkpoint_path: str | None) -> None:
        from tqdm.auto import tqdm

        self.config, self.ctx, self.losses, self.path, self.progress = config, ctx, losses, checkpoint_path, progress
        self.pending: list[torch.Tensor] = []
        self.best, self.warned = None, False
        self.live_plot = None
        if config.live_plot and ctx.is_main:
            from .viz import LivePlot

            self.live_plot = LivePlot()
        budget = f" (stops after {config.max_minutes:g} min)" if config.max_minutes is not None else ""
        procs = f" on {ctx.world_size} processes" if ctx.distributed else ""
        self.bar = tqdm(total=config.steps, initial=step, desc="training" + procs + budget,
                        disable=not progress or not ctx.is_main)
        self.start = time.perf_counter()

    def minutes(self) -> float:
        return (time.perf_counter() - self.start) / 60

    def time_up(self) -> bool:
        return self.config.max_minutes is not None and self.minutes() >= self.config.max_minutes

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside does not count as training time."""
        paused = time.perf_counter()
        yield
        self.start += time.perf_counter() - paused

    def add(self, loss: torch.Tensor, step: int) -> None:
        """Record step `step`'s loss; every `log_every` steps write the log line (and redraw the live plot)."""
        self.pending.append(loss.detach())
        self.bar.update(1)
        c = self.config
        if step % c.log_every == 0 or (c.live_plot and step % c.plot_every == 0):  # the same steps on every rank
            self.flush()
        if step % c.log_every == 0:
            self._log_line(step)
        if self.live_plot is not None and step % c.plot_every == 0:
            self.live_plot(self.losses, step)

    def flush(self, across_ranks: bool = True) -> None:
        """Read the pending losses back (one device sync), averaged over the ranks (a collective: every rank calls it
        at the same step, unless `across_ranks` is False); raise on a non-finite one."""
        if not self.pending:
            return
        values = torch.stack(self.pending).float()
        # averaged, every rank sees the same values, so all raise together
        values = self.ctx.mean(values) if across_ranks else values.double().tolist()
        first = len(self.losses) + 1
        self.pending = []
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise NonFiniteLoss(
                    f"the loss became {value} at step {first + i}; lower the learning rate (now {self.config.lr}) or "
                    "check the data for NaNs" + (f"; the last good checkpoint is {self.path}" if self.path else ""))
        self.losses.extend(values)

    def _log_line(self, step: int) -> None:
        from tqdm.auto import tqdm

        c = self.config
        window = sum(self.losses[-c.log_every:]) / c.log_every
        if self.best is None or window < self.best:
            self.best = window
        elif not self.warned and self.best > 0 and window > DIVERGENCE_FACTOR * self.best:
            self.warned = True
            message = (f"the loss grew from {self.best:.3g} to {window:.3g} (mean of {c.log_every} steps, at step "
                       f"{step}): training is diverging; lower the learning rate (now {c.lr:g}) or clip gradients "
                       "(grad_clip)")
            if self.ctx.is_main:
                warnings.warn(message, DivergingLoss, stacklevel=3)
                if self.progress:
                    tqdm.write("warning: " + message)
        info = {"loss": f"{window:.4f}"}
        if c.max_minutes is not None:  # the time budget, not the step count, ends these runs
            left = max(0.0, c.max_minutes * 60 - (time.perf_counter() - self.start))
            info["time_left"] = f"{int(left // 60)}:{int(left % 60):02d}"
        self.bar.set_postfix(info)

    def close(self) -> None:
        self.bar.close()
