"""Data-parallel training under torchrun: process group, samplers, reductions (entry point: cli.distributed).

Every rank trains on its share of each epoch's seeded order; rank 0 alone logs to MLflow and writes
checkpoints. Without torchrun's environment the same code runs as one process (`DistContext()`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, RandomSampler, Sampler

# The DataLoader's shuffling seed is seed * SEED_STRIDE + epoch, in one process or many.
SEED_STRIDE = 100_003


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job; the defaults describe a plain single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # ranks on this machine: each holds its own in-memory copy of the data

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks (float64 on CPU, so gloo and nccl-with-cpu-tensors agree)."""
        if not self.enabled:
            return [float(v) for v in values]
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self._reduce_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.cpu().tolist()

    def all_gather_object(self, value: Any) -> list[Any]:
        if not self.enabled:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) everywhere: ranks update them on their own data."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)

    def _reduce_device(self) -> str:
        return f"cuda:{self.local_rank}" if dist.get_backend() == "nccl" else "cpu"


def context_from_env() -> DistContext:
    """RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE as torchrun sets them; one process when absent."""
    return DistContext(rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1)),
                       local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                       local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


def init_distributed(device: str) -> tuple[DistContext, str]:
    """Join the process group (nccl on CUDA, else gloo); returns the context and this rank's device."""
    ctx = context_from_env()
    if device.startswith("cuda"):
        device = f"cuda:{ctx.local_rank}"
        torch.cuda.set_device(ctx.local_rank)
    if ctx.enabled and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        # Rank 0 may spend minutes on test evaluation and model logging while the others wait; past this,
        # a rank stuck on a dead peer gives up instead of lingering.
        dist.init_process_group(backend, rank=ctx.rank, world_size=ctx.world_size, timeout=timedelta(minutes=30))
    return ctx, device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def epoch_sampler(dataset: Dataset, seed: int, epoch: int, ctx: DistContext) -> Sampler:
    """The epoch's order comes from (seed, epoch) alone; under DDP each rank takes every world_size-th item.

    With one process this is exactly RandomSampler over torch.randperm, which DistributedSampler also uses,
    so the permutation is the same whatever the world size.
    """
    if not ctx.enabled:
        generator = torch.Generator().manual_seed(seed * SEED_STRIDE + epoch)
        return RandomSampler(dataset, generator=generator)
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=seed * SEED_STRIDE)
    sampler.set_epoch(epoch)
    return sampler


def shard(count: int, ctx: DistContext) -> np.ndarray:
    """This rank's evaluation items: every world_size-th, no padding, so sums over ranks count each once."""
    return np.arange(ctx.rank, count, ctx.world_size)


def per_rank_batch(batch_size: int, ctx: DistContext) -> int:
    """The config's batch size is the global one, so a DDP step averages the same number of questions."""
    from configs.errors import UserError

    if batch_size % ctx.world_size:
        raise UserError(f"train batch_size {batch_size} is not divisible by the {ctx.world_size} processes")
    return batch_size // ctx.world_size


def torchrun_command(config: Path, overrides: Sequence[str] = (), nproc: int = 1, json_out: bool = False, *,
                     nnodes: int = 1, node_rank: int = 0, rdzv_endpoint: str | None = None,
                     rdzv_id: str = "msvqa") -> list[str]:
    """The command `msvqa train CONFIG --nproc N [--nnodes M --node-rank R --rdzv-endpoint HOST:PORT]` runs.

    One node: torchrun `--standalone`. Several: torchrun's c10d rendezvous at `rdzv_endpoint` (the same
    HOST:PORT and `rdzv_id` on every node; the first node to arrive hosts it), so the job spans machines
    and every rank reads the store itself.
    """
    from configs.errors import UserError

    if nnodes < 1 or not 0 <= node_rank < nnodes:
        raise UserError(f"--node-rank {node_rank} must be between 0 and --nnodes {nnodes} - 1")
    if nnodes > 1 and not rdzv_endpoint:
        raise UserError("--rdzv-endpoint HOST:PORT is needed when --nnodes is more than 1")
    command = [sys.executable, "-m", "torch.distributed.run"]
    if nnodes == 1 and rdzv_endpoint is None:
        command += ["--standalone"]
    else:
        command += [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=c10d",
                    f"--rdzv-endpoint={rdzv_endpoint}", f"--rdzv-id={rdzv_id}"]
    command += [f"--nproc_per_node={nproc}", "-m", "cli.distributed", str(config)]
    for override in overrides:
        command += ["--set", override]
    return command + (["--json"] if json_out else [])
