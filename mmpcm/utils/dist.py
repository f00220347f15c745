"""Distributed training on machines without CUDA (gloo on CPU processes).

mmengine (every release up to 0.10.7) assumes CUDA in two places of its
PyTorch launcher path: ``_init_dist_pytorch`` calls
``torch.cuda.set_device`` and the Runner hands ``device_ids=[LOCAL_RANK]``
to DDP, which DDP refuses for a CPU module. :func:`patch_cpu_distributed`
adapts the first (:func:`mmpcm.utils.compat.apply_library_fixes` applies it
for those mmengine versions), :func:`adapt_cfg_for_device` the second, so
``tools/dist_train.sh CONFIG N`` also runs N CPU processes (tests use this
with 2).
"""
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.dist import utils as dist_utils

# mmengine's own ``_init_dist_pytorch``, kept by patch_cpu_distributed.
_original_init_dist_pytorch = None


def _init_dist_pytorch_cpu_aware(backend: str, init_backend: str = 'torch',
                                 **kwargs) -> None:
    """mmengine's PyTorch launcher init, with a gloo path without CUDA."""
    if torch.cuda.is_available():
        return _original_init_dist_pytorch(backend, init_backend, **kwargs)
    if backend != 'gloo':
        raise RuntimeError(
            f'Distributed backend {backend!r} needs CUDA, which this machine '
            'lacks; use env_cfg.dist_cfg.backend="gloo" (tools/train.py sets '
            'it when no GPU is found).')
    torch_dist.init_process_group(
        backend='gloo', rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']), **kwargs)


def patch_cpu_distributed() -> None:
    """Let mmengine's PyTorch launcher start gloo groups without CUDA.

    Replaces ``mmengine.dist.utils._init_dist_pytorch`` (mmengine <= 0.10.7
    calls ``torch.cuda.set_device`` there unconditionally) with a version
    that keeps mmengine's own path when CUDA is available and starts a gloo
    group otherwise. Idempotent. Upstream would have to set the CUDA device
    only when CUDA is available.
    """
    global _original_init_dist_pytorch
    if dist_utils._init_dist_pytorch is _init_dist_pytorch_cpu_aware:
        return
    _original_init_dist_pytorch = dist_utils._init_dist_pytorch
    dist_utils._init_dist_pytorch = _init_dist_pytorch_cpu_aware


def adapt_cfg_for_device(cfg: Config) -> None:
    """Make a config's distributed settings fit a machine without CUDA.

    With no CUDA device: gloo instead of NCCL, and DDP without ``device_ids``.
    With CUDA nothing changes.

    Args:
        cfg (Config): The run's config, changed in place.
    """
    if torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False)
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
