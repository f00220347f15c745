"""Loading mmengine checkpoints safely with torch >= 2.6.

torch >= 2.6 unpickles with ``weights_only=True`` by default, while mmengine
0.10.7 calls ``torch.load`` without the flag, so resuming, ``load_from`` and
``mmengine.runner.load_checkpoint`` fail with ``UnpicklingError ...
HistoryBuffer``. Turning ``weights_only`` off would let any checkpoint run
code (a checkpoint is a pickle). This module keeps ``weights_only=True`` and
allows exactly the extra globals an mmengine Runner checkpoint contains:

* ``mmengine.logging.HistoryBuffer``: the message hub's logged scalars.
* ``getattr(HistoryBuffer, name)`` for its four default statistics methods
  (``min``, ``max``, ``current``, ``mean``): a HistoryBuffer pickles its
  ``statistics_methods`` dict, whose values are these functions. Any other
  ``getattr`` call is refused.
* numpy array and scalar reconstruction
  (``numpy._core.multiarray._reconstruct`` / ``scalar``, ``numpy.ndarray``,
  also under numpy 1.x's ``numpy.core`` names) and ``numpy.dtype``
  restricted to numeric and bool dtypes, plus those dtypes' classes:
  HistoryBuffer stores float64/int64 arrays and the runtime info stores
  numpy scalars (e.g. ``eta``).

:func:`register_local_checkpoint_loader` installs this loader for local paths
in mmengine's ``CheckpointLoader``;
:func:`mmpcm.utils.compat.apply_compat_patches` calls it. Anything else in a
checkpoint is refused with :class:`UntrustedCheckpointError`;
:func:`load_trusted_checkpoint` loads a file the user trusts.
"""
import os.path as osp
import pickle
from types import FunctionType
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

MapLocation = Optional[Union[str, torch.device, Callable, dict]]

# The statistics methods ``HistoryBuffer._set_default_statistics`` registers.
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')
# Numeric and bool dtypes; object, void, string and datetime are refused.
_NUMPY_DTYPE_KINDS = 'biufc'
_NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                 'uint32', 'uint64', 'float16', 'float32', 'float64',
                 'longdouble', 'complex64', 'complex128', 'clongdouble')


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds pickled objects outside the mmengine allowlist."""


def _history_buffer_method(owner: Any, name: str) -> FunctionType:
    """Stand-in for ``builtins.getattr`` while unpickling a checkpoint.

    Args:
        owner (Any): The object the pickle asks an attribute of.
        name (str): The attribute name.

    Returns:
        FunctionType: ``HistoryBuffer.<name>`` for a default statistics method.

    Raises:
        pickle.UnpicklingError: For any other object or attribute.
    """
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not part of an mmengine checkpoint')


def _numeric_dtype(*args: Any) -> np.dtype:
    """Stand-in for ``numpy.dtype`` that only builds numeric/bool dtypes.

    Args:
        *args (Any): The arguments numpy pickles a dtype with.

    Returns:
        np.dtype: The dtype.

    Raises:
        pickle.UnpicklingError: For object, void, string or datetime dtypes.
    """
    dtype = np.dtype(*args)
    if dtype.kind not in _NUMPY_DTYPE_KINDS or dtype.fields is not None:
        raise pickle.UnpicklingError(
            f'numpy dtype {dtype!r} is not part of an mmengine checkpoint')
    return dtype


def mmengine_checkpoint_globals() -> List[Union[Callable, Tuple[Callable,
                                                                  str]]]:
    """Globals allowed beside torch's defaults when loading a checkpoint.

    Returns:
        list: Entries for :func:`torch.serialization.safe_globals`: objects,
        or ``(object, 'module.name')`` pairs that bind a pickled name to a
        restricted stand-in or to a module alias.
    """
    multiarray = np._core.multiarray
    entries: List[Union[Callable, Tuple[Callable, str]]] = [
        HistoryBuffer,
        np.ndarray,
        (_history_buffer_method, 'builtins.getattr'),
        (_numeric_dtype, 'numpy.dtype'),
    ]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries.append((multiarray._reconstruct, f'{module}._reconstruct'))
        entries.append((multiarray.scalar, f'{module}.scalar'))
    # ``BUILD`` on a dtype instance checks the dtype's class.
    entries.extend(
        sorted({type(np.dtype(name))
                for name in _NUMPY_DTYPES}, key=str))
    return entries


def _unpickler_reason(message: str) -> str:
    """Extract the reason from torch's weights-only error message.

    Args:
        message (str): ``str()`` of the ``UnpicklingError`` torch raised.

    Returns:
        str: One line naming what was refused, without torch's advice.
    """
    marker = 'WeightsUnpickler error:'
    if marker in message:
        message = message.split(marker, 1)[1]
    paragraphs = [
        ' '.join(p.split()) for p in message.split('\n\n') if p.strip()
    ]
    boilerplate = ('Weights only load failed', 'Check the documentation')
    reasons = [p for p in paragraphs if not p.startswith(boilerplate)]
    reason = reasons[0] if reasons else ' '.join(message.split())
    # torch advises allowlisting the global; that is the wrong move here.
    return reason.split(' Please use `torch.serialization', 1)[0]


def _refusal_message(filename: str, reason: str) -> str:
    """Explain a refused checkpoint and the trusted-load route.

    Args:
        filename (str): The checkpoint path.
        reason (str): What torch's restricted unpickler reported.

    Returns:
        str: The message.
    """
    return (
        f'Refused to load checkpoint {filename!r}: it contains pickled '
        'objects that an mmengine checkpoint does not hold, and unpickling '
        f'them could run code ({_unpickler_reason(reason)}). If you trust '
        'this file, load it with '
        f'mmpcm.utils.checkpoint.load_trusted_checkpoint({filename!r}) '
        '(weights_only=False; for trusted files only) and save the parts you '
        'need (e.g. its "state_dict") with torch.save.')


def _check_file(filename: str) -> str:
    """Expand ``~`` and check that a local checkpoint exists.

    Args:
        filename (str): The checkpoint path.

    Returns:
        str: The expanded path.

    Raises:
        FileNotFoundError: If there is no such file.
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return filename


