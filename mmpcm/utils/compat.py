"""Fixes for breakages between released versions of mmpcm's dependencies.

Each fix is a :class:`LibraryFix` in :data:`LIBRARY_FIXES`: the versions of
the library it repairs, a check of the installed versions
(``applies``) and the change itself (``apply``). Nothing here runs at
import: :func:`apply_library_fixes` applies the fixes whose versions are
installed, once, and :func:`mmpcm.setup_env.register_all_modules` calls it
before anything imports ``mmpretrain.models`` or ``mmpretrain.datasets``.

Each fix's docstring says which versions break and what upstream would have
to change; once a fixed upstream release is the oldest one supported, the
fix stops applying and can be deleted.

:func:`save_safetensors` is not an import-time fix but a file-writing
helper, called where mmpcm writes safetensors files.
"""
import sys
import warnings
from typing import Callable, NamedTuple, Optional, Tuple

Version = Tuple[int, ...]


def installed_version(distribution: str) -> Optional[Version]:
    """The release numbers of an installed distribution.

    Args:
        distribution (str): The distribution's name, e.g. ``'mmengine'``.

    Returns:
        tuple[int, ...] | None: The release numbers (``packaging``'s
        ``Version.release``), e.g. ``(2, 14, 1)`` for ``'2.14.1+cu128'``
        and ``(5, 0, 0)`` for ``'5.0.0rc1'``; None if the distribution is
        not installed or its version is not a PEP 440 version.
    """
    from importlib import metadata

    from packaging.version import InvalidVersion, Version
    try:
        return Version(metadata.version(distribution)).release
    except (metadata.PackageNotFoundError, InvalidVersion):
        return None


def version_in(distribution: str, at_least: Optional[Version] = None,
               at_most: Optional[Version] = None) -> bool:
    """Whether the installed version of a distribution lies in a range.

    Each bound compares as many release numbers as it has: ``at_most=(1,
    2)`` admits every 1.2.x, ``at_most=(0, 10, 7)`` admits 0.10.7 and stops
    before 0.10.8.

    Args:
        distribution (str): The distribution's name.
        at_least (tuple[int, ...], optional): The lowest version admitted.
        at_most (tuple[int, ...], optional): The highest version admitted.

    Returns:
        bool: True if the distribution is installed and within both bounds.
    """
    version = installed_version(distribution)
    if version is None:
        return False

    def prefix(bound: Version) -> Version:
        return (version + (0, ) * len(bound))[:len(bound)]

    if at_least is not None and prefix(at_least) < at_least:
        return False
    if at_most is not None and prefix(at_most) > at_most:
        return False
    return True


class LibraryFix(NamedTuple):
    """One fix for one breakage of a dependency.

    Attributes:
        name (str): A short name, as :func:`apply_library_fixes` reports it.
        versions (str): The installed versions it is for, in words.
        applies (Callable[[], bool]): Whether those versions are installed.
        apply (Callable[[], None]): The fix; idempotent.
    """
    name: str
    versions: str
    applies: Callable[[], bool]
    apply: Callable[[], None]


