"""The toy world's pretrained CLIP, shipped with the project.

Users of the real pipeline download CLIP weights; they do not train CLIP.
The toy world does the same: ``projects/toyworld/tools/train_clip.py``
trains the CLIP of the default world's settings once (longer than a quick
start could afford) and writes it to :data:`SHIPPED_CLIP`, and a world build
that it can serve (:func:`misfit`: same CLIP settings, and the world's test
and corpus scenes among those the CLIP never saw) takes it instead of
training one (:func:`restore_shipped_clip`). Other worlds train their own.

The shipped folder holds safetensors weights (no pickle) without the text
tower's token table: training keeps that ``(49408, D)`` table at a seeded
random init (:func:`~.clip_train.frozen_token_table`), so it is rebuilt on
load and checked against the SHA-256 recorded beside the weights, as the
weights file is. The record also holds a fingerprint of the real renders
(:func:`render_fingerprint`): a renderer that draws other pixels than the
CLIP was trained on makes the shipped weights stale, and the build trains
instead of using them.
"""
import hashlib
import json
import logging
import os
import os.path as osp
import random
import shutil
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import open_clip
import torch
from safetensors import SafetensorError

from mmpcm.utils.compat import save_safetensors
from mmpcm.utils.fileio import atomic_write_json
from .clip_train import frozen_token_table, save_open_clip_folder
from .render import REAL_STYLE, render_scene_with_masks
from .scenes import sample_scene

logger = logging.getLogger(__name__)

#: Where the shipped CLIP lives (``open_clip_config.json``,
#: ``weights.safetensors``, ``record.json``).
SHIPPED_CLIP = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                        'weights', 'toy_clip')
CONFIG = 'open_clip_config.json'
WEIGHTS = 'weights.safetensors'
RECORD = 'record.json'
TOKEN_TABLE = 'token_embedding.weight'
#: Settings that hold the scenes a world keeps from its CLIP: the first
#: ``num_test_scenes + num_corpus_scenes`` distinct scenes of the seed.
HELD_OUT = ('num_test_scenes', 'num_corpus_scenes')
#: What reading a damaged shipped folder can raise.
READ_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError,
               SafetensorError)
RESTORE = 'git checkout projects/toyworld/weights restores it'


