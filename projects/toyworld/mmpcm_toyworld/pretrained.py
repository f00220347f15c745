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
random init (:func:`frozen_token_table`), so it is rebuilt on load and
checked against the SHA-256 recorded beside the weights. The record also
holds a fingerprint of the real renders (:func:`render_fingerprint`): a
renderer that draws other pixels than the CLIP was trained on makes the
shipped weights stale, and the build trains instead of using them.
"""
import hashlib
import json
import logging
import os
import os.path as osp
import shutil
from typing import Dict, Optional

import numpy as np
import open_clip
import torch

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
WEIGHTS = 'weights.safetensors'
RECORD = 'record.json'
TOKEN_TABLE = 'token_embedding.weight'


def tensor_sha256(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's float32 bytes (C order)."""
    data = tensor.detach().float().contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


def render_fingerprint(size: int, count: int = 16) -> str:
    """SHA-256 of ``count`` real renders and their masks (seed 0).

    Changes whenever the renderer, the real style or the scene sampler
    draws anything differently.
    """
    import random
    rng = random.Random(0)
    pixels = np.random.default_rng(0)
    digest = hashlib.sha256()
    for _ in range(count):
        image, masks = render_scene_with_masks(sample_scene(rng), pixels,
                                               size, REAL_STYLE)
        digest.update(np.asarray(image).tobytes())
        digest.update(np.packbits(masks).tobytes())
    return digest.hexdigest()


def save_shipped_clip(model: torch.nn.Module, model_cfg: dict,
                      settings: Dict, folder: str = SHIPPED_CLIP,
                      **facts) -> None:
    """Write a trained toy CLIP as the shipped one.

    Args:
        model (nn.Module): A CLIP of :func:`~.clip_train.train_toy_clip`.
        model_cfg (dict): Its open_clip model config.
        settings (dict): The world's CLIP settings it was trained for
            (:meth:`~.world.WorldConfig.clip_settings`).
        folder (str): Output folder (replaced).
        **facts: Further entries of the record (time, machine, command).
    """
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if k != TOKEN_TABLE}
    tmp = folder + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    config = dict(model_cfg=model_cfg,
                  preprocess_cfg=dict(model.visual.preprocess_cfg))
    atomic_write_json(osp.join(tmp, 'open_clip_config.json'), config)
    save_safetensors(state, osp.join(tmp, WEIGHTS))
    atomic_write_json(osp.join(tmp, RECORD), dict(
        settings=settings,
        render_fingerprint=render_fingerprint(
            model_cfg['vision_cfg']['image_size']),
        token_table_sha256=tensor_sha256(model.state_dict()[TOKEN_TABLE]),
        **facts))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


#: Settings that hold the scenes a world keeps from its CLIP: the first
#: ``num_test_scenes + num_corpus_scenes`` distinct scenes of the seed.
HELD_OUT = ('num_test_scenes', 'num_corpus_scenes')


def misfit(recorded: Dict, wanted: Dict) -> Optional[str]:
    """Why a CLIP trained for ``recorded`` settings cannot serve a world of
    ``wanted`` settings (None: it can).

    It can when the model, steps, seed and CLIP scene count are the same and
    the world's test and corpus scenes are among the scenes the CLIP was
    kept from (:func:`~.world.split_scenes` draws them first, in the same
    order whatever the counts).
    """
    other = sorted(k for k in set(recorded) | set(wanted)
                   if k not in HELD_OUT and recorded.get(k) != wanted.get(k))
    if other:
        return 'it was trained with other ' + ', '.join(other)
    if sum(wanted[k] for k in HELD_OUT) > sum(recorded[k] for k in HELD_OUT):
        return ('this world has more test and corpus scenes than it was '
                'kept from')
    return None


def _stale(folder: str, settings: Dict) -> Optional[str]:
    """Why the shipped CLIP does not fit ``settings`` (None: it fits)."""
    path = osp.join(folder, RECORD)
    if not osp.isfile(path):
        return f'{path} is missing'
    with open(path, encoding='utf-8') as f:
        record = json.load(f)
    reason = misfit(record.get('settings', {}), settings)
    if reason is not None:
        return reason
    with open(osp.join(folder, 'open_clip_config.json'),
              encoding='utf-8') as f:
        size = json.load(f)['model_cfg']['vision_cfg']['image_size']
    if record.get('render_fingerprint') != render_fingerprint(size):
        return 'the renderer now draws other pixels than it was trained on'
    return None


def load_shipped_clip(folder: str = SHIPPED_CLIP) -> torch.nn.Module:
    """The shipped CLIP as an open_clip ``CLIP`` in eval mode.

    Raises:
        ValueError: If the rebuilt token table is not the recorded one.
    """
    from safetensors.torch import load_file
    with open(osp.join(folder, 'open_clip_config.json'),
              encoding='utf-8') as f:
        config = json.load(f)
    with open(osp.join(folder, RECORD), encoding='utf-8') as f:
        record = json.load(f)
    model_cfg = config['model_cfg']
    model = open_clip.model.CLIP(**model_cfg)
    open_clip.model.set_model_preprocess_cfg(model, config['preprocess_cfg'])
    state = load_file(osp.join(folder, WEIGHTS))
    text = model_cfg['text_cfg']
    state[TOKEN_TABLE] = frozen_token_table(
        text['vocab_size'], text['width'], record['settings']['seed'])
    if tensor_sha256(state[TOKEN_TABLE]) != record['token_table_sha256']:
        raise ValueError('the rebuilt token table differs from the one the '
                         'shipped CLIP was trained with')
    model.load_state_dict(state)
    return model.eval()


def restore_shipped_clip(settings: Dict, dest: str,
                         folder: str = SHIPPED_CLIP) -> bool:
    """Write the shipped CLIP to ``dest`` as an open_clip ``local-dir``
    folder if it can serve a world of ``settings`` (:func:`misfit`).

    Args:
        settings (dict): The world's CLIP settings.
        dest (str): The world's CLIP folder (written whole or not at all).
        folder (str): The shipped CLIP's folder.

    Returns:
        bool: Whether it was written; when not, the reason is logged.
    """
    reason = _stale(folder, settings)
    if reason is None:
        try:
            model = load_shipped_clip(folder)
        except ValueError as e:
            reason = str(e)
    if reason is not None:
        logger.info(f'toy world: the shipped CLIP ({folder}) is not used: '
                    f'{reason}; training one')
        return False
    with open(osp.join(folder, 'open_clip_config.json'),
              encoding='utf-8') as f:
        model_cfg = json.load(f)['model_cfg']
    tmp = dest + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    save_open_clip_folder(model, tmp, model_cfg)
    os.replace(tmp, dest)
    return True
