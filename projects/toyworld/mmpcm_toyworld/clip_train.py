"""Train the toy world's CLIP contrastively and save it the open_clip way.

The model is a plain open_clip ``CLIP`` with a small custom config, trained
on real renders of captions disjoint from the captioning corpus (as OpenAI's
CLIP never saw COCO's captions), and saved as an open_clip ``local-dir``
folder (``open_clip_config.json`` + ``open_clip_model.safetensors``) that
``open_clip.create_model('local-dir:<folder>')`` loads exactly as it loads
published weights.
"""
import json
import logging
import os
import os.path as osp
import random
import time
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from mmpcm.utils.compat import save_safetensors
from .render import REAL_STYLE, render_scene
from .scenes import Scene, describe

logger = logging.getLogger(__name__)

TOY_CLIP_CFG = dict(
    embed_dim=64,
    vision_cfg=dict(image_size=48, patch_size=8, width=64, layers=2,
                    head_width=16, mlp_ratio=2.0),
    text_cfg=dict(context_length=32, vocab_size=49408, width=64, heads=4,
                  layers=2, mlp_ratio=2.0),
)
"""The open_clip model config: 48 px images, 6x6 = 36 patches of width 64,
a 64-d joint space."""

TOY_CLIP_PREPROCESS_CFG = dict(
    size=TOY_CLIP_CFG['vision_cfg']['image_size'],
    mean=list(OPENAI_DATASET_MEAN),
    std=list(OPENAI_DATASET_STD),
    interpolation='bicubic',
    resize_mode='shortest')
"""The open_clip preprocess config saved with the model (OpenAI's
normalisation); training normalises its images with the same numbers."""


@dataclass
class CLIPTrainConfig:
    """Contrastive training settings.

    Attributes:
        steps (int): Optimiser steps.
        batch_size (int): Pairs per step (in-batch negatives).
        lr (float): Peak AdamW learning rate (cosine decay, 5% warm-up).
        weight_decay (float): AdamW weight decay.
        seed (int): Seed of the model init and batch order.
    """
    steps: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0


def images_to_tensor(images: Sequence) -> torch.Tensor:
    """PIL images -> ``(B, 3, H, W)`` float in [0, 255]."""
    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images])  # (B, H, W, 3)
    return torch.from_numpy(arr).permute(0, 3, 1, 2)  # (B, 3, H, W)


def normalise(images: torch.Tensor, preprocess_cfg: dict) -> torch.Tensor:
    """CLIP's input normalisation of [0, 255] images (as the backbone does).

    Args:
        images (torch.Tensor): ``(B, 3, H, W)`` float in [0, 255].
        preprocess_cfg (dict): The model's open_clip preprocess config; its
            ``mean`` and ``std`` (of [0, 1] images) are used.

    Returns:
        torch.Tensor: The normalised images, same shape.
    """
    mean = torch.tensor(preprocess_cfg['mean']).view(1, 3, 1, 1) * 255
    std = torch.tensor(preprocess_cfg['std']).view(1, 3, 1, 1) * 255
    return (images - mean) / std


def render_training_pairs(scenes: Sequence[Scene], seed: int, size: int,
                          preprocess_cfg: dict
                          ) -> Tuple[torch.Tensor, List[str]]:
    """One real render (normalised for the CLIP) and one caption per scene."""
    rng = np.random.default_rng(seed)
    text_rng = random.Random(seed)
    images = [render_scene(s, rng, size, REAL_STYLE) for s in scenes]
    captions = [describe(s, text_rng) for s in scenes]
    return normalise(images_to_tensor(images), preprocess_cfg), captions


