"""Tiny training runs for tests/test_distributed.py, started under torchrun (or alone, as the reference):

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_worker.py MODE OUT STEPS [BATCH]

MODE: regress (a deterministic loss: 2 ranks must equal 1 process on the combined batch), noisy (the loss draws
noise from its generator: resume must be exact), crash (rank 1 raises at its 3rd step), hang (rank 1 stops
answering at its 3rd step). Each rank writes OUT/rank{r}.pt with what it saw and its final weights.
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.elastic.multiprocessing.errors import record

from minidiff import distributed
from minidiff.train import TrainConfig, train


@record
def main(mode: str, out: str, steps: int, batch: int = 8) -> None:
    ctx = distributed.context()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randn(64, 2, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    seen: list[torch.Tensor] = []

    def loss_fn(m, xb, yb, gen):
        seen.append(xb.clone())
        if ctx.rank == 1 and len(seen) == 3:
            if mode == "crash":
                raise RuntimeError("rank 1 failed on purpose")
            if mode == "hang":
                time.sleep(600)
        if mode == "regress":
            return F.mse_loss(m(xb), yb)
        return F.mse_loss(m(xb + 0.1 * torch.randn(xb.shape, generator=gen)), yb)

    config = TrainConfig(steps=steps, batch_size=batch, lr=1e-3, ema_decay=0.9, grad_clip=0.05, seed=3,
                         checkpoint_every=2)
    result = train(model, loss_fn, (x, y), config, checkpoint_path=os.path.join(out, "ckpt.safetensors"),
                   progress=False)
    torch.save({"seen": seen, "state": result.model.state_dict(), "ema": result.ema.state_dict(),
                "losses": result.losses, "world_size": result.world_size},
               os.path.join(out, f"rank{ctx.rank}.pt"))
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *map(int, sys.argv[4:5]))
