"""Loading a diffusers text-to-image pipeline and its speed-only settings.

diffusers is imported only here, inside the functions that need it
(:func:`~mmpcm.preprocessing.generation.deps.require`).
"""
import os
import os.path as osp
from typing import Any, Callable, Optional, Tuple, Union

import torch

from .config import (DEFAULT_COMPILE_MODE, DEFAULT_MODEL, GenerationConfig,
                     check_compile_mode)
from .deps import require

__all__ = [
    'resolve_model_source', 'resolve_dtype', 'load_pipeline',
    'apply_speed_settings', 'describe_speed'
]


def _looks_like_path(model: str) -> bool:
    """Whether ``model`` is meant as a local path rather than a hub id."""
    return (osp.isabs(model) or model.startswith(('.', '~'))
            or model.count('/') != 1 or model.endswith('/')
            or (os.sep != '/' and os.sep in model))


def resolve_model_source(model: str) -> Tuple[str, bool]:
    """Check a model argument before any work is done.

    Args:
        model (str): diffusers pipeline folder or Hugging Face Hub id
            (``owner/name``).

    Returns:
        tuple[str, bool]: The absolute folder (or the hub id) and whether it
        is a local folder.

    Raises:
        FileNotFoundError: If ``model`` is a path (absolute, relative with
            ``./``, or not of the form ``owner/name``) that does not exist,
            or a folder without ``model_index.json``.
    """
    path = osp.abspath(osp.expanduser(model))
    if osp.isdir(path):
        if not osp.isfile(osp.join(path, 'model_index.json')):
            raise FileNotFoundError(
                f'model folder {path} has no model_index.json: expected a '
                'diffusers pipeline folder (as written by save_pretrained)')
        return path, True
    if _looks_like_path(model):
        raise FileNotFoundError(
            f'model folder {path} does not exist (given as {model!r}); '
            'expected a diffusers pipeline folder with model_index.json, or '
            'a Hugging Face Hub id like '
            f'{DEFAULT_MODEL!r}')
    return model, False


def resolve_dtype(dtype: str, device: torch.device) -> str:
    if dtype == 'auto':
        return 'float16' if device.type == 'cuda' else 'float32'
    return dtype


def _scheduler_class(name: str) -> type:
    """The diffusers scheduler class called ``name``."""
    diffusers = require('diffusers')
    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type)
            and issubclass(cls, diffusers.SchedulerMixin)):
        known = sorted(n for n in dir(diffusers) if n.endswith('Scheduler'))
        raise ValueError(f'unknown diffusers scheduler {name!r}; known: '
                         f'{", ".join(known)}')
    return cls


def load_pipeline(model: str,
                  dtype: str = 'float32',
                  device: str = 'cpu',
                  scheduler: Optional[str] = None,
                  channels_last: bool = False,
                  compile_unet: bool = False,
                  compile_mode: Optional[str] = DEFAULT_COMPILE_MODE,
                  compile_backend: Union[str, Callable] = 'inductor') -> Any:
    """Load a text-to-image pipeline (``DiffusionPipeline.from_pretrained``).

    Args:
        model (str): Local pipeline folder or hub id
            (:func:`resolve_model_source` checks it first).
        dtype (str): ``'float16'``, ``'bfloat16'`` or ``'float32'``.
            Defaults to 'float32'.
        device (str | torch.device): Defaults to 'cpu'.
        scheduler (str, optional): Replace the scheduler by this diffusers
            scheduler class, built from the pipeline's scheduler config.
            Defaults to None.
        channels_last (bool): Put the UNet and VAE in channels_last memory
            format (:func:`apply_speed_settings`). Defaults to False.
        compile_unet (bool): Compile the UNet with ``torch.compile``
            (:func:`apply_speed_settings`). Defaults to False.
        compile_mode (str, optional): ``torch.compile`` mode; None for
            torch's default. Defaults to :data:`DEFAULT_COMPILE_MODE`.
        compile_backend (str | Callable): ``torch.compile`` backend.
            Defaults to 'inductor'.

    Returns:
        diffusers.DiffusionPipeline: The pipeline, on ``device``, with its
        progress bar off and the speed settings applied.

    Raises:
        FileNotFoundError: If the model folder is missing, or a hub id
            cannot be loaded (offline and not cached).
        ValueError: If ``channels_last`` or ``compile_unet`` is asked of a
            pipeline without a UNet, or ``compile_mode`` is unknown.
    """
    DiffusionPipeline = require('diffusers').DiffusionPipeline
    if compile_unet:  # fail before loading
        check_compile_mode(compile_mode)
    source, is_local = resolve_model_source(model)
    scheduler_cls = _scheduler_class(scheduler) if scheduler else None
    try:
        pipe = DiffusionPipeline.from_pretrained(
            source, dtype=getattr(torch, dtype))
    except OSError as err:
        if is_local:
            raise
        raise FileNotFoundError(
            f'{model!r} is not a local folder ({osp.abspath(model)} does not '
            'exist) and could not be loaded as a Hugging Face Hub id '
            f'(offline and not cached?): {err}') from err
    if scheduler_cls is not None:
        pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    return apply_speed_settings(pipe, channels_last, compile_unet,
                                compile_mode, compile_backend)


