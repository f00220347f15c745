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
import torch.nn as nn
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from mmpcm.utils.compat import save_safetensors
from mmpcm.text import tokenize_caption
from .grounding import patch_objects
from .render import REAL_STYLE, render_scene_with_masks
from .scenes import (COLOURS, SHAPES, Scene, SceneObject, describe,
                     with_objects)

logger = logging.getLogger(__name__)

TOY_CLIP_CFG = dict(
    embed_dim=64,
    vision_cfg=dict(image_size=48, patch_size=8, width=64, layers=2,
                    head_width=16, mlp_ratio=2.0),
    text_cfg=dict(context_length=32, vocab_size=49408, width=64, heads=4,
                  layers=2, mlp_ratio=2.0),
)
"""The smallest open_clip model config of the toy world: 48 px images,
6x6 = 36 patches of width 64, a 64-d joint space (:func:`toy_clip_cfg`
widens the image tower)."""


def toy_clip_cfg(width: int = 64, layers: int = 2) -> dict:
    """:data:`TOY_CLIP_CFG` with an image tower of the given size (four
    attention heads).

    Args:
        width (int): The image tower's width (the patch tokens' ``W``), a
            multiple of 4.
        layers (int): Its transformer blocks.

    Returns:
        dict: An open_clip model config (same images, text tower and joint
        space).
    """
    vision = dict(TOY_CLIP_CFG['vision_cfg'], width=width, layers=layers,
                  head_width=width // 4)
    return dict(TOY_CLIP_CFG, vision_cfg=vision)

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
    """Training settings of the toy CLIP (see :func:`train_toy_clip`).

    Attributes:
        grounding_steps (int): Steps of the first stage, which trains the
            image tower alone to name the words of an image's captions and
            the object under each patch.
        steps (int): Steps of the second stage: contrastive training of both
            towers (with hard negative captions) plus the grounding losses,
            now on the text tower's embeddings of the words.
        batch_size (int): Images per step (in-batch negatives).
        lr (float): Peak AdamW learning rate of each stage (cosine decay, 5%
            warm-up).
        vision_lr_scale (float): The image tower's learning rate in the
            second stage, relative to ``lr``.
        weight_decay (float): AdamW weight decay.
        hard_negatives (bool): Add one hard negative caption per image in
            the second stage.
        captions_per_target (int): Captions drawn per scene to estimate how
            often each word is said about it.
        seed (int): Seed of the model init, batch order and captions.
    """
    grounding_steps: int = 800
    steps: int = 200
    batch_size: int = 128
    lr: float = 2e-3
    vision_lr_scale: float = 0.2
    weight_decay: float = 0.05
    hard_negatives: bool = True
    captions_per_target: int = 2
    seed: int = 0


def frozen_token_table(vocab_size: int, width: int, seed: int) -> torch.Tensor:
    """The text tower's token table as training keeps it: ``(V, D)`` float32
    normal with std 0.02 (open_clip's init), from numpy's legacy
    ``RandomState``, whose stream numpy keeps fixed across versions."""
    rng = np.random.RandomState(seed)
    table = rng.standard_normal((vocab_size, width)).astype(np.float32) * 0.02
    return torch.from_numpy(table)


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
    images, _ = render_with_masks(scenes, seed, size, preprocess_cfg)
    text_rng = random.Random(seed)
    return images, [describe(s, text_rng) for s in scenes]


def render_with_masks(scenes: Sequence[Scene], seed: int, size: int,
                      preprocess_cfg: dict
                      ) -> Tuple[torch.Tensor, List[np.ndarray]]:
    """Real renders (normalised for the CLIP) and their object masks."""
    rng = np.random.default_rng(seed)
    drawn = [render_scene_with_masks(s, rng, size, REAL_STYLE) for s in scenes]
    images = images_to_tensor([image for image, _ in drawn])
    return normalise(images, preprocess_cfg), [m for _, m in drawn]


# ---------------------------------------------------------------- labels
@dataclass
class GroundingTargets:
    """What the grounding losses are trained to say about each image.

    Attributes:
        words (list[str]): ``V`` label words (the concept nouns, then any
            other words such as colours).
        groups (list[list[int]]): Word indices whose losses are averaged
            together (shapes, other nouns, colours), so that the few shape
            words weigh as much as the many background words.
        word_share (torch.Tensor): ``(S, V)`` share of a scene's captions
            that name each word (``S`` training scenes).
        patch_word (torch.Tensor): ``(S, N)`` long (``N`` patches), the
            word of the object under each patch
            (:func:`~.grounding.patch_objects`), or ``V`` where the patch
            shows background.
    """
    words: List[str]
    groups: List[List[int]]
    word_share: torch.Tensor
    patch_word: torch.Tensor


def caption_word_shares(scenes: Sequence[Scene], words: Sequence[str],
                        rng: random.Random, count: int) -> torch.Tensor:
    """``(S, V)``: the share of ``count`` captions per scene naming each word
    (tokenised as the caption metric does)."""
    index = {w: i for i, w in enumerate(words)}
    shares = torch.zeros(len(scenes), len(words))
    for i, scene in enumerate(scenes):
        for _ in range(count):
            for w in set(tokenize_caption(describe(scene, rng))):
                if w in index:
                    shares[i, index[w]] += 1
    return shares / count


def grounding_targets(scenes: Sequence[Scene], masks: Sequence[np.ndarray],
                      nouns: Sequence[str], grid: int, seed: int,
                      captions_per_target: int) -> GroundingTargets:
    """The labels of the grounding losses, from captions and render masks.

    Args:
        scenes (Sequence[Scene]): The training scenes.
        masks (Sequence[np.ndarray]): ``(n_i, H, W)`` object masks of their
            renders.
        nouns (Sequence[str]): The concept nouns (the shape words among them
            label the patches).
        grid (int): The ViT's patch grid side.
        seed (int): Seed of the captions drawn.
        captions_per_target (int): Captions drawn per scene.

    Returns:
        GroundingTargets: The labels.
    """
    words = list(nouns) + [c for c in COLOURS if c not in nouns]
    shape_ids = [words.index(s) for s in SHAPES if s in words]
    other = [i for i in range(len(nouns)) if i not in shape_ids]
    colours = list(range(len(nouns), len(words)))
    shares = caption_word_shares(scenes, words, random.Random(seed),
                                 captions_per_target)
    patch_word = torch.full((len(scenes), grid * grid), len(words),
                            dtype=torch.long)
    for i, (scene, mask) in enumerate(zip(scenes, masks)):
        for j, obj in enumerate(patch_objects(mask, grid).tolist()):
            if obj >= 0 and scene.objects[obj].shape in words:
                patch_word[i, j] = words.index(scene.objects[obj].shape)
    groups = [g for g in (shape_ids, other, colours) if g]
    return GroundingTargets(words, groups, shares, patch_word)


def hard_negative_caption(scene: Scene, rng: random.Random) -> str:
    """A caption of the scene with one salient fact wrong: an object's shape
    or colour changed, an object left out or one added (hard negatives in
    the manner of NegCLIP, Yuksekgonul et al., ICLR 2023)."""
    objects = list(scene.objects)
    i = rng.randrange(len(objects))
    obj = objects[i]
    kind = rng.random()
    if kind < 0.15 and len(objects) > 1:
        objects.pop(i)
    elif kind < 0.3 and len(objects) < 3:
        objects.append(SceneObject(rng.choice(SHAPES), rng.choice(COLOURS),
                                   rng.choice(('small', 'big'))))
    elif kind < 0.65:
        objects[i] = SceneObject(obj.shape, rng.choice(
            [c for c in COLOURS if c != obj.colour]), obj.size)
    else:
        objects[i] = SceneObject(rng.choice(
            [s for s in SHAPES if s != obj.shape]), obj.colour, obj.size)
    return describe(with_objects(scene, objects), rng)


# ---------------------------------------------------------------- losses
class GroundingHeads(nn.Module):
    """The grounding losses' free parameters.

    Args:
        num_words (int): ``V`` label words.
        embed_dim (int): The joint space's width ``D``.

    Attributes:
        word_embeds (nn.Parameter): ``(V, D)`` word vectors of the first
            stage; the second stage distils the text tower's embeddings of
            the words onto them.
        background (nn.Parameter): ``(1, D)`` the "no object" vector that
            background patches are trained towards.
        bias (nn.Parameter): Scalar bias of the caption-word logits
            (initialised to -3).
    """

    def __init__(self, num_words: int, embed_dim: int) -> None:
        super().__init__()
        self.word_embeds = nn.Parameter(torch.randn(num_words, embed_dim) * 0.1)
        self.background = nn.Parameter(torch.randn(1, embed_dim) * 0.1)
        self.bias = nn.Parameter(torch.tensor(-3.0))

    def loss(self, image_embeds: torch.Tensor, patch_joint: torch.Tensor,
             word_embeds: torch.Tensor, targets: GroundingTargets,
             idx: torch.Tensor) -> torch.Tensor:
        """Caption-word and patch-word losses of a batch.

        The image side is not normalised: a word's logit is the image
        embedding's length times its cosine to the word, so each image's
        ranking of the words (all that concept retrieval uses) is the
        cosine's.

        Args:
            image_embeds (torch.Tensor): ``(B, D)`` image embeddings.
            patch_joint (torch.Tensor): ``(B, N, D)`` patch tokens in the
                joint space (after ``ln_post`` and ``proj``).
            word_embeds (torch.Tensor): ``(V, D)`` word vectors.
            targets (GroundingTargets): The labels of all training scenes.
            idx (torch.Tensor): ``(B, )`` the batch's scene indices.

        Returns:
            torch.Tensor: The summed loss.
        """
        table = F.normalize(word_embeds, dim=-1)  # (V, D)
        logits = image_embeds @ table.t() + self.bias  # (B, V)
        bce = F.binary_cross_entropy_with_logits(
            logits, targets.word_share[idx], reduction='none')  # (B, V)
        loss = sum(bce[:, g].mean() for g in targets.groups)
        table = torch.cat([table, F.normalize(self.background, dim=-1)])
        patch_logits = (patch_joint @ table.t()).flatten(0, 1)  # (B*N, V+1)
        labels = targets.patch_word[idx].flatten()  # (B*N, )
        on_object = labels < len(targets.words)
        for part in (on_object, ~on_object):
            if part.any():
                loss = loss + F.cross_entropy(patch_logits[part], labels[part])
        return loss


def _contrastive_loss(model: nn.Module, image_embeds: torch.Tensor,
                      text_embeds: torch.Tensor) -> torch.Tensor:
    """InfoNCE over images x captions; texts past the batch size are hard
    negatives, used on the image -> text side only."""
    img = F.normalize(image_embeds, dim=-1)  # (B, D)
    txt = F.normalize(text_embeds, dim=-1)  # (T, D), T >= B
    logits = model.logit_scale.exp() * img @ txt.t()  # (B, T)
    labels = torch.arange(len(img))
    return (F.cross_entropy(logits, labels) +
            F.cross_entropy(logits[:, :len(img)].t(), labels)) / 2


def _schedule(opt: torch.optim.Optimizer,
              steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: min((t + 1) / warmup, 0.5 * (1 + np.cos(
            np.pi * min(t, steps) / max(1, steps)))))


def _log(stage: str, step: int, steps: int, loss: torch.Tensor,
         start: float) -> None:
    if step % 100 == 0 or step == steps - 1:
        logger.info(f'toy CLIP {stage} step {step}/{steps} loss '
                    f'{loss.item():.3f} ({time.time() - start:.0f}s)')


def train_toy_clip(scenes: Sequence[Scene],
                   cfg: CLIPTrainConfig = CLIPTrainConfig(),
                   nouns: Sequence[str] = SHAPES,
                   model_cfg: dict = TOY_CLIP_CFG,
                   preprocess_cfg: dict = TOY_CLIP_PREPROCESS_CFG
                   ) -> nn.Module:
    """Train a CLIP on real renders of ``scenes`` that grounds their objects.

    Real CLIP learns to name COCO's objects from 400M captioned images; the
    toy one has some thousand scenes and minutes of CPU, so it is also
    told what real CLIP must infer (docs: projects/toyworld/README.md):

    1. *Grounding* (``cfg.grounding_steps``): the image tower alone learns,
       against free word vectors, how often each word (``nouns`` and the
       grammar's colours, :data:`~.scenes.COLOURS`) is said in the scene's
       captions, and which shape lies under each patch (from the render's
       object masks; background patches towards a "no object" vector).
       This is the region-word alignment of grounded pre-training
       (RegionCLIP, GLIP), as labels.
    2. *Contrastive* (``cfg.steps``): InfoNCE between the images and a fresh
       caption of each, plus one hard negative caption per image
       (:func:`hard_negative_caption`), while the grounding losses go on
       with the text tower's prompt-template embeddings of the words (as
       PCM-Net's concept table embeds them), which are also pulled onto the
       first stage's word vectors. The image tower learns at
       ``cfg.vision_lr_scale`` of the rate.

    Args:
        scenes (Sequence[Scene]): Training scenes (rendered once; a fresh
            caption of each is drawn every time it is used).
        cfg (CLIPTrainConfig): Training settings.
        nouns (Sequence[str]): The concept nouns to ground.
        model_cfg (dict): open_clip model config.
        preprocess_cfg (dict): open_clip preprocess config; the model
            carries it (``model.visual.preprocess_cfg``, as open_clip sets
            it on a loaded model) and the images are normalised with it.

    Returns:
        nn.Module: The trained open_clip ``CLIP`` in eval mode.
    """
    from mmpcm.preprocessing.concepts import DEFAULT_TEMPLATES
    torch.manual_seed(cfg.seed)
    model = open_clip.model.CLIP(**model_cfg)
    open_clip.model.set_model_preprocess_cfg(model, preprocess_cfg)
    # The 49,408-token BPE table stays at a seeded random init: the grammar
    # uses ~100 of its rows, and a dense update of all of them would be most
    # of a CPU step. It is drawn from a stream numpy keeps fixed, so a
    # shipped model need not carry it (pretrained.py).
    text_cfg = model_cfg['text_cfg']
    with torch.no_grad():
        model.token_embedding.weight.copy_(frozen_token_table(
            text_cfg['vocab_size'], text_cfg['width'], cfg.seed))
    model.token_embedding.weight.requires_grad_(False)
    vision = model_cfg['vision_cfg']
    size, grid = vision['image_size'], vision['image_size'] // vision['patch_size']
    ctx = model_cfg['text_cfg']['context_length']
    images, masks = render_with_masks(scenes, cfg.seed, size,
                                      model.visual.preprocess_cfg)
    targets = grounding_targets(scenes, masks, nouns, grid, cfg.seed + 2,
                                cfg.captions_per_target)
    heads = GroundingHeads(len(targets.words), model_cfg['embed_dim'])
    text_rng = random.Random(cfg.seed + 1)
    gen = torch.Generator().manual_seed(cfg.seed)
    visual = model.visual

    def batch():
        return torch.randperm(len(scenes), generator=gen)[:cfg.batch_size]

    def encode(idx):
        pooled, patches = visual(images[idx])  # (B, D), (B, N, W)
        return pooled, patches @ visual.proj  # (B, N, D)

    visual.output_tokens = True  # training reads the patch tokens too
    model.train()
    start = time.time()
    opt = torch.optim.AdamW(list(visual.parameters()) + list(heads.parameters()),
                            lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _schedule(opt, cfg.grounding_steps)
    for step in range(cfg.grounding_steps):
        idx = batch()
        loss = heads.loss(*encode(idx), heads.word_embeds, targets, idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        _log('grounding', step, cfg.grounding_steps, loss, start)

    vision_ids = {id(p) for p in visual.parameters()}
    others = [p for p in model.parameters()
              if p.requires_grad and id(p) not in vision_ids]
    opt = torch.optim.AdamW(
        [dict(params=list(visual.parameters()),
              lr=cfg.lr * cfg.vision_lr_scale),
         dict(params=others + list(heads.parameters()), lr=cfg.lr)],
        lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _schedule(opt, cfg.steps)
    for step in range(cfg.steps):
        idx = batch()
        chosen = [scenes[i] for i in idx.tolist()]
        texts = [describe(s, text_rng) for s in chosen]
        if cfg.hard_negatives:
            texts += [hard_negative_caption(s, text_rng) for s in chosen]
        template = text_rng.choice(DEFAULT_TEMPLATES)
        prompts = [template.format(w) for w in targets.words]
        text = model.encode_text(open_clip.tokenize(
            texts + prompts, context_length=ctx))  # (T + V, D)
        words = text[len(texts):]  # (V, D)
        pooled, patch_joint = encode(idx)
        distil = (1 - F.cosine_similarity(
            words, heads.word_embeds.detach(), dim=-1)).mean()
        loss = (_contrastive_loss(model, pooled, text[:len(texts)]) +
                heads.loss(pooled, patch_joint, words, targets, idx) + distil)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
        _log('contrastive', step, cfg.steps, loss, start)
    visual.output_tokens = False  # open_clip's default, as saved and loaded
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
