"""Data-parallel ``encode`` under ``torchrun``: one process per CPU socket share or per GPU.

``torchrun --nproc-per-node P -m relstitch encode ...`` starts P processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`from_env` joins them into a process group (gloo on CPU,
nccl on GPU). :func:`relstitch.streaming.encode_to_file` then gives each rank a contiguous shard of
whole batches and every rank writes its rows into the one temporary file rank 0 created, so the
output is byte for byte the file a single process writes. The ranks must share a filesystem (one
node, or a shared mount across nodes).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Group:
    """This process's place in a data-parallel run (rank 0 of 1 when not under torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    distributed: bool = False
    process_group: Any = None  # a subgroup's torch handle (:func:`split`); None: every process
    leader: int = 0  # the global rank of this group's rank 0 (collectives name their source globally)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a small picklable object such as a file name)."""
        if not self.distributed:
            return value
        import torch.distributed as dist  # noqa: PLC0415

        box = [value]
        dist.broadcast_object_list(box, src=self.leader, group=self.process_group)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist  # noqa: PLC0415

            dist.barrier(group=self.process_group)

    def first_error(self, error: str | None) -> str | None:
        """Every rank's ``error`` (None: it went well) gathered: the lowest rank's error, on every rank.

        Where ranks share one piece of work, each says how its part went before any of them commits, so
        one that failed stops them all with its reason instead of leaving the others at a barrier.
        """
        if not self.distributed:
            return error
        import torch.distributed as dist  # noqa: PLC0415

        errors: list[str | None] = [None] * self.world
        dist.all_gather_object(errors, error, group=self.process_group)
        return next((e for e in errors if e is not None), None)

    def close(self) -> None:
        """Leave the process group (torch warns at exit if it is left open)."""
        if self.distributed:
            import torch.distributed as dist  # noqa: PLC0415

            if dist.is_initialized():
                dist.destroy_process_group()


def split(group: Group, members: Sequence[Sequence[int]]) -> Group:
    """This rank's subgroup among ``members`` (disjoint lists of global ranks covering every rank).

    Collective: every rank of ``group`` calls it with the same ``members``, and torch creates each
    subgroup of two or more on all ranks in the same order. A rank alone in its list gets a group of one.
    """
    mine = next(list(m) for m in members if group.rank in m)
    handle = None
    if group.distributed:
        import torch.distributed as dist  # noqa: PLC0415

        for ranks in members:
            if len(ranks) > 1:
                created = dist.new_group(ranks=list(ranks))
                if group.rank in ranks:
                    handle = created
    return Group(
        rank=mine.index(group.rank),
        world=len(mine),
        local_rank=group.local_rank,
        distributed=group.distributed and len(mine) > 1,
        process_group=handle,
        leader=mine[0],
    )


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(128 + signum)


def single() -> Group:
    """A group of one: the ordinary single-process run."""
    return Group()


def launched() -> bool:
    """True when started by torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def from_env(device_type: str = "cpu") -> Group:
    """Join the torchrun process group: gloo for CPU work, nccl for CUDA (one GPU per local rank)."""
    if not launched():
        return single()
    import torch  # noqa: PLC0415
    import torch.distributed as dist  # noqa: PLC0415

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    # torchrun stops the other workers with SIGTERM when one fails: unless a handler is already set (the
    # CLI sets one), turn it into SystemExit so the temporary output is removed on the way out.
    if (
        signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)
        and threading.current_thread() is threading.main_thread()
    ):
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return Group(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, distributed=True)