def train_toy_clip(scenes: Sequence[Scene],
                   cfg: CLIPTrainConfig = CLIPTrainConfig(),
                   model_cfg: dict = TOY_CLIP_CFG,
                   preprocess_cfg: dict = TOY_CLIP_PREPROCESS_CFG
                   ) -> torch.nn.Module:
    """Train a CLIP on real renders of ``scenes`` with the InfoNCE loss.

    Args:
        scenes (Sequence[Scene]): Training scenes (rendered once; a fresh
            caption of each is drawn every time it is used).
        cfg (CLIPTrainConfig): Training settings.
        model_cfg (dict): open_clip model config.
        preprocess_cfg (dict): open_clip preprocess config; the model
            carries it (``model.visual.preprocess_cfg``, as open_clip sets
            it on a loaded model) and the images are normalised with it.

    Returns:
        nn.Module: The trained open_clip ``CLIP`` in eval mode.
    """
    torch.manual_seed(cfg.seed)
    model = open_clip.model.CLIP(**model_cfg)
    open_clip.model.set_model_preprocess_cfg(model, preprocess_cfg)
    # The 49,408-token BPE table stays at its random init: the grammar uses
    # ~100 of its rows, and a dense update of all of them would be most of a
    # CPU step.
    model.token_embedding.weight.requires_grad_(False)
    size = model_cfg['vision_cfg']['image_size']
    ctx = model_cfg['text_cfg']['context_length']
    images, _ = render_training_pairs(scenes, cfg.seed, size,
                                      model.visual.preprocess_cfg)
    text_rng = random.Random(cfg.seed + 1)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    warmup = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: min((t + 1) / warmup, 0.5 * (1 + np.cos(
            np.pi * min(t, cfg.steps) / cfg.steps))))
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    start = time.time()
    for step in range(cfg.steps):
        idx = torch.randperm(len(scenes), generator=gen)[:cfg.batch_size]
        texts = [describe(scenes[i], text_rng) for i in idx.tolist()]
        tokens = open_clip.tokenize(texts, context_length=ctx)  # (B, ctx)
        img = F.normalize(model.encode_image(images[idx]), dim=-1)  # (B, D)
        txt = F.normalize(model.encode_text(tokens), dim=-1)  # (B, D)
        logits = model.logit_scale.exp() * img @ txt.t()  # (B, B)
        labels = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, labels) +
                F.cross_entropy(logits.t(), labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
        if step % 50 == 0 or step == cfg.steps - 1:
            logger.info(f'toy CLIP step {step}/{cfg.steps} loss {loss.item():.3f}'
                        f' ({time.time() - start:.0f}s)')
    return model.eval()


def save_open_clip_folder(model: torch.nn.Module, folder: str,
                          model_cfg: dict = TOY_CLIP_CFG) -> str:
    """Save as an open_clip ``local-dir`` folder; returns the model name.

    Args:
        model (nn.Module): A CLIP of :func:`train_toy_clip`; its preprocess
            config (``model.visual.preprocess_cfg``) is saved with it.
        folder (str): Output folder (created if missing).
        model_cfg (dict): The model's open_clip model config.

    Returns:
        str: ``'local-dir:<folder>'``, the name open_clip loads it by.
    """
    os.makedirs(folder, exist_ok=True)
    config = dict(model_cfg=model_cfg,
                  preprocess_cfg=dict(model.visual.preprocess_cfg))
    with open(osp.join(folder, 'open_clip_config.json'), 'w') as f:
        json.dump(config, f, indent=2)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_safetensors(state, osp.join(folder, 'open_clip_model.safetensors'))
    return f'local-dir:{folder}'


@torch.no_grad()
def retrieval_accuracy(model: torch.nn.Module, scenes: Sequence[Scene],
                       seed: int = 123) -> float:
    """Image -> caption top-1 accuracy over the given scenes (a sanity check).

    The images are normalised with the model's own preprocess config
    (``model.visual.preprocess_cfg``: open_clip's loader sets it from the
    saved ``open_clip_config.json``).
    """
    size = model.visual.image_size[0]
    ctx = model.context_length
    images, captions = render_training_pairs(scenes, seed, size,
                                             model.visual.preprocess_cfg)
    img = F.normalize(model.encode_image(images), dim=-1)
    txt = F.normalize(model.encode_text(
        open_clip.tokenize(captions, context_length=ctx)), dim=-1)
    pred = (img @ txt.t()).argmax(-1)
    return (pred == torch.arange(len(scenes))).float().mean().item()
