"""Loading mmengine checkpoints safely with torch >= 2.6.

``weights_only=True`` with an allowlist of what an mmengine Runner checkpoint
holds (anything else: :class:`UntrustedCheckpointError`); a file that is not
a checkpoint is named by its first bytes. ``docs/inputs_and_errors.md``.
"""
import errno
import glob
import json
import os
import os.path as osp
import pickle
import pickletools
import struct
import zipfile
from types import FunctionType
from typing import (Any, Callable, List, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from mmpcm.utils.cli import InputError, MissingInputError, UserError

MapLocation = Optional[Union[str, torch.device, Callable, dict]]

# The statistics methods ``HistoryBuffer._set_default_statistics`` registers.
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')
# Numeric and bool dtypes; object, void, string and datetime are refused.
_NUMPY_DTYPE_KINDS = 'biufc'
_NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                 'uint32', 'uint64', 'float16', 'float32', 'float64',
                 'longdouble', 'complex64', 'complex128', 'clongdouble')


class UntrustedCheckpointError(UserError, pickle.UnpicklingError):
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


# --------------------------------------------------------------------------
# what a file is, by its first bytes
# --------------------------------------------------------------------------
TORCH, SAFETENSORS = 'torch', 'safetensors'
"""The two loadable kinds of :class:`CheckpointFile` (``accept`` values)."""

_INTERRUPTED = ('the run that wrote it was probably interrupted: use an '
                'earlier checkpoint')
_INCOMPLETE_COPY = ('the file is incomplete (an interrupted copy or '
                    'download?): copy it again')
# torch.save's legacy (non-zip) format opens with this pickled magic number.
_TORCH_LEGACY_MAGIC = bytes.fromhex('80028a0a6cfc9c46f9206aa85019')
_IMAGE_MAGIC = ((b'\xff\xd8\xff', 'JPEG'), (b'\x89PNG\r\n\x1a\n', 'PNG'),
                (b'GIF87a', 'GIF'), (b'GIF89a', 'GIF'),
                (b'II*\x00', 'TIFF'), (b'MM\x00*', 'TIFF'))
_OTHER_MAGIC = ((b'\x1f\x8b', 'a gzip archive'),
                (b'\x93NUMPY', 'a numpy array file (.npy)'),
                (b'\x89HDF\r\n\x1a\n', 'an HDF5 file'),
                (b'BZh', 'a bzip2 archive'),
                (b'\xfd7zXZ\x00', 'an xz archive'),
                (b'%PDF', 'a PDF document'))
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # safetensors' own limit
_MAX_JSON_PARSE = 64 * 1024 * 1024  # larger JSON is named, not parsed


class CheckpointFile(NamedTuple):
    """What a file given as a model is, from its first bytes.

    Attributes:
        kind (str): :data:`TORCH` or :data:`SAFETENSORS` for a loadable
            file; otherwise ``'missing'``, ``'folder'``, ``'empty'``,
            ``'truncated'``, ``'image'``, ``'json'``, ``'text'``,
            ``'other'`` (a known kind of file that is no model) or
            ``'unknown'`` (binary content of no known kind).
        description (str): A phrase for messages, e.g. ``'a JPEG image'``,
            ``'a torch checkpoint (zip format)'``, ``'a truncated torch
            checkpoint (zip archive without its end)'``.
        legacy (bool): For :data:`TORCH`: the legacy (non-zip) pickle
            format, which has no end marker to check before loading.
    """
    kind: str
    description: str
    legacy: bool = False


def _read_head(path: str, size: int = 4096) -> bytes:
    with open(path, 'rb') as file:
        return file.read(size)


