"""Fixes for breakages between today's releases of mmpcm's dependencies.

Each fix lives here, once, and is applied by :func:`apply_compat_patches`, which
``import mmpcm`` (and ``mmpcm.registry``) runs before anything imports
``mmpretrain.models`` or ``mmpretrain.datasets``.
"""
import sys
import warnings

_APPLIED = False


def disable_mmpretrain_multimodal() -> None:
    """Keep mmpretrain importable beside transformers 5.x.

    mmpretrain 1.2 imports its BLIP/OFA code whenever transformers is
    installed; with transformers 5.x that import dies (``TypeError: NoneType
    takes no arguments``), which breaks ``import mmpretrain.models`` and with
    it every config using ``default_scope='mmpretrain'``. mmpcm needs none of
    those models, so the multimodal switch is turned off before mmpretrain
    reads it. ``MultiModalDataPreprocessor`` stays available; mmpretrain's
    own BLIP/OFA classes become placeholders that raise when built.

    Raises:
        RuntimeError: If ``mmpretrain.models`` or ``mmpretrain.datasets`` was
            imported with the switch on before this ran.
    """
    from mmpretrain.utils import dependency
    if not dependency.WITH_MULTIMODAL:
        return
    early = [m for m in ('mmpretrain.models', 'mmpretrain.datasets')
             if m in sys.modules]
    if early:
        raise RuntimeError(
            f'{", ".join(early)} was imported before mmpcm. Import mmpcm '
            '(or list it in custom_imports) before mmpretrain.models and '
            'mmpretrain.datasets so that mmpcm can keep mmpretrain '
            'importable beside transformers 5.x.')
    dependency.WITH_MULTIMODAL = False


def use_allowlisted_checkpoint_loader() -> None:
    """Let mmengine load its own checkpoints under torch >= 2.6, safely.

    torch >= 2.6 defaults ``torch.load(weights_only=True)``; mmengine 0.10.7
    loads local checkpoints without the flag, so resume, ``load_from`` and
    ``load_checkpoint`` fail on the pickled ``HistoryBuffer``. This registers
    :func:`mmpcm.utils.checkpoint.load_from_local_safe` for local paths: it
    keeps ``weights_only=True`` and allows only what an mmengine checkpoint
    holds, refusing any other pickled object.
    """
    from mmpcm.utils.checkpoint import register_local_checkpoint_loader
    register_local_checkpoint_loader()


def make_mmengine_autocast_compilable() -> None:
    """Keep mmengine's AMP context traceable by ``torch.compile``.

    mmengine's ``autocast``, which ``AmpOptimWrapper.optim_context`` enters in
    every train step, compares torch's version with ``digit_version`` on each
    call, and ``digit_version`` parses the strings with ``packaging``. With
    mmengine's ``compile=True`` that parse runs inside the compiled train step,
    and torch 2.11's dynamo fails on ``packaging``'s ``Version`` with
    ``InternalTorchDynamoError: AttributeError:
    'UserDefinedExceptionObjectVariable' object has no attribute
    'call_setattr'``, so the compiled fast recipe died on its first step. The
    strings compared are constants: they are parsed once here, and the
    ``digit_version`` that ``mmengine.runner.amp`` calls looks them up
    (others are still parsed).
    """
    from mmengine.runner import amp
    from mmengine.utils import digit_version
    from mmengine.utils.dl_utils import TORCH_VERSION
    if getattr(amp.digit_version, '_mmpcm_constant', False):
        return
    parsed = {version: digit_version(version)
              for version in (TORCH_VERSION, '1.5.0', '1.10.0')}

    def constant_digit_version(version_str: str, length: int = 4) -> tuple:
        if length == 4 and version_str in parsed:
            return parsed[version_str]
        return digit_version(version_str, length)

    constant_digit_version._mmpcm_constant = True
    amp.digit_version = constant_digit_version


def apply_compat_patches() -> None:
    """Apply every compatibility fix once (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    disable_mmpretrain_multimodal()
    # mmpretrain imports mmcv.cnn.bricks.transformer, which warns that
    # mmcv-lite has no compiled ops; mmpcm never uses them.
    warnings.filterwarnings(
        'ignore', message='Fail to import ``MultiScaleDeformableAttention``')
    use_allowlisted_checkpoint_loader()
    from mmpcm.utils.dist import patch_cpu_distributed
    patch_cpu_distributed()
    make_mmengine_autocast_compilable()
    _APPLIED = True


def save_safetensors(tensors: dict, path: str,
                     metadata: 'dict | None' = None) -> None:
    """``safetensors.torch.save_file`` with the file mode the umask gives.

    safetensors 0.8 writes through a temporary file of its own and keeps
    that file's mode, 0600: a released model or concept file would be
    unreadable by other users of a shared machine, unlike every other file
    mmpcm writes. The mode is set as ``open()`` would set it.

    Args:
        tensors (dict[str, torch.Tensor]): Contiguous tensors by name.
        path (str): The file.
        metadata (dict[str, str], optional): The header's metadata.
    """
    import os

    from safetensors.torch import save_file
    save_file(tensors, path, metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
