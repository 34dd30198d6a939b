"""Training on several processes: `mespot train` under ``torchrun`` (DistributedDataParallel).

    torchrun --nproc-per-node 2 -m engine.cli train data/annotations.csv --features f/ --method gim ...

The command is the same; ``torchrun`` sets ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` and the
process group starts on first use (gloo on CPUs, NCCL when every process has a GPU).

How the work is split: every process draws the same global batch (the same seeded random
windows), takes its own rows of it (``rank::world``), and `torch.nn.parallel.DistributedDataParallel`
averages the gradients, so one step equals a one-process step on the global batch up to the
loss's batch coupling: a loss that is a mean over samples gives the same gradient; one balanced or
contrasted across the batch (class weights, SupCon, MPLG per batch) sees only its process's rows.
The logged losses are averaged over the processes. Everything else (feature loading, pseudo
labels, operating points, evaluation) runs identically on every process; only rank 0 writes the
run folder and prints (`is_main`). Feature extraction into the cache is done by rank 0 first,
the others wait for it (`main_first`) and read the cache.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from stream.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` group.

    Attributes:
        rank: this process's rank, 0 .. world - 1.
        world: the number of processes.
        backend: the process group's backend ("gloo" or "nccl").
    """

    rank: int
    world: int
    backend: str

    def rows(self, batch_size: int) -> slice:
        """This process's rows of a global batch (every `world`-th, from `rank`).

        Raises:
            ConfigError: the batch does not split evenly (unequal shards would weight samples
                unequally in the averaged gradient).
        """
        if batch_size % self.world:
            raise ConfigError(
                f"distributed training: batch_size {batch_size} must be a multiple of the "
                f"{self.world} processes (each takes an equal share of the global batch)"
            )
        return slice(self.rank, None, self.world)

    def shard(
        self,
        motion: torch.Tensor,
        geometry: torch.Tensor,
        valid: torch.Tensor,
        targets: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """This process's rows of a global batch (inputs and targets alike)."""
        rows = self.rows(len(motion))
        return motion[rows], geometry[rows], valid[rows], {k: v[rows] for k, v in targets.items()}

    def wrap(self, network: torch.nn.Module) -> torch.nn.Module:
        """The network wrapped for gradient averaging (a method may leave parts unused in a step)."""
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(network, find_unused_parameters=True)

    def mean(self, values: Mapping[str, float]) -> dict[str, float]:
        """Each value averaged over the processes (the logged losses)."""
        import torch.distributed as dist

        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist(), strict=True)}

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> Distributed | None:
    """The ``torchrun`` group this process belongs to, starting it on first call; None when the
    process runs alone (no ``WORLD_SIZE`` above 1 in the environment).

    Raises:
        ConfigError: the environment names a group that cannot be joined.
    """
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError as exc:
        raise ConfigError(f"distributed training: bad RANK / WORLD_SIZE in the environment: {exc}") from exc
    if world <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("distributed training: this torch build has no torch.distributed")
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        try:
            dist.init_process_group(backend)
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(f"distributed training: cannot join the process group: {exc}") from exc
        log.info("distributed training: rank %d of %d (%s)", rank, world, backend)
    return Distributed(dist.get_rank(), dist.get_world_size(), dist.get_backend())


def is_main() -> bool:
    """True on rank 0 of a group, and for a process running alone."""
    group = current()
    return group is None or group.is_main


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (writes a shared cache), the others after it (read it)."""
    group = current()
    if group is not None and not group.is_main:
        group.barrier()
    try:
        yield
    finally:
        if group is not None and group.is_main:
            group.barrier()


def shutdown() -> None:
    """Leave the process group, if one was joined: all ranks together, since a gloo rank that
    tears down while a peer is still closing its connections can abort the peer ("terminate
    called without an active exception", seen once in CI's two-process test)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def describe(group: Distributed | None) -> dict[str, Any] | None:
    """What a run folder records about its processes (None: one process)."""
    return None if group is None else {"world": group.world, "backend": group.backend}