def _describe_zip(path: str) -> CheckpointFile:
    """A zip file: a complete torch checkpoint, truncated, or another zip."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return CheckpointFile(
            'truncated',
            'truncated torch checkpoint (zip archive without its end)')
    if any(name.endswith('data.pkl') for name in names):
        return CheckpointFile(TORCH, 'a torch checkpoint (zip format)')
    return CheckpointFile(
        'other', f'a zip archive of {len(names)} files (no data.pkl), not a '
        'torch checkpoint')


def _describe_safetensors(path: str, head: bytes,
                          size: int) -> Optional[CheckpointFile]:
    """A safetensors file (complete or truncated), or None if it is not one.

    safetensors: an 8-byte little-endian header length, the JSON header
    (``{"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
    "__metadata__": {...}}``), then the tensor bytes.
    """
    if len(head) < 10 or head[8:9] != b'{':
        return None
    length = int.from_bytes(head[:8], 'little')
    if not 2 <= length <= _MAX_SAFETENSORS_HEADER:
        return None
    if 8 + length > size:
        return CheckpointFile(
            'truncated', f'truncated safetensors file (its header alone '
            f'needs {8 + length} bytes, the file has {size})')
    with open(path, 'rb') as file:
        file.seek(8)
        text = file.read(length)
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    offsets = [
        entry.get('data_offsets') for entry in header.values()
        if isinstance(entry, dict)
    ]
    ends = [o[1] for o in offsets if isinstance(o, list) and len(o) == 2]
    needed = 8 + length + max(ends, default=0)
    if needed > size:
        return CheckpointFile(
            'truncated', f'truncated safetensors file (its tensors end at '
            f'byte {needed}, the file has {size})')
    metadata = header.get('__metadata__') or {}
    if (isinstance(metadata, dict)
            and metadata.get('format') == 'mmpcm-release'):
        return CheckpointFile(SAFETENSORS,
                              'a safetensors file (an mmpcm release)')
    return CheckpointFile(SAFETENSORS, 'a safetensors file')


def _describe_text(path: str, head: bytes, size: int) -> Optional[
        CheckpointFile]:
    """JSON (a word list named as such) or text, or None for binary."""
    if b'\x00' in head:
        return None
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError as error:
        # A multi-byte character cut by the 4096-byte window is still text.
        if error.start < len(head) - 4:
            return None
        text = head[:error.start].decode('utf-8')
    stripped = text.lstrip('\ufeff \t\r\n')
    if stripped[:1] in ('{', '['):
        data = None
        if size <= _MAX_JSON_PARSE:
            try:
                with open(path, encoding='utf-8-sig') as file:
                    data = json.load(file)
            except (UnicodeDecodeError, ValueError):
                data = None
        if isinstance(data, list) and data and all(
                isinstance(w, str) for w in data):
            return CheckpointFile(
                'json', f'a JSON list of {len(data)} words (a vocabulary?)')
        if data is not None or size > _MAX_JSON_PARSE:
            return CheckpointFile('json', 'a JSON file')
    if path.endswith('.py'):
        return CheckpointFile('text', 'a Python file (a config?)')
    return CheckpointFile('text', 'a text file')


def describe_checkpoint_file(path: Union[str, 'os.PathLike[str]']
                             ) -> CheckpointFile:
    """Say what a file given as a model is, by its magic bytes.

    Nothing is unpickled: only the first bytes are read, and for a zip its
    central directory (at the end of the file, where an interrupted write
    leaves none), for a safetensors file its JSON header.

    Args:
        path (str | PathLike): The file (``~`` is expanded).

    Returns:
        CheckpointFile: Its kind and a phrase describing it. A legacy torch
        checkpoint is :data:`TORCH`; whether it is complete shows only when
        it loads.
    """
    path = osp.expanduser(os.fspath(path))
    if osp.isdir(path):
        return CheckpointFile('folder', 'a folder')
    if not osp.exists(path):
        return CheckpointFile('missing', 'no such file')
    size = osp.getsize(path)
    if size == 0:
        return CheckpointFile('empty', 'an empty file (0 bytes)')
    head = _read_head(path)
    if head.startswith((b'PK\x03\x04', b'PK\x05\x06')):
        return _describe_zip(path)
    if b'PK\x03\x04'.startswith(head):
        return CheckpointFile(
            'truncated', 'truncated torch checkpoint (zip archive without its '
            'end)')
    if head.startswith(_TORCH_LEGACY_MAGIC[:len(head)]) and len(
            head) < len(_TORCH_LEGACY_MAGIC):
        return CheckpointFile(
            'truncated', 'truncated torch checkpoint (legacy format, '
            f'{size} bytes)')
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return CheckpointFile(TORCH, 'a torch checkpoint (legacy format)',
                              legacy=True)
    if head[:1] == b'\x80' and 2 <= head[1:2][0] <= 5:
        return CheckpointFile('other',
                              'a Python pickle, not a torch checkpoint')
    for magic, name in _IMAGE_MAGIC:
        if head.startswith(magic):
            return CheckpointFile('image', f'a {name} image')
    if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        return CheckpointFile('image', 'a WebP image')
    for magic, name in _OTHER_MAGIC:
        if head.startswith(magic):
            return CheckpointFile('other', name)
    found = _describe_safetensors(path, head, size)
    if found is not None:
        return found
    found = _describe_text(path, head, size)
    if found is not None:
        return found
    return CheckpointFile(
        'unknown', 'neither a torch checkpoint nor a safetensors file (it '
        f'starts with bytes {head[:8].hex(" ")})')


_REMEDIES = {
    (TORCH, SAFETENSORS): 'pass a .pth or .safetensors model',
    (TORCH, ): 'pass a .pth checkpoint',
    (SAFETENSORS, ): 'pass a .safetensors release',
}


def _folder_remedy(path: str, accept: Sequence[str]) -> str:
    """What to pass instead of a folder: one of its checkpoints, if any."""
    patterns = {TORCH: '*.pth', SAFETENSORS: '*.safetensors'}
    found = sorted(
        osp.basename(p) for kind in accept
        for p in glob.glob(osp.join(glob.escape(path), patterns[kind])))
    if not found:
        return ('pass a checkpoint file (' + ' or '.join(
            patterns[k][1:] for k in accept) + ')')
    names = ', '.join(found[:3]) + (', ...' if len(found) > 3 else '')
    return f'pass one of the checkpoint files in it ({names})'


def check_checkpoint_file(path: Union[str, 'os.PathLike[str]'],
                          accept: Sequence[str] = (TORCH, SAFETENSORS)
                          ) -> CheckpointFile:
    """Refuse a file that is not a loadable model, saying what it is.

    Args:
        path (str | PathLike): The file.
        accept (Sequence[str]): The kinds the caller loads: :data:`TORCH`
            (``.pth``), :data:`SAFETENSORS` (releases), or both (default).

    Returns:
        CheckpointFile: The file's description (its kind is in ``accept``).

    Raises:
        MissingInputError: If there is no such file.
        InputError: For anything else, e.g. ``ckpt.pth: truncated torch
            checkpoint (zip archive without its end); the run that wrote it
            was probably interrupted: use an earlier checkpoint`` or
            ``photo.jpg: a JPEG image, not a checkpoint; pass a .pth or
            .safetensors model``.
    """
    accept = tuple(k for k in (TORCH, SAFETENSORS) if k in accept)
    name = os.fspath(path)
    found = describe_checkpoint_file(name)
    if found.kind in accept:
        return found
    remedy = _REMEDIES[accept]
    if found.kind == 'missing':
        raise MissingInputError(name, 'no such file', 'check the path')
    if found.kind == 'folder':
        raise InputError(name, 'a folder, not a checkpoint file',
                         _folder_remedy(osp.expanduser(name), accept))
    if found.kind == 'empty':
        raise InputError(name, f'{found.description}, not a checkpoint',
                         _INTERRUPTED)
    if found.kind == 'truncated':
        remedy = (_INCOMPLETE_COPY if 'safetensors' in found.description else
                  _INTERRUPTED)
        raise InputError(name, found.description, remedy)
    if found.kind == SAFETENSORS:  # where a .pth is needed
        raise InputError(
            name, f'{found.description}, not a training checkpoint (.pth)',
            'tools/test.py and tools/caption.py take a release as it is; '
            'loading weights into a training run (load_from, --resume) needs '
            'a .pth checkpoint')
    if found.kind == TORCH:  # where a release is needed
        raise InputError(
            name, f'{found.description}, not a safetensors release',
            'make a release with tools/model_converters/publish_model.py, '
            'or pass the checkpoint where a .pth is accepted')
    if found.kind == 'unknown':
        raise InputError(name, found.description, remedy)
    raise InputError(name, f'{found.description}, not a checkpoint', remedy)


def _legacy_pickles_end_early(filename: str) -> bool:
    """Whether a legacy torch checkpoint's pickles stop before their end.

    The legacy format is five pickles (magic number, protocol, system info,
    the object, the storage keys) followed by the raw storage bytes. The
    pickles' opcodes are walked with :func:`pickletools.genops`, which
    builds no object.
    """
    with open(filename, 'rb') as file:
        try:
            for _ in range(5):
                for opcode, _, _ in pickletools.genops(file):
                    if opcode.name == 'STOP':
                        break
                else:
                    return True
        except (ValueError, EOFError, struct.error, IndexError):
            return True
    return False


def _damage(found: CheckpointFile, filename: str,
            error: BaseException) -> Optional[str]:
    """The problem, if ``error`` from ``torch.load`` means a damaged file.

    Args:
        found (CheckpointFile): What the file looked like before loading.
        filename (str): The file.
        error (BaseException): What ``torch.load`` raised.

    Returns:
        str, optional: E.g. ``'truncated torch checkpoint (legacy format,
        the data ends early)'``; None when the error is not about damage.
    """
    first = str(error).strip().splitlines()[0] if str(error).strip() else ''
    if found.legacy:
        if isinstance(error, (EOFError, IndexError, struct.error)) or (
                isinstance(error, RuntimeError) and 'unexpected EOF' in first
        ) or (isinstance(error, pickle.UnpicklingError)
              and _legacy_pickles_end_early(filename)):
            return ('truncated torch checkpoint (legacy format, the data '
                    'ends early)')
        return None
    if isinstance(error, RuntimeError) and any(
            word in first for word in ('PytorchStreamReader', 'miniz',
                                       'corrupted', 'unexpected EOF')):
        return f'damaged torch checkpoint ({first})'
    if isinstance(error, OSError) and error.errno == errno.EINVAL:
        return f'damaged torch checkpoint ({first})'
    return None


def _torch_load(filename: str, map_location: MapLocation,
                weights_only: bool) -> Any:
    """``torch.load`` of a checked file; damage becomes an InputError.

    Raises:
        MissingInputError: If there is no such file.
        InputError: For a file that is no torch checkpoint, or a truncated
            or damaged one.
        pickle.UnpicklingError: From a ``weights_only`` refusal (the caller
            words it).
    """
    found = check_checkpoint_file(filename, accept=(TORCH, ))
    filename = osp.expanduser(filename)
    try:
        if not weights_only:
            return torch.load(filename, map_location=map_location,
                              weights_only=False)
        already = set(torch.serialization.get_safe_globals())
        extra = [g for g in mmengine_checkpoint_globals() if g not in already]
        with torch.serialization.safe_globals(extra):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError, IndexError, struct.error,
            RuntimeError, OSError) as error:
        problem = _damage(found, filename, error)
        if problem is None:
            raise
        raise InputError(filename, problem, _INTERRUPTED) from error


def load_checkpoint_file(filename: str,
                         map_location: MapLocation = 'cpu') -> Any:
    """Load a local mmengine checkpoint with ``weights_only=True``.

    Only torch's default safe types and :func:`mmengine_checkpoint_globals`
    are unpickled; the allowlist is active for this call only. The file is
    checked first (:func:`check_checkpoint_file`): a folder, an empty or
    truncated file, an image, JSON, text or a safetensors release is
    refused with one line saying what it is.

    Args:
        filename (str): Path of the checkpoint.
        map_location (str | torch.device | Callable | dict, optional): As in
            :func:`torch.load`. Defaults to 'cpu'.

    Returns:
        Any: The checkpoint, usually a dict with ``meta``, ``state_dict``,
        ``message_hub``, ``optimizer`` and ``param_schedulers``.

    Raises:
        MissingInputError: If there is no such file (a FileNotFoundError).
        InputError: If the file is not a complete torch checkpoint.
        UntrustedCheckpointError: If the file holds any other pickled object.
    """
    filename = osp.expanduser(str(filename))
    try:
        return _torch_load(filename, map_location, weights_only=True)
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
        MissingInputError: If there is no such file (a FileNotFoundError).
        InputError: If the file is not a complete torch checkpoint.
    """
    return _torch_load(osp.expanduser(str(filename)), map_location,
                       weights_only=False)


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
