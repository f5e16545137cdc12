"""Which process this is in a torchrun launch, read from its environment in one place.

Under `torchrun --nproc-per-node N forumtune train CONFIG` every process runs the same code; rank 0
alone prints and writes the run's files. Outside torchrun there is one process, rank 0 of 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the GPU index on this host

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE_PROCESS = Ranks()


def ranks_from_environment() -> Ranks:
    """The process's place in a torchrun launch (RANK, WORLD_SIZE, LOCAL_RANK); one process otherwise."""
    return Ranks(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def is_main_process() -> bool:
    """False in the other processes of a torchrun launch: rank 0 alone writes the run's files."""
    return ranks_from_environment().is_main