def disable_mmpretrain_multimodal() -> None:
    """Keep mmpretrain importable beside transformers >= 4.55.

    mmpretrain 1.2 imports its BLIP/OFA code whenever transformers >= 4.28
    is installed; its BLIP and OFA modules import helpers that transformers
    no longer has (checked with 4.55 and 5.24), and a bare ``except`` turns
    that into ``TypeError: NoneType takes no arguments``, which breaks
    ``import mmpretrain.models`` and with it every config using
    ``default_scope='mmpretrain'``. mmpcm needs none of those models, so the
    multimodal switch is turned off before mmpretrain reads it.
    ``MultiModalDataPreprocessor`` stays available; mmpretrain's own
    BLIP/OFA classes become placeholders that raise when built.

    Upstream: an mmpretrain release whose multimodal modules import from
    transformers' current modules (or that catches only ``ImportError``).

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
            f'{", ".join(early)} was imported before mmpcm\'s setup. Call '
            'mmpcm.setup_env.register_all_modules() (or list mmpcm.plugin in '
            'custom_imports) before importing mmpretrain.models and '
            'mmpretrain.datasets, so that mmpretrain stays importable '
            'beside this transformers.')
    dependency.WITH_MULTIMODAL = False


def quiet_mmcv_lite_ops_warning() -> None:
    """Hide mmcv-lite's warning that it has no compiled ops.

    mmpretrain imports ``mmcv.cnn.bricks.transformer``, which under
    mmcv-lite (every version: it ships no compiled ops) warns ``Fail to
    import MultiScaleDeformableAttention``; mmpcm never uses those ops.

    Upstream: mmcv importing its ops lazily, where they are used.
    """
    warnings.filterwarnings(
        'ignore', message='Fail to import ``MultiScaleDeformableAttention``')


def use_allowlisted_checkpoint_loader() -> None:
    """Let mmengine load its own checkpoints under torch >= 2.6, safely.

    torch >= 2.6 defaults ``torch.load(weights_only=True)``; mmengine up to
    0.10.7 loads local checkpoints without the flag, so resume,
    ``load_from`` and ``load_checkpoint`` fail on the pickled
    ``HistoryBuffer``. This registers
    :func:`mmpcm.utils.checkpoint.load_from_local_safe` for local paths: it
    keeps ``weights_only=True`` and allows only what an mmengine checkpoint
    holds, refusing any other pickled object.

    Upstream: an mmengine release whose local loader allowlists its own
    checkpoint contents (``torch.serialization.add_safe_globals``).
    """
    from mmpcm.utils.checkpoint import register_local_checkpoint_loader
    register_local_checkpoint_loader()


def launch_without_cuda() -> None:
    """Let mmengine's PyTorch launcher start gloo groups without CUDA.

    mmengine up to 0.10.7 calls ``torch.cuda.set_device`` in
    ``_init_dist_pytorch``, so ``tools/dist_train.sh`` fails on a machine
    without CUDA; :func:`mmpcm.utils.dist.patch_cpu_distributed` adds a gloo
    path.

    Upstream: an mmengine release that sets the CUDA device only when CUDA
    is available.
    """
    from mmpcm.utils.dist import patch_cpu_distributed
    patch_cpu_distributed()


def make_mmengine_autocast_compilable() -> None:
    """Keep mmengine's AMP context traceable by ``torch.compile``.

    mmengine's ``autocast`` (every release up to 0.10.7), which
    ``AmpOptimWrapper.optim_context`` enters in every train step, compares
    torch's version with ``digit_version`` on each call, and
    ``digit_version`` parses the strings with ``packaging``. With mmengine's
    ``compile=True`` that parse runs inside the compiled train step, and
    torch 2.11's dynamo fails on ``packaging``'s ``Version`` with
    ``InternalTorchDynamoError: AttributeError:
    'UserDefinedExceptionObjectVariable' object has no attribute
    'call_setattr'`` (torch 2.14's traces it). The strings compared are
    constants: they are parsed once here, and the ``digit_version`` that
    ``mmengine.runner.amp`` calls looks them up (others are still parsed).

    Upstream: an mmengine release whose ``autocast`` compares versions
    parsed once at import.
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


MMENGINE_0_10_7 = (0, 10, 7)  # mmengine's last release, which needs its fixes

LIBRARY_FIXES: Tuple[LibraryFix, ...] = (
    LibraryFix(
        'mmpretrain_without_multimodal',
        'mmpretrain 1.2.x with transformers >= 4.55',
        lambda: (version_in('mmpretrain', (1, 2), (1, 2))
                 and version_in('transformers', at_least=(4, 55))),
        disable_mmpretrain_multimodal),
    LibraryFix(
        'quiet_mmcv_lite_ops_warning', 'mmcv-lite (any version)',
        lambda: installed_version('mmcv-lite') is not None,
        quiet_mmcv_lite_ops_warning),
    LibraryFix(
        'allowlisted_checkpoint_loader',
        'mmengine <= 0.10.7 with torch >= 2.6',
        lambda: (version_in('mmengine', at_most=MMENGINE_0_10_7)
                 and version_in('torch', at_least=(2, 6))),
        use_allowlisted_checkpoint_loader),
    LibraryFix(
        'cpu_distributed', 'mmengine <= 0.10.7',
        lambda: version_in('mmengine', at_most=MMENGINE_0_10_7),
        launch_without_cuda),
    LibraryFix(
        'compilable_autocast', 'mmengine <= 0.10.7 with torch >= 2.0',
        lambda: (version_in('mmengine', at_most=MMENGINE_0_10_7)
                 and version_in('torch', at_least=(2, 0))),
        make_mmengine_autocast_compilable),
)

_applied: Optional[Tuple[str, ...]] = None


def apply_library_fixes() -> Tuple[str, ...]:
    """Apply, once, every fix of :data:`LIBRARY_FIXES` whose versions are
    installed.

    The first call decides and applies; later calls change nothing and
    return the same names. Call it before anything imports
    ``mmpretrain.models`` or ``mmpretrain.datasets``
    (:func:`mmpcm.setup_env.register_all_modules` does).

    Returns:
        tuple[str, ...]: The names of the fixes applied, in order.

    Raises:
        RuntimeError: If the mmpretrain multimodal fix applies and
            ``mmpretrain.models`` or ``mmpretrain.datasets`` is already
            imported.
    """
    global _applied
    if _applied is None:
        applied = []
        for fix in LIBRARY_FIXES:
            if fix.applies():
                fix.apply()
                applied.append(fix.name)
        _applied = tuple(applied)
    return _applied


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
