"""The release file format: a captioner's weights that load without pickle.

A release is one safetensors file: the captioner's state dict plus
:class:`ReleaseInfo` as JSON metadata (``docs/release_format.md``). This
module reads and writes the file; building a model from it is
:mod:`mmpcm.apis.release`.
"""
import copy
import json
import os
import os.path as osp
from dataclasses import asdict, dataclass
from typing import Dict, List, NamedTuple, Optional, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from mmpcm.utils.cli import UserError
from mmpcm.utils.compat import save_safetensors
from mmpcm.version import __version__

RELEASE_FORMAT = 'mmpcm-release'
RELEASE_VERSION = 1
RELEASE_SUFFIX = '.safetensors'
_INFO_KEY = 'mmpcm'
VOCAB_KEY = 'head.vocab_bytes'
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own header size limit


class ReleaseFormatError(UserError, ValueError):
    """A file is not a valid mmpcm release."""


@dataclass
class ReleaseInfo:
    """What a release says about its model, besides the tensors.

    Args:
        model (dict): ``PCMCaptioner`` config without ``head.vocab``,
            ``neck.concepts`` and ``backbone.pretrained`` (set to None).
        vocab (list[str]): The word vocabulary (also in ``head.vocab_bytes``).
        clip (dict): CLIP identity: ``model_name``, ``model_cfg``,
            ``pretrained``, ``pretrained_sha256``, ``patch_pool``,
            ``image_size``, ``num_patches``, ``patch_dim``, ``embed_dim``.
        concepts (list[str], optional): Concept words, in the order of the
            concept table, when known. Defaults to None.
        mmpcm_version (str): mmpcm version that wrote the release.
        format (str): Always ``'mmpcm-release'``.
        version (int): Release format version, 1.
    """
    model: dict
    vocab: List[str]
    clip: dict
    concepts: Optional[List[str]] = None
    mmpcm_version: str = __version__
    format: str = RELEASE_FORMAT
    version: int = RELEASE_VERSION

    def to_json(self) -> str:
        """The JSON stored in the release's metadata."""
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> 'ReleaseInfo':
        """Parse and check the metadata JSON.

        Args:
            text (str): The JSON.
            source (str): The file, for error messages.

        Returns:
            ReleaseInfo: The info.

        Raises:
            ReleaseFormatError: If the JSON is invalid or incomplete.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ReleaseFormatError(
                f'{source}: release metadata is not JSON ({error})') from None
        fields = set(cls.__dataclass_fields__)
        required = {'model', 'vocab', 'clip', 'format', 'version'}
        if not isinstance(data, dict) or not required <= set(data):
            raise ReleaseFormatError(
                f'{source}: release metadata needs {sorted(required)}.')
        if data['format'] != RELEASE_FORMAT:
            raise ReleaseFormatError(
                f'{source}: format is {data["format"]!r}, expected '
                f'{RELEASE_FORMAT!r}.')
        if data['version'] != RELEASE_VERSION:
            raise ReleaseFormatError(
                f'{source}: release version {data["version"]!r}; this mmpcm '
                f'reads version {RELEASE_VERSION}.')
        return cls(**{k: v for k, v in data.items() if k in fields})

    def model_cfg(self) -> dict:
        """The buildable model config: vocabulary in, no files to read."""
        cfg = copy.deepcopy(self.model)
        cfg['head']['vocab'] = list(self.vocab)
        return cfg


class Release(NamedTuple):
    """A loaded release.

    Attributes:
        state_dict (dict[str, torch.Tensor]): The captioner's weights.
        info (ReleaseInfo): Config, vocabulary, concepts, CLIP identity.
    """
    state_dict: Dict[str, torch.Tensor]
    info: ReleaseInfo


# --------------------------------------------------------------------------
# release files
# --------------------------------------------------------------------------
def is_release_file(path: str) -> bool:
    """Whether ``path`` is a safetensors file (by suffix, else by content).

    A safetensors file starts with the 8-byte little-endian length of its
    JSON header, then ``{``; a torch checkpoint is a zip (``PK``) or a raw
    pickle (``0x80``).

    Args:
        path (str): The file.

    Returns:
        bool: True for ``*.safetensors`` or safetensors content.
    """
    if str(path).endswith(RELEASE_SUFFIX):
        return True
    if not osp.isfile(path):
        return False
    with open(path, 'rb') as file:
        head = file.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], 'little')
    return head[8:9] == b'{' and 0 < size <= min(_MAX_HEADER,
                                                 osp.getsize(path) - 8)


def read_release_info(path: str) -> ReleaseInfo:
    """Read a release's metadata without loading its tensors.

    Args:
        path (str): The release file.

    Returns:
        ReleaseInfo: The info.

    Raises:
        MissingInputError: If there is no such file (a FileNotFoundError).
        InputError: For a folder, or a file of another kind (an image, a
            torch checkpoint, a truncated safetensors file, ...; see
            :func:`mmpcm.utils.checkpoint.check_checkpoint_file`).
        ReleaseFormatError: If it is not an mmpcm release.
    """
    from mmpcm.utils.checkpoint import (SAFETENSORS, check_checkpoint_file,
                                        describe_checkpoint_file)
    if describe_checkpoint_file(path).kind != 'unknown':
        # Unknown binary content is left to safetensors' parser to word.
        check_checkpoint_file(path, accept=(SAFETENSORS, ))
    try:
        with safe_open(path, framework='pt') as file:
            metadata = file.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ReleaseFormatError(
            f'{path}: not a safetensors file ({error})') from None
    if metadata.get('format') != RELEASE_FORMAT or _INFO_KEY not in metadata:
        raise ReleaseFormatError(
            f'{path}: a safetensors file, but not an mmpcm release (metadata '
            f'format is {metadata.get("format")!r}, expected '
            f'{RELEASE_FORMAT!r}). Make one from a training checkpoint with '
            'tools/model_converters/publish_model.py.')
    return ReleaseInfo.from_json(metadata[_INFO_KEY], path)


def load_release(path: str, device: Union[str, torch.device] = 'cpu'
                 ) -> Release:
    """Load a release: safetensors tensors + JSON metadata, no pickle.

    Args:
        path (str): The release file.
        device (str | torch.device): Where the tensors go. Defaults to
            'cpu'.

    Returns:
        Release: Weights and info.
    """
    info = read_release_info(path)
    state = load_file(path, device=str(device))
    if VOCAB_KEY not in state:
        raise ReleaseFormatError(f'{path}: no {VOCAB_KEY} tensor.')
    return Release(state, info)


def save_release(path: str, state_dict: Dict[str, torch.Tensor],
                 info: ReleaseInfo) -> None:
    """Write a release file (tensors copied to contiguous CPU memory).

    Args:
        path (str): Output file, normally ``*.safetensors``.
        state_dict (dict[str, torch.Tensor]): The captioner's weights.
        info (ReleaseInfo): Its metadata.
    """
    tensors = {
        k: v.detach().cpu().contiguous().clone()
        for k, v in state_dict.items()
    }
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    save_safetensors(tensors, path,
              metadata={'format': RELEASE_FORMAT, _INFO_KEY: info.to_json()})
