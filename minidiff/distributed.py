"""Several processes, one training run: PyTorch's own distributed stack (torchrun + DistributedDataParallel).

    torchrun --standalone --nproc_per_node=2 -m minidiff.recipes flow-digits --steps 2000

torchrun starts N copies of the program and tells each its place in the environment variables RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT. `context()` reads them and joins the process group (gloo on the CPU, nccl on
CUDA GPUs). Without torchrun WORLD_SIZE is unset: one process, and nothing here does anything.

Data parallelism in one equation: with the global batch B split into N equal shards B_r, the gradient of the batch
mean is the mean of the shards' gradients,

    grad (1/|B|) sum_{i in B} l_i  =  (1/N) sum_r grad (1/|B_r|) sum_{i in B_r} l_i,

so N processes that each compute their shard's gradient and average them (DDP's all-reduce during backward) take
exactly the optimiser step one process would take on the whole batch. `train.train` does the rest: the same batch
indices drawn on every rank (each keeps its shard), a different noise seed per rank, the loss averaged across ranks
for the log, the time budget agreed, and only rank 0 writing files and drawing progress bars.
DiT's train.py (facebookresearch/DiT) and Open-Sora's scripts/train.py are built the same way, at scale.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

TIMEOUT_ENV = "MINIDIFF_DIST_TIMEOUT"  # seconds a collective may wait for the other processes (default 600)
DEFAULT_TIMEOUT_S = 600.0


class DistributedError(RuntimeError):
    """Another process of this run crashed or stopped answering, so this one cannot go on."""


@dataclass(frozen=True)
class Context:
    """This process's place in the run: rank r of world_size processes (local_rank on this machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, cards, plots and progress bars; the others only compute."""
        return self.rank == 0

    def device(self, requested: torch.device | str | None = None) -> torch.device:
        """The device this rank trains on: one GPU per process (cuda:LOCAL_RANK) when CUDA is asked for."""
        dev = torch.device(requested) if requested is not None else None
        if dev is not None and dev.type == "cuda" and self.distributed and dev.index is None:
            dev = torch.device("cuda", self.local_rank)
        return dev

    # --- collectives (no-ops in a single process) ---------------------------------------------------------------

    def mean(self, values: torch.Tensor) -> list[float]:
        """The mean over all ranks of each entry of `values` (e.g. the losses since the last log), as floats."""
        t = values.detach().to(torch.float64)
        if not self.distributed:
            return t.tolist()
        t = t.to(_comm_device())
        _collective(lambda: torch.distributed.all_reduce(t), "averaging the loss")
        return (t.cpu() / self.world_size).tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any rank (so all ranks stop at the same step)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
        _collective(lambda: torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX), "agreeing to stop")
        return bool(t.item() > 0)

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of `tensor` (same shape and dtype on each), in rank order."""
        if not self.distributed:
            return [tensor]
        t = tensor.to(_comm_device())
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        _collective(lambda: torch.distributed.all_gather(out, t), "gathering random states")
        return [o.cpu() for o in out]

    def barrier(self) -> None:
        if self.distributed:
            _collective(torch.distributed.barrier, "waiting for the other processes")


def _comm_device() -> torch.device:
    """nccl moves only CUDA tensors; gloo only CPU ones."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def timeout_seconds() -> float:
    """How long a collective waits for the other ranks before failing (MINIDIFF_DIST_TIMEOUT, default 600 s)."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {text!r}")
    return value


def _env_int(name: str) -> int:
    text = os.environ.get(name, "")
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"the environment variable {name}={text!r} is not an integer; start the run with torchrun "
                         "(which sets RANK, WORLD_SIZE and LOCAL_RANK) or unset WORLD_SIZE") from None


def context(backend: str | None = None) -> Context:
    """This process's Context, joining the process group first if torchrun started several processes.

    The backend is nccl when CUDA is available, gloo otherwise (or `backend`). Collectives fail after
    timeout_seconds() instead of waiting forever for a process that died."""
    if "WORLD_SIZE" not in os.environ or _env_int("WORLD_SIZE") <= 1:
        return Context()
    world, rank = _env_int("WORLD_SIZE"), _env_int("RANK")
    local = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} must lie in [0, WORLD_SIZE={world})")
    if not torch.distributed.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed: run without torchrun")
    if not torch.distributed.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        torch.distributed.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_seconds()))
    return Context(rank=rank, world_size=world, local_rank=local)


def is_main() -> bool:
    """Whether this process should write files and print: rank 0, or the only process."""
    return context().is_main


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun run; harmless otherwise)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


_PEER_SIGNS = ("gloo", "nccl", "connection", "timed out", "timeout", "peer", "socket", "broken pipe")


def is_peer_failure(error: BaseException) -> bool:
    """Whether a RuntimeError raised inside a collective means another rank is gone (crashed, killed, hung)."""
    dist_error = getattr(torch.distributed, "DistError", ())
    if dist_error and isinstance(error, dist_error):
        return True
    return isinstance(error, RuntimeError) and any(s in str(error).lower() for s in _PEER_SIGNS)


def peer_failure(error: BaseException, what: str, checkpoint_path: str | None = None) -> DistributedError:
    """The clear error for a collective that failed because another process of the run is gone."""
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else "?"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    resume = (f" The last checkpoint is {checkpoint_path}: run the same torchrun command again to resume from it."
              if checkpoint_path else " Pass a checkpoint path (--checkpoint) to make the next run resumable.")
    return DistributedError(
        f"rank {rank} stopped while {what}: another process of this run crashed or stopped answering "
        f"(its own error is printed above; a hung process is given up on after {timeout_seconds():g} s, "
        f"{TIMEOUT_ENV}). Underlying error: {first}.{resume}")


def raise_peer_failure(error: RuntimeError, what: str, checkpoint_path: str | None = None) -> None:
    """Inside `except RuntimeError`: raise the clear DistributedError if `error` means another rank is gone (crashed,
    killed, hung), else `error` itself."""
    cause = error.__cause__ if isinstance(error, DistributedError) and error.__cause__ else error
    if cause is error and not is_peer_failure(error):
        raise error
    raise peer_failure(cause, what, checkpoint_path) from cause


def _collective(fn, what: str) -> None:
    try:
        fn()
    except RuntimeError as e:
        if is_peer_failure(e):
            raise peer_failure(e, what) from e
        raise


# ------------------------------------------------------------------------------ the glue train() uses under torchrun


def rank_seed(seed: int, rank: int, step: int) -> int:
    """The seed of rank `rank`'s loss generator when a run (re)starts at `step` under torchrun: a hash of the three,
    so no two ranks (and no rank and the shared batch-index generator, seeded `seed`) draw the same noise."""
    return int.from_bytes(hashlib.sha256(f"minidiff-{seed}-{rank}-{step}".encode()).digest()[:8], "little") >> 1


def loss_generator(ctx: Context, batch_generator: torch.Generator, seed: int, step: int,
                   saved: torch.Tensor | None = None) -> torch.Generator:
    """The generator of a rank's loss randomness (t, noise). In one process it is the batch-index generator itself;
    under torchrun each rank has its own: restored from `saved` (every rank's state, from the checkpoint) when the
    run had as many ranks, else seeded with `rank_seed`."""
    if not ctx.distributed:
        return batch_generator
    gen = torch.Generator()
    if saved is not None and saved.shape[0] == ctx.world_size:
        gen.set_state(saved[ctx.rank].clone())  # exact resume
    else:  # a fresh run, or a checkpoint from another number of processes: a new stream per rank
        gen.manual_seed(rank_seed(seed, ctx.rank, step))
    return gen


class LossModule(torch.nn.Module):
    """model + loss_fn as one module, so DDP sees every parameter the loss touches (loss_fns may call
    model.loss(...) or model.encode(...), not only model(...)) and averages their gradients in backward."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        return self.loss_fn(self.model, x, y, generator)


def data_parallel(ctx: Context, model: torch.nn.Module, loss_fn: Callable, device: torch.device) -> Callable:
    """loss(x, y, generator) for one shard: the plain loss_fn in one process, DistributedDataParallel under torchrun
    (whose backward averages the gradients across ranks)."""
    if not ctx.distributed:
        return lambda x, y, g: loss_fn(model, x, y, g)
    from torch.nn.parallel import DistributedDataParallel

    # the U-Net's 1x1 convolutions get weight gradients in channels-last strides; DDP copies them into its
    # all-reduce buffer (correct, a little slower) and would warn about it at every step
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(LossModule(model, loss_fn),
                                   device_ids=[device.index] if device.type == "cuda" else None)
