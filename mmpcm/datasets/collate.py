"""Batch collation for mmpcm data loaders."""
import math
from typing import Any, List, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info

from mmpcm.registry import FUNCTIONS


def _stack(values: List[Any], key: str) -> Any:
    """Stack one input field over the batch: B x (...) -> (B, ...)."""
    if isinstance(values[0], Mapping):
        return _stack_dict(values, key)
    if isinstance(values[0], np.ndarray):
        values = [torch.from_numpy(np.asarray(v)) for v in values]
    if not isinstance(values[0], torch.Tensor):
        return list(values)  # e.g. strings: kept as a list
    first = values[0]
    for i, value in enumerate(values):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f'pcm_collate: {key} is a tensor in sample 0 but '
                            f'{type(value).__name__} in sample {i}')
        if value.shape != first.shape or value.dtype != first.dtype:
            raise ValueError(
                f'pcm_collate: {key} is {first.dtype} {tuple(first.shape)} in '
                f'sample 0 but {value.dtype} {tuple(value.shape)} in sample '
                f'{i}; every sample of a batch must agree')
    if (first.device.type == 'cpu' and first.dtype != torch.bfloat16
            and not any(v.requires_grad for v in values)):
        # numpy's stack: torch's multi-threaded CPU stack of float16 was
        # measured orders of magnitude slower on a 2-core machine.
        out = _batch_tensor(first, len(values))  # (B, ...)
        np.stack([v.numpy() for v in values], out=out.numpy())
        return out
    return torch.stack(values)  # (B, ...)


def _batch_tensor(first: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Empty CPU tensor for a batch of ``first``-like values.

    In a DataLoader worker it is allocated in shared memory, as torch's
    ``default_collate`` does: the batch then travels to the main process
    without the copy into shared memory that pickling a private tensor
    makes (a second pass over 77 MB per batch of 1,024 ViT-B/32 items).
    """
    shape = (batch_size, ) + tuple(first.shape)  # (B, ...)
    if get_worker_info() is None:
        return torch.empty(shape, dtype=first.dtype)
    storage = first.untyped_storage()._new_shared(
        math.prod(shape) * first.element_size())
    return torch.empty(0, dtype=first.dtype).set_(storage).view(shape)


def _stack_dict(values: List[Mapping], key: str) -> dict:
    """Stack every field of dict inputs, checking all samples share keys."""
    keys = list(values[0])
    for i, value in enumerate(values):
        if not isinstance(value, Mapping) or set(value) != set(keys):
            found = sorted(value) if isinstance(value, Mapping) else value
            raise ValueError(f'pcm_collate: {key} has keys {sorted(keys)} in '
                             f'sample 0 but {found} in sample {i}')
    return {k: _stack([v[k] for v in values], f"{key}['{k}']") for k in keys}


@FUNCTIONS.register_module()
def pcm_collate(data_batch: Sequence[dict]) -> dict:
    """Stack the ``inputs`` of a batch; keep ``data_samples`` as a list.

    ``inputs`` may be a tensor (e.g. an image ``(3, H, W)`` -> ``(B, 3, H,
    W)``) or a (nested) dict of tensors (``patch_tokens (N, Dv)`` -> ``(B, N,
    Dv)``); numpy arrays are converted to tensors and other values are kept
    as lists. Use it in every mmpcm data loader:
    ``collate_fn=dict(type='pcm_collate')``.

    Args:
        data_batch (Sequence[dict]): Items with ``inputs`` and, optionally,
            ``data_samples``.

    Returns:
        dict: ``inputs`` stacked along a new first axis, and
        ``data_samples`` (list, or None when no item has one).

    Raises:
        ValueError: If the batch is empty, an item lacks ``inputs``, or a
            field's shape, dtype or keys differ between samples (naming the
            field).
    """
    if len(data_batch) == 0:
        raise ValueError('pcm_collate: got an empty batch')
    for i, item in enumerate(data_batch):
        if not isinstance(item, Mapping) or 'inputs' not in item:
            raise ValueError(f'pcm_collate: sample {i} is not a dict with an '
                             f'"inputs" key: {type(item).__name__}')
    inputs = _stack([item['inputs'] for item in data_batch], 'inputs')
    data_samples = [item.get('data_samples') for item in data_batch]
    if all(sample is None for sample in data_samples):
        data_samples = None
    return dict(inputs=inputs, data_samples=data_samples)
