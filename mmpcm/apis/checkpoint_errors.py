"""Name the checkpoint file in errors raised while a Runner loads it."""
from contextlib import contextmanager
from typing import Iterator, Optional

from mmengine.runner import Runner, find_latest_checkpoint

from mmpcm.models.utils.errors import CheckpointMismatchError


def checkpoint_in_use(runner: Runner) -> Optional[str]:
    """The file ``runner.load_or_resume()`` loads (its own rule)."""
    if runner._resume and runner._load_from is None:
        return find_latest_checkpoint(runner.work_dir)
    return runner._load_from


@contextmanager
def naming_checkpoint(runner: Runner) -> Iterator[None]:
    """Re-raise :class:`CheckpointMismatchError` with the file name in front.

    Args:
        runner (Runner): The runner about to train or test.
    """
    try:
        yield
    except CheckpointMismatchError as err:
        raise type(err)(f'{checkpoint_in_use(runner)}: {err}') from err