def _is_compiled(module: torch.nn.Module) -> bool:
    """Whether ``module`` is compiled in place or a ``torch.compile``
    wrapper."""
    is_compiled_module = require(
        'diffusers.utils.torch_utils').is_compiled_module
    return (getattr(module, '_compiled_call_impl', None) is not None
            or is_compiled_module(module))


def apply_speed_settings(
        pipe: Any,
        channels_last: bool = False,
        compile_unet: bool = False,
        compile_mode: Optional[str] = DEFAULT_COMPILE_MODE,
        compile_backend: Union[str, Callable] = 'inductor') -> Any:
    """Apply the speed-only settings to a UNet pipeline, in place.

    The single implementation behind :func:`load_pipeline`,
    ``tools/data/generate_images.py --channels-last --compile-unet`` and the
    rows of ``benchmarks/generate_speed.py``. Both settings keep the
    arithmetic (another memory layout, fused kernels), so images change by
    rounding at most; they are not recorded in ``generation_meta.json``.
    A setting that is False is left as the pipeline has it (nothing is
    undone), and an already compiled UNet is not compiled again, so
    applying settings twice is harmless.

    Args:
        pipe (DiffusionPipeline): A pipeline with a ``unet`` module (e.g.
            ``StableDiffusionPipeline``); its ``vae``, if any, is included
            in ``channels_last``.
        channels_last (bool): ``module.to(memory_format=torch.
            channels_last)`` on the UNet and the VAE: their 4-D (conv)
            weights become NHWC. Defaults to False.
        compile_unet (bool): Compile the UNet in place
            (``pipe.unet.compile(...)``, i.e. ``torch.compile`` of its
            call; ``pipe.unet`` stays a ``UNet2DConditionModel``, so
            ``pipe.to`` and its config work as before). Compilation happens
            at the first call and again for a new batch size. Defaults to
            False.
        compile_mode (str, optional): ``torch.compile`` mode; None for
            torch's default. Defaults to :data:`DEFAULT_COMPILE_MODE`
            ('max-autotune-no-cudagraphs').
        compile_backend (str | Callable): ``torch.compile`` backend
            (``'eager'`` only traces: for tests). Defaults to 'inductor'.

    Returns:
        DiffusionPipeline: ``pipe``.

    Raises:
        ValueError: If a setting is asked of a pipeline whose ``unet`` is
            missing or not a ``torch.nn.Module``, or ``compile_mode`` is
            unknown.
    """
    if not (channels_last or compile_unet):
        return pipe
    unet = getattr(pipe, 'unet', None)
    if not isinstance(unet, torch.nn.Module):
        asked = ' and '.join(n for n, on in (('channels_last', channels_last),
                                             ('compile_unet', compile_unet))
                             if on)
        found = ('no `unet` attribute' if not hasattr(pipe, 'unet') else
                 f'`unet` = {type(unet).__name__}')
        raise ValueError(
            f'{asked} asked of {type(pipe).__name__}, which has {found}: '
            'expected a UNet-based diffusers pipeline (such as '
            'StableDiffusionPipeline) whose `unet` is a torch.nn.Module')
    if compile_unet:
        check_compile_mode(compile_mode)
    if channels_last:
        unet.to(memory_format=torch.channels_last)
        vae = getattr(pipe, 'vae', None)
        if isinstance(vae, torch.nn.Module):
            vae.to(memory_format=torch.channels_last)
    if compile_unet and not _is_compiled(unet):
        unet.compile(mode=compile_mode, backend=compile_backend)
    return pipe


def describe_speed(config: GenerationConfig) -> str:
    """The speed settings of ``config`` for the log."""
    parts = ['channels_last'] if config.channels_last else []
    if config.compile_unet:
        backend = getattr(config.compile_backend, '__name__',
                          config.compile_backend)
        parts.append(f'compiled UNet (mode {config.compile_mode}, backend '
                     f'{backend})')
    return ', '.join(parts) or 'none'
