"""Errors raised when a checkpoint does not fit the model built from a config."""
import re
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from mmpcm.utils.cli import InputError, UserError

# State a module checks itself, with a more specific message: the head's word
# vocabulary (PCMCaptionHead) and the neck's concept table (PCMNeck).
_SELF_CHECKED = ('vocab_bytes', 'concept_embeds')


class CheckpointMismatchError(UserError, ValueError):
    """A checkpoint's state disagrees with the model built from the config.

    Raised while loading state (vocabulary, concept table); the entry points
    re-raise it with the checkpoint's file name in front
    (:func:`mmpcm.apis.naming_checkpoint`).
    """


class ConfigMismatchError(CheckpointMismatchError, InputError):
    """A checkpoint's tensors do not fit the model its config builds.

    One line naming both files and summarising the disagreement, e.g.
    ``epoch_12.pth: does not fit configs/pcm/x.py: 12 tensors differ in
    shape (first: head.word_embed.weight [1000, 512] in the checkpoint vs
    [1200, 512] in the model); pass the config the checkpoint was trained
    with``. It names its file already, so
    :func:`mmpcm.apis.naming_checkpoint` passes it on unchanged.

    Args:
        path (str): The checkpoint.
        problem (str): ``'does not fit <config>: <summary>'``.
        remedy (str): What to do.
    """


def _shape(tensor: torch.Tensor) -> str:
    return '[' + ', '.join(str(d) for d in tensor.shape) + ']'


def _count(items: Sequence, what: str) -> str:
    return f'{len(items)} {what if len(items) != 1 else what[:-1]}'


def _revise(keys: Iterable[str],
            revise_keys: Sequence[Tuple[str, str]]) -> List[str]:
    out = []
    for key in keys:
        for pattern, replacement in revise_keys:
            key = re.sub(pattern, replacement, key)
        out.append(key)
    return out


def state_dict_mismatch(
        model_state: Mapping[str, torch.Tensor],
        state_dict: Mapping[str, torch.Tensor],
        revise_keys: Sequence[Tuple[str, str]] = ((r'^module\.', ''), )
) -> Optional[str]:
    """Summarise how a checkpoint's state dict disagrees with a model's.

    Not counted: BatchNorm's ``num_batches_tracked``; model tensors with no
    elements (a table the model adopts from the checkpoint, such as
    ``PCMNeck``'s concept table when built without a concept file); and
    state a module checks itself with a more specific message (the head's
    ``vocab_bytes``, the neck's ``concept_embeds``). When the word
    vocabularies differ, None is returned: the head's own check then names
    the first differing word, and the shapes that follow the vocabulary
    size are no news.

    Args:
        model_state (Mapping[str, torch.Tensor]): ``model.state_dict()``.
        state_dict (Mapping[str, torch.Tensor]): The checkpoint's.
        revise_keys (Sequence[tuple[str, str]]): ``(pattern, replacement)``
            applied to the checkpoint's keys, as mmengine's loader does.
            Defaults to stripping a DDP ``module.`` prefix.

    Returns:
        str, optional: E.g. ``'12 tensors differ in shape (first:
        head.word_embed.weight [1000, 512] in the checkpoint vs [1200, 512]
        in the model), 2 tensors of the model missing from the checkpoint
        (first: neck.norm.bias)'``; None when the state fits.
    """
    theirs = dict(zip(_revise(state_dict, revise_keys), state_dict.values()))
    for key, ours in model_state.items():
        if (key.endswith('vocab_bytes') and key in theirs
                and not torch.equal(theirs[key].cpu(), ours.cpu())):
            return None
    shapes, missing = [], []
    for key, ours in model_state.items():
        if key not in theirs:
            if 'num_batches_tracked' not in key:
                missing.append(key)
            continue
        mine = theirs[key]
        if (not isinstance(mine, torch.Tensor) or ours.numel() == 0
                or key.endswith(_SELF_CHECKED)):
            continue
        if mine.shape != ours.shape:
            shapes.append((key, mine, ours))
    unexpected = [k for k in theirs if k not in model_state]
    parts = []
    if shapes:
        key, mine, ours = shapes[0]
        verb = 'differ' if len(shapes) != 1 else 'differs'
        parts.append(f'{_count(shapes, "tensors")} {verb} in shape (first: '
                     f'{key} {_shape(mine)} in the checkpoint vs '
                     f'{_shape(ours)} in the model)')
    if missing:
        parts.append(f'{_count(missing, "tensors")} of the model missing '
                     f'from the checkpoint (first: {missing[0]})')
    if unexpected:
        parts.append(f'{_count(unexpected, "tensors")} of the checkpoint not '
                     f'in the model (first: {unexpected[0]})')
    return ', '.join(parts) or None


def check_state_dict_fits(
        model: torch.nn.Module,
        state_dict: Mapping[str, torch.Tensor],
        checkpoint: str,
        config: str,
        remedy: str = 'pass the config the checkpoint was trained with',
        revise_keys: Sequence[Tuple[str, str]] = ((r'^module\.', ''), )
) -> None:
    """Refuse a state dict that does not fit ``model``, in one line.

    Args:
        model (torch.nn.Module): The model built from ``config``.
        state_dict (Mapping[str, torch.Tensor]): The checkpoint's weights.
        checkpoint (str): The checkpoint's file name, for the message.
        config (str): The config's file name (or a phrase such as ``'the
            config stored in epoch_12.pth'``), for the message.
        remedy (str): What to do. Defaults to passing the training config.
        revise_keys (Sequence[tuple[str, str]]): See
            :func:`state_dict_mismatch`.

    Raises:
        ConfigMismatchError: With :func:`state_dict_mismatch`'s summary.
    """
    summary = state_dict_mismatch(model.state_dict(), state_dict,
                                  revise_keys)
    if summary is not None:
        raise ConfigMismatchError(checkpoint,
                                  f'does not fit {config}: {summary}',
                                  remedy)
