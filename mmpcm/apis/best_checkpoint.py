"""The checkpoint a training run chose: best on Karpathy val by CIDEr.

:func:`resolve_checkpoint` uses a file as given and turns a work dir into its
best checkpoint (``best_coco-caption_CIDEr_epoch_<N>.pth``); never chosen on
test. ``docs/method.md``, "The checkpoint a run chose".
"""
import glob
import os
import os.path as osp
import re
from typing import Any, NamedTuple, Optional, Union

from mmpcm.utils.cli import UserError

BEST_METRIC = 'coco-caption/CIDEr'
"""``PCMCaptionMetric``'s CIDEr under its default prefix: the checkpoint
choice of every validating config."""

PathLike = Union[str, 'os.PathLike[str]']


class CheckpointNotFoundError(UserError, FileNotFoundError):
    """A work dir holds no single best checkpoint for the metric."""


class ResolvedCheckpoint(NamedTuple):
    """The model file to load, and whether it was chosen from a work dir.

    Attributes:
        path (str): The file.
        work_dir (str, optional): The work dir it was found in, or None when
            the file was given.
        metric (str, optional): The metric it is best by, with ``work_dir``
            (None: the work dir's last checkpoint, see
            :func:`resolve_checkpoint_or_last`).
    """
    path: str
    work_dir: Optional[str] = None
    metric: Optional[str] = None

    def describe(self) -> str:
        """One line naming the file, e.g. for a tool to print."""
        if self.work_dir is None:
            return f'checkpoint: {self.path}'
        if self.metric is None:
            return (f'checkpoint: {self.path} (the last one written in '
                    f'{self.work_dir}, a run that kept no best-by-validation '
                    'checkpoint)')
        return (f'checkpoint: {self.path} (best {self.metric} on validation '
                f'in {self.work_dir})')


def best_checkpoint_prefix(metric: str = BEST_METRIC) -> str:
    """The file-name prefix mmengine's CheckpointHook gives ``metric``'s best.

    Args:
        metric (str): The ``save_best`` key. Defaults to :data:`BEST_METRIC`.

    Returns:
        str: E.g. ``'best_coco-caption_CIDEr_'``.
    """
    return f'best_{metric}_'.replace('/', '_')


def find_best_checkpoint(work_dir: PathLike,
                         metric: str = BEST_METRIC) -> str:
    """The best-by-``metric`` checkpoint mmengine kept in ``work_dir``.

    Args:
        work_dir (str | PathLike): A training run's work dir.
        metric (str): The ``save_best`` key. Defaults to :data:`BEST_METRIC`.

    Returns:
        str: The ``best_<metric>_*.pth`` file.

    Raises:
        CheckpointNotFoundError: If ``work_dir`` does not exist, holds no
            checkpoint at all (a folder that is no training work dir: said
            so, with the releases in it, if any), holds no such checkpoint
            (the best files of other metrics are named, if any), or several
            (runs started afresh in one work dir).
    """
    work_dir = os.fspath(work_dir)
    if not osp.isdir(work_dir):
        raise CheckpointNotFoundError(
            f'{work_dir}: no such work dir; train the config first, or pass '
            'a checkpoint file or the work dir to use')
    prefix = best_checkpoint_prefix(metric)
    found = sorted(glob.glob(osp.join(glob.escape(work_dir),
                                      f'{prefix}*.pth')))
    if len(found) == 1:
        return found[0]
    if found:
        names = ', '.join(osp.basename(p) for p in found)
        raise CheckpointNotFoundError(
            f'{work_dir}: {len(found)} best-{metric} checkpoints ({names}), '
            'left by separate runs in one work dir; pass the one to use')
    if not glob.glob(osp.join(glob.escape(work_dir), '*.pth')):
        models = sorted(osp.basename(p) for p in glob.glob(
            osp.join(glob.escape(work_dir), '*.safetensors')))
        remedy = (f'pass one of its model files ({", ".join(models[:3])}'
                  f'{", ..." if len(models) > 3 else ""})' if models else
                  'train the config first, or pass a checkpoint file (.pth '
                  'or .safetensors)')
        raise CheckpointNotFoundError(
            f'{work_dir}: a folder with no checkpoint (.pth) in it, not the '
            f'work dir of a training run; {remedy}')
    others = sorted((osp.basename(p) for p in glob.glob(
        osp.join(glob.escape(work_dir), '*.pth'))), key=_natural_key)
    latest = osp.join(work_dir, others[-1])
    also = (f' (it has {", ".join(others[-3:])}'
            f'{", ..." if len(others) > 3 else ""})')
    raise CheckpointNotFoundError(
        f'{work_dir}: no best-{metric} checkpoint ({prefix}*.pth){also}; '
        f'pass a checkpoint file (e.g. {latest}), or train with validation '
        '(without --no-validate) to keep a best one')