def tensor_sha256(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's float32 bytes (C order)."""
    data = tensor.detach().float().contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def render_fingerprint(size: int, count: int = 16) -> str:
    """SHA-256 of ``count`` real renders and their masks (seed 0).

    Changes whenever the renderer, the real style or the scene sampler
    draws anything differently.

    Args:
        size (int): Image side in pixels.
        count (int): Scenes rendered.

    Returns:
        str: The hex digest.
    """
    rng = random.Random(0)
    pixels = np.random.default_rng(0)
    digest = hashlib.sha256()
    for _ in range(count):
        image, masks = render_scene_with_masks(sample_scene(rng), pixels,
                                               size, REAL_STYLE)
        digest.update(np.asarray(image).tobytes())
        digest.update(np.packbits(masks).tobytes())
    return digest.hexdigest()


@dataclass
class ShippedFolder:
    """What a shipped CLIP folder says about itself.

    Attributes:
        folder (str): The folder.
        config (dict): ``open_clip_config.json``: ``model_cfg`` and
            ``preprocess_cfg``.
        record (dict): ``record.json``: ``settings``, ``render_fingerprint``,
            ``token_table_sha256``, ``weights_sha256`` and how it was made.
    """
    folder: str
    config: dict
    record: dict

    @classmethod
    def read(cls, folder: str) -> 'ShippedFolder':
        """Read the two JSON files.

        Raises:
            OSError: If one is missing or unreadable.
            ValueError: If one is not JSON.
        """
        def load(name):
            with open(osp.join(folder, name), encoding='utf-8') as f:
                return json.load(f)
        return cls(folder, load(CONFIG), load(RECORD))

    @property
    def model_cfg(self) -> dict:
        return self.config['model_cfg']

    @property
    def image_size(self) -> int:
        return self.model_cfg['vision_cfg']['image_size']


def save_shipped_clip(model: torch.nn.Module, model_cfg: dict,
                      settings: Dict, folder: str = SHIPPED_CLIP,
                      **facts) -> None:
    """Write a trained toy CLIP as the shipped one.

    The files go to ``<folder>.tmp`` first; the old folder is moved aside
    only once they are complete, so a crash leaves the old one or the new
    one, never half of either.

    Args:
        model (nn.Module): A CLIP of :func:`~.clip_train.train_toy_clip`.
        model_cfg (dict): Its open_clip model config.
        settings (dict): The world's CLIP settings it was trained for
            (:meth:`~.world.WorldConfig.clip_settings`).
        folder (str): Output folder (replaced).
        **facts: Further entries of the record (time, machine, command).
    """
    folder = osp.normpath(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if k != TOKEN_TABLE}
    tmp, old = folder + '.tmp', folder + '.old'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    atomic_write_json(osp.join(tmp, CONFIG), dict(
        model_cfg=model_cfg, preprocess_cfg=dict(model.visual.preprocess_cfg)))
    save_safetensors(state, osp.join(tmp, WEIGHTS))
    atomic_write_json(osp.join(tmp, RECORD), dict(
        settings=settings,
        render_fingerprint=render_fingerprint(
            model_cfg['vision_cfg']['image_size']),
        token_table_sha256=tensor_sha256(model.state_dict()[TOKEN_TABLE]),
        weights_sha256=file_sha256(osp.join(tmp, WEIGHTS)),
        **facts))
    shutil.rmtree(old, ignore_errors=True)
    if osp.exists(folder):
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def misfit(recorded: Dict, wanted: Dict) -> Optional[str]:
    """Why a CLIP trained for ``recorded`` settings cannot serve a world of
    ``wanted`` settings (None: it can).

    It can when the model, steps, seed and CLIP scene count are the same and
    the world's test and corpus scenes are among the scenes the CLIP was
    kept from (:func:`~.world.split_scenes` draws them first, in the same
    order whatever the counts).

    Args:
        recorded (dict): The CLIP's settings (its record's ``settings``).
        wanted (dict): The world's (:meth:`~.world.WorldConfig.clip_settings`).

    Returns:
        str or None: The reason, naming the settings and their values.
    """
    other = sorted(k for k in set(recorded) | set(wanted)
                   if k not in HELD_OUT and recorded.get(k) != wanted.get(k))
    if other:
        return 'it was trained with ' + ', '.join(
            f'{k} {recorded.get(k)} (this world: {wanted.get(k)})'
            for k in other)
    kept = sum(recorded.get(k, 0) for k in HELD_OUT)
    held = sum(wanted[k] for k in HELD_OUT)
    if held > kept:
        return (f'this world has {held} test and corpus scenes; the CLIP '
                f'was kept from the first {kept} only')
    return None


def why_not_shipped(settings: Dict, folder: str = SHIPPED_CLIP
                    ) -> Optional[str]:
    """Why the shipped CLIP cannot serve a world of ``settings`` (None: it
    can): :func:`misfit`, or a renderer that draws other pixels now.

    Raises:
        OSError, ValueError, KeyError: If the folder is damaged.
    """
    shipped = ShippedFolder.read(folder)
    reason = misfit(shipped.record['settings'], settings)
    if reason is None and (shipped.record['render_fingerprint'] !=
                           render_fingerprint(shipped.image_size)):
        reason = 'the renderer now draws other pixels than it was trained on'
    return reason


def load_shipped_clip(folder: str = SHIPPED_CLIP) -> torch.nn.Module:
    """The shipped CLIP as an open_clip ``CLIP`` in eval mode.

    Args:
        folder (str): The shipped CLIP's folder.

    Returns:
        nn.Module: The model, its token table rebuilt.

    Raises:
        ValueError: If the weights file or the rebuilt token table is not
            the recorded one, or a file is not what it should be.
        OSError: If a file is missing.
        KeyError, RuntimeError, SafetensorError: If the files do not hold
            the model they should.
    """
    from safetensors.torch import load_file
    shipped = ShippedFolder.read(folder)
    weights = osp.join(folder, WEIGHTS)
    if file_sha256(weights) != shipped.record['weights_sha256']:
        raise ValueError(f'{weights} is not the file it was saved as')
    model = open_clip.model.CLIP(**shipped.model_cfg)
    open_clip.model.set_model_preprocess_cfg(model,
                                             shipped.config['preprocess_cfg'])
    state = load_file(weights)
    text = shipped.model_cfg['text_cfg']
    state[TOKEN_TABLE] = frozen_token_table(
        text['vocab_size'], text['width'], shipped.record['settings']['seed'])
    if tensor_sha256(state[TOKEN_TABLE]) != \
            shipped.record['token_table_sha256']:
        raise ValueError('the rebuilt token table differs from the one the '
                         'shipped CLIP was trained with')
    model.load_state_dict(state)
    return model.eval()


def restore_shipped_clip(settings: Dict, dest: str,
                         folder: str = SHIPPED_CLIP) -> bool:
    """Write the shipped CLIP to ``dest`` as an open_clip ``local-dir``
    folder if it can serve a world of ``settings`` (:func:`why_not_shipped`).

    Args:
        settings (dict): The world's CLIP settings.
        dest (str): The world's CLIP folder (written whole or not at all).
        folder (str): The shipped CLIP's folder.

    Returns:
        bool: Whether it was written; when not, the reason is logged (a
        damaged folder included: the world then trains its own CLIP).
    """
    model = None
    try:
        reason = why_not_shipped(settings, folder)
        if reason is None:
            model = load_shipped_clip(folder)
            model_cfg = ShippedFolder.read(folder).model_cfg
    except READ_ERRORS as e:
        reason = (f'it cannot be read ({type(e).__name__}: {e}); '
                  f'{RESTORE}')
    if model is None:
        logger.info(f'toy world: the shipped CLIP ({folder}) is not used: '
                    f'{reason}; training one')
        return False
    dest = osp.normpath(dest)
    tmp = dest + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    save_open_clip_folder(model, tmp, model_cfg)
    os.replace(tmp, dest)
    return True