def load_checkpoint_file(filename: str,
                         map_location: MapLocation = 'cpu') -> Any:
    """Load a local mmengine checkpoint with ``weights_only=True``.

    Only torch's default safe types and :func:`mmengine_checkpoint_globals`
    are unpickled; the allowlist is active for this call only.

    Args:
        filename (str): Path of the checkpoint.
        map_location (str | torch.device | Callable | dict, optional): As in
            :func:`torch.load`. Defaults to 'cpu'.

    Returns:
        Any: The checkpoint, usually a dict with ``meta``, ``state_dict``,
        ``message_hub``, ``optimizer`` and ``param_schedulers``.

    Raises:
        FileNotFoundError: If there is no such file.
        UntrustedCheckpointError: If the file holds any other pickled object.
    """
    filename = _check_file(filename)
    already = set(torch.serialization.get_safe_globals())
    extra = [g for g in mmengine_checkpoint_globals() if g not in already]
    try:
        with torch.serialization.safe_globals(extra):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UntrustedCheckpointError(_refusal_message(
            filename, str(error))) from None


def load_trusted_checkpoint(filename: str,
                            map_location: MapLocation = 'cpu') -> Any:
    """Load a checkpoint with full unpickling: FOR TRUSTED FILES ONLY.

    ``weights_only=False`` lets the file run arbitrary code while it loads.
    Use it only for a file whose origin you trust, e.g. one that
    :func:`load_checkpoint_file` refused because it holds extra objects you
    put there yourself.

    Args:
        filename (str): Path of the checkpoint.
        map_location (str | torch.device | Callable | dict, optional): As in
            :func:`torch.load`. Defaults to 'cpu'.

    Returns:
        Any: The unpickled checkpoint.

    Raises:
        FileNotFoundError: If there is no such file.
    """
    filename = _check_file(filename)
    return torch.load(filename, map_location=map_location, weights_only=False)


def load_from_local_safe(filename: str, map_location: MapLocation) -> Any:
    """``CheckpointLoader`` scheme for local paths (mmengine's signature).

    Args:
        filename (str): Path of the checkpoint.
        map_location (str | torch.device | Callable | dict, optional): As in
            :func:`torch.load`.

    Returns:
        Any: The checkpoint, see :func:`load_checkpoint_file`.
    """
    return load_checkpoint_file(filename, map_location=map_location)


def register_local_checkpoint_loader() -> None:
    """Make mmengine load local checkpoints with :func:`load_from_local_safe`.

    Replaces mmengine's ``''`` (local path) scheme, which covers
    ``Runner(resume=True)``, ``load_from`` and
    ``mmengine.runner.load_checkpoint``. Idempotent.
    """
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local_safe, force=True)