def _natural_key(name: str) -> list:
    """Sort key that orders ``epoch_2`` before ``epoch_10``."""
    return [int(part) if part.isdigit() else part
            for part in re.split(r'(\d+)', name)]


def save_best_metric(cfg: Any) -> str:
    """The metric a config keeps its best checkpoint by.

    Args:
        cfg (Config | dict, optional): A training config, or None.

    Returns:
        str: ``default_hooks.checkpoint.save_best`` when it names one
        metric, else :data:`BEST_METRIC`.
    """
    hooks = (cfg or {}).get('default_hooks') or {}
    save_best = (hooks.get('checkpoint') or {}).get('save_best')
    if isinstance(save_best, str) and save_best != 'auto':
        return save_best
    return BEST_METRIC


def resolve_checkpoint(model: Optional[PathLike],
                       metric: str = BEST_METRIC,
                       work_dir: Optional[PathLike] = None
                       ) -> ResolvedCheckpoint:
    """A model argument as a file: a work dir becomes its best checkpoint.

    Args:
        model (str | PathLike, optional): A checkpoint or release file (kept
            as given, whether it exists or not: the loader reports that), a
            training work dir, or None for ``work_dir``.
        metric (str): The ``save_best`` key. Defaults to :data:`BEST_METRIC`.
        work_dir (str | PathLike, optional): The work dir to take the best
            checkpoint of when ``model`` is None (a config's). Defaults to
            None.

    Returns:
        ResolvedCheckpoint: The file, and the work dir it came from.

    Raises:
        CheckpointNotFoundError: For a folder that is no work dir with one
            best checkpoint (see :func:`find_best_checkpoint`), or no
            ``model`` and a missing ``work_dir``.
    """
    if model is None:
        if work_dir is None:
            raise ValueError('give a model file, or a work dir')
        model = work_dir
    elif not osp.isdir(model):
        return ResolvedCheckpoint(os.fspath(model))
    model = os.fspath(model)
    return ResolvedCheckpoint(find_best_checkpoint(model, metric), model,
                              metric)


def resolve_checkpoint_or_last(model: Optional[PathLike],
                               metric: str = BEST_METRIC,
                               work_dir: Optional[PathLike] = None
                               ) -> ResolvedCheckpoint:
    """:func:`resolve_checkpoint`, and for a work dir that kept no best
    checkpoint at all (a run trained without validation, as the toy world's
    quick start trains) the checkpoint its ``last_checkpoint`` names.

    Args:
        model (str | PathLike, optional): A checkpoint or release file, a
            work dir, or None for ``work_dir``.
        metric (str): The ``save_best`` key. Defaults to :data:`BEST_METRIC`.
        work_dir (str | PathLike, optional): The work dir when ``model`` is
            None. Defaults to None.

    Returns:
        ResolvedCheckpoint: ``metric`` None when the last checkpoint was
        taken.

    Raises:
        CheckpointNotFoundError: As :func:`resolve_checkpoint`, for a work
            dir with best checkpoints of other metrics, several best ones,
            or no ``last_checkpoint`` naming an existing file.
    """
    try:
        return resolve_checkpoint(model, metric, work_dir)
    except CheckpointNotFoundError:
        model = os.fspath(model if model is not None else work_dir)
        marker = osp.join(model, 'last_checkpoint')
        if (not osp.isdir(model) or not osp.isfile(marker) or glob.glob(
                osp.join(glob.escape(model), 'best_*.pth'))):
            raise
        with open(marker, encoding='utf-8') as f:
            last = f.read().strip()
        if not osp.isabs(last) and not osp.isfile(last):
            last = osp.join(model, osp.basename(last))
        if not osp.isfile(last):
            raise
        return ResolvedCheckpoint(last, model, None)
