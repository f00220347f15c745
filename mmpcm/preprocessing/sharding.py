"""Splitting preprocessing work over torchrun ranks, and atomic file writes.

Generation and extraction run as N independent processes (``torchrun
--nproc_per_node N tools/data/...``, or one process per node with ``RANK`` /
``WORLD_SIZE`` set by a scheduler). They never talk to each other: each rank
reads its rank and the world size from the environment, takes a fixed,
deterministic part of the items, and writes only files that no other rank
writes. :func:`get_rank_info` reads the environment, :func:`strided_ids` and
:func:`contiguous_block` split the work (no overlap, no gap), and the
``atomic_*`` helpers write a file completely or not at all (temporary file in
the same folder, fsync, ``os.replace``): a crash never leaves a half-written
file under the final name.
"""
import hashlib
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Any, Callable, IO, Mapping, Optional, Union

import torch

from mmpcm.utils.cli import InputError

PathLike = Union[str, 'os.PathLike[str]']

TMP_TAG = '.tmp-'
"""Marks a temporary file: ``.<final name>.tmp-<pid>``; never read back."""

__all__ = [
    'RankInfo', 'get_rank_info', 'device_for_rank', 'strided_ids',
    'contiguous_block', 'tmp_path_for', 'is_tmp_name', 'remove_tmp_files',
    'atomic_write', 'atomic_write_text', 'atomic_write_json', 'sha256_file',
    'TMP_TAG'
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


# --------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------
def tmp_path_for(path: PathLike) -> str:
    """Temporary sibling of ``path``: ``<dir>/.<name>.tmp-<pid>``."""
    path = os.fspath(path)
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}{TMP_TAG}{os.getpid()}')


def is_tmp_name(name: str) -> bool:
    """Whether a file name is a temporary file of :func:`atomic_write`."""
    return name.startswith('.') and TMP_TAG in name


def remove_tmp_files(folder: PathLike) -> int:
    """Delete the temporary files a crashed writer left in ``folder``.

    Only call it for a folder no other live process writes into.

    Returns:
        int: How many were removed.
    """
    folder = os.fspath(folder)
    if not osp.isdir(folder):
        return 0
    names = [n for n in os.listdir(folder) if is_tmp_name(n)]
    for name in names:
        os.remove(osp.join(folder, name))
    return len(names)


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Write a file completely or not at all.

    ``write(f)`` fills a temporary binary file in the same folder, which is
    fsync'ed and renamed to ``path`` with ``os.replace``. On an error the
    temporary file is removed (a hard crash may leave it: its name marks it,
    see :func:`is_tmp_name`).

    Args:
        path (str | PathLike): The final path.
        write (Callable[[IO[bytes]], Any]): Writes the content.
    """
    path = os.fspath(path)
    tmp = tmp_path_for(path)
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write UTF-8 text atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text.encode('utf-8')))


def atomic_write_json(path: PathLike, data: Any) -> None:
    """Write JSON (indented, UTF-8, trailing newline) atomically."""
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) +
                      '\n')


def sha256_file(path: PathLike, block: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in blocks of ``block`` bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for data in iter(lambda: f.read(block), b''):
            digest.update(data)
    return digest.hexdigest()
