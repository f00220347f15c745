"""Splitting preprocessing work over torchrun ranks.

Generation and extraction run as N independent processes (``torchrun
--nproc_per_node N tools/data/...``, or one process per node with ``RANK`` /
``WORLD_SIZE`` set by a scheduler). They never talk to each other: each rank
reads its rank and the world size from the environment, takes a fixed,
deterministic part of the items, and writes only files that no other rank
writes. :func:`get_rank_info` reads the environment, :func:`strided_ids` and
:func:`contiguous_block` split the work (no overlap, no gap). Each rank
writes its files with :mod:`mmpcm.utils.fileio`'s atomic writes.
"""
import os
from dataclasses import dataclass
from typing import Mapping, Optional

import torch

from mmpcm.utils.cli import InputError

__all__ = [
    'RankInfo', 'get_rank_info', 'device_for_rank', 'strided_ids',
    'contiguous_block'
]


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in a multi-process run.

    Args:
        rank (int): Global rank, ``0 <= rank < world_size``. Defaults to 0.
        world_size (int): Number of processes. Defaults to 1.
        local_rank (int): Rank on this node (picks ``cuda:local_rank``).
            Defaults to 0.
    """
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f'WORLD_SIZE must be >= 1, got {self.world_size}')
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f'RANK must be in [0, {self.world_size}), got '
                             f'{self.rank}')
        if self.local_rank < 0:
            raise ValueError(f'LOCAL_RANK must be >= 0, got {self.local_rank}')

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(env: Mapping[str, str], name: str) -> Optional[int]:
    """Read an integer environment variable (None when unset or empty)."""
    value = env.get(name, '').strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InputError(
            name, f'environment variable is {value!r}, not an integer',
            'set it to an integer, as torchrun does, or unset it') from None


def get_rank_info(env: Optional[Mapping[str, str]] = None) -> RankInfo:
    """Read rank, world size and local rank from torchrun's variables.

    ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` as torchrun sets them. With only
    ``LOCAL_RANK`` (single node) the rank is the local rank; with nothing set
    the process is rank 0 of 1.

    Args:
        env (Mapping[str, str], optional): Defaults to ``os.environ``.

    Returns:
        RankInfo: This process's place.

    Raises:
        InputError: On a non-integer value, or a rank outside the world (a
            ``ValueError``, naming the environment variable).
    """
    env = os.environ if env is None else env
    rank, world = _env_int(env, 'RANK'), _env_int(env, 'WORLD_SIZE')
    local = _env_int(env, 'LOCAL_RANK')
    if local is not None and local < 0:
        raise InputError('LOCAL_RANK', f'is {local}, but must be >= 0',
                         'set it as torchrun does, or unset it')
    if rank is None:
        rank = local or 0
    if world is None:
        if rank:
            raise InputError(
                'WORLD_SIZE', f'environment variable not set, but RANK={rank} '
                'is', 'set both, as torchrun does, or unset RANK')
        world = 1
    both = 'set 0 <= RANK < WORLD_SIZE, as torchrun does'
    if world < 1:
        raise InputError('WORLD_SIZE', f'is {world}, but must be >= 1', both)
    if not 0 <= rank < world:
        raise InputError(
            'RANK', f'is {rank}, but RANK must be in [0, {world}) since '
            f'WORLD_SIZE={world}', both)
    return RankInfo(rank=rank, world_size=world,
                    local_rank=rank if local is None else local)


def device_for_rank(info: RankInfo,
                    device: Optional[str] = None) -> torch.device:
    """The device this rank computes on.

    Args:
        info (RankInfo): This process's place.
        device (str, optional): An explicit device (``'cpu'``, ``'cuda:3'``)
            wins. Defaults to None: ``cuda:LOCAL_RANK`` when CUDA is present,
            else CPU.

    Returns:
        torch.device: The device.
    """
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        index = info.local_rank % torch.cuda.device_count()
        return torch.device('cuda', index)
    return torch.device('cpu')


def strided_ids(num: int, info: RankInfo) -> range:
    """Ids ``i`` in ``[0, num)`` with ``i % world_size == rank``."""
    return range(info.rank, num, info.world_size)


def contiguous_block(num: int, info: RankInfo) -> range:
    """This rank's contiguous block of ``[0, num)`` (sizes differ by <= 1)."""
    start = num * info.rank // info.world_size
    stop = num * (info.rank + 1) // info.world_size
    return range(start, stop)
