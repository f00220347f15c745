"""How well the world's CLIP grounds its objects, measured the way PCM-Net
uses CLIP: concept retrieval from the global embedding, patch selection
in the joint space, and CLIP scores of synthetic pairs (CXE's weights).

The functions here take arrays; :func:`measure_world` reads them from a
built world (its test feature store, concept file, object masks, training
store and the generator's defect record).
"""
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from mmpcm.models.necks.pcm_neck import PCMNeck
from .paths import WorldPaths, load_test_masks
from .scenes import SHAPES, Scene


@dataclass
class GroundingReport:
    """The world CLIP's grounding figures (shares in [0, 1]).

    Attributes:
        objects_in_top_k (float): Images all of whose shapes are among the
            top-K retrieved concepts.
        any_object_in_top_k (float): Images with at least one of their
            shapes among them.
        shape_top1 (float): Images whose best shape concept (argmax over the
            shape words only) is one of their shapes.
        shape_top1_chance (float): The same for a uniform random guess.
        patches_on_objects (float): PCM's selected patches that cover an
            object (at least ``min_cover`` of the patch's pixels).
        images_mostly_on_objects (float): Images with more than half of
            their selected patches on objects.
        object_pixel_share (float): Patches on objects among all patches
            (what random selection would score).
        clip_score_auc (float | None): ROC AUC of the CLIP score separating
            faithful (positive) from defective synthetic pairs.
        num_images (int): Test images measured.
        num_pairs (int): Synthetic pairs in the AUC.
        top_k (int): K of the concept retrieval.
    """
    objects_in_top_k: float
    any_object_in_top_k: float
    shape_top1: float
    shape_top1_chance: float
    patches_on_objects: float
    images_mostly_on_objects: float
    object_pixel_share: float
    clip_score_auc: Optional[float]
    num_images: int
    num_pairs: int
    top_k: int

    def to_dict(self) -> Dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for logs."""
        auc = ('n/a' if self.clip_score_auc is None else
               f'{self.clip_score_auc:.3f}')
        return (f'all objects in top-{self.top_k} concepts '
                f'{self.objects_in_top_k:.1%} (any '
                f'{self.any_object_in_top_k:.1%}), shape top-1 '
                f'{self.shape_top1:.1%} (chance {self.shape_top1_chance:.1%})'
                f', selected patches on objects {self.patches_on_objects:.1%}'
                f' (all patches {self.object_pixel_share:.1%}; images mostly '
                f'on objects {self.images_mostly_on_objects:.1%}), CLIP-score'
                f' AUC faithful vs defective {auc}')


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """ROC AUC by the rank statistic (ties count half).

    Args:
        scores (Sequence[float]): One score per item.
        positive (Sequence[bool]): Whether each item is a positive.

    Returns:
        float: The probability that a random positive scores above a random
        negative.

    Raises:
        ValueError: If either class is empty.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f'AUC needs both classes; got {n_pos} positives and '
                         f'{n_neg} negatives.')
    order = np.argsort(s, kind='mergesort')
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks over ties (1-based)
    _, first, counts = np.unique(sorted_s, return_index=True,
                                 return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _patch_shares(masks: np.ndarray, grid: int) -> np.ndarray:
    """``(n, grid * grid)``: each object's share of each patch's pixels."""
    n, h, w = masks.shape
    if h != w or h % grid:
        raise ValueError(f'{h}x{w} masks do not split into a {grid}x{grid} '
                         'patch grid.')
    p = h // grid
    return masks.reshape(n, grid, p, grid, p).mean((2, 4)).reshape(n, -1)


def patch_object_cover(masks: np.ndarray, grid: int,
                       min_cover: float = 0.25) -> np.ndarray:
    """Which patches of a ``grid x grid`` ViT grid cover an object.

    Args:
        masks (np.ndarray): ``(n, H, W)`` bool object masks of one image.
        grid (int): Patch grid side (``H`` must be a multiple).
        min_cover (float): Share of a patch's pixels that must be object.

    Returns:
        np.ndarray: ``(grid * grid, )`` bool, row-major like ViT tokens.
    """
    shares = _patch_shares(masks, grid)  # (n, N); objects never overlap
    return shares.sum(0) >= min_cover if len(shares) else np.zeros(
        grid * grid, dtype=bool)


def patch_objects(masks: np.ndarray, grid: int,
                  min_cover: float = 0.25) -> np.ndarray:
    """Which object each patch of a ``grid x grid`` ViT grid shows.

    Args:
        masks (np.ndarray): ``(n, H, W)`` bool object masks of one image.
        grid (int): Patch grid side (``H`` must be a multiple).
        min_cover (float): Share of a patch's pixels the object must cover.

    Returns:
        np.ndarray: ``(grid * grid, )`` int, the index of the object with the
        largest share of the patch, or -1 where no object covers
        ``min_cover`` of it.
    """
    shares = _patch_shares(masks, grid)  # (n, N)
    if not len(shares):
        return np.full(grid * grid, -1)
    best = shares.argmax(0)
    return np.where(shares.max(0) >= min_cover, best, -1)


def concept_hits(global_embeds: torch.Tensor, neck: PCMNeck,
                 concept_words: Sequence[str],
                 scenes: Sequence[Scene]) -> Dict[str, float]:
    """Concept retrieval as PCM does it, scored against the true shapes.

    Args:
        global_embeds (torch.Tensor): ``(B, D)`` image embeddings.
        neck (PCMNeck): Holds the concept table, ``top_k`` and ``tau``.
        concept_words (Sequence[str]): The table's words, in order.
        scenes (Sequence[Scene]): Each image's true scene.

    Returns:
        dict: ``objects_in_top_k``, ``any_object_in_top_k``,
        ``shape_top1``, ``shape_top1_chance``.
    """
    concepts = neck.retrieve_concepts(global_embeds)
    words = list(concept_words)
    shape_ids = [words.index(s) for s in SHAPES if s in words]
    table = torch.nn.functional.normalize(neck.concept_embeds.float(), dim=-1)
    g = torch.nn.functional.normalize(global_embeds.float(), dim=-1)
    best_shape = (g @ table[shape_ids].t()).argmax(-1)  # (B, )
    in_top_k, any_in, top1, chance = [], [], [], []
    for i, scene in enumerate(scenes):
        shapes = {o.shape for o in scene.objects}
        got = {words[j] for j in concepts.indices[i].tolist()}
        in_top_k.append(shapes <= got)
        any_in.append(bool(shapes & got))
        top1.append(words[shape_ids[int(best_shape[i])]] in shapes)
        chance.append(len(shapes) / len(shape_ids))
    return dict(objects_in_top_k=float(np.mean(in_top_k)),
                any_object_in_top_k=float(np.mean(any_in)),
                shape_top1=float(np.mean(top1)),
                shape_top1_chance=float(np.mean(chance)))


def patch_placement(patch_joint: torch.Tensor, global_embeds: torch.Tensor,
                    neck: PCMNeck, object_patches: np.ndarray
                    ) -> Dict[str, float]:
    """Where PCM's patch selection lands, against the objects' patches.

    Args:
        patch_joint (torch.Tensor): ``(B, N, D)`` normalised patch tokens in
            the joint space.
        global_embeds (torch.Tensor): ``(B, D)`` image embeddings.
        neck (PCMNeck): PCM's neck (retrieval and selection).
        object_patches (np.ndarray): ``(B, N)`` bool, patches that cover an
            object (:func:`patch_object_cover`).

    Returns:
        dict: ``patches_on_objects``, ``images_mostly_on_objects``,
        ``object_pixel_share``.
    """
    concepts = neck.retrieve_concepts(global_embeds)
    sim, _ = neck.textual_patches(patch_joint, concepts)
    selected = neck.select_patches(sim, concepts.mask).numpy()  # (B, N)
    on = (selected & object_patches).sum(1)  # (B, )
    count = selected.sum(1)
    return dict(patches_on_objects=float(on.sum() / max(1, count.sum())),
                images_mostly_on_objects=float(np.mean(on > count / 2)),
                object_pixel_share=float(object_patches.mean()))


def measure_grounding(global_embeds: torch.Tensor, patch_joint: torch.Tensor,
                      neck: PCMNeck, concept_words: Sequence[str],
                      scenes: Sequence[Scene], object_masks: List[np.ndarray],
                      pair_scores: Optional[Sequence[float]] = None,
                      pair_faithful: Optional[Sequence[bool]] = None,
                      min_cover: float = 0.25) -> GroundingReport:
    """All figures of :class:`GroundingReport`.

    Args:
        global_embeds (torch.Tensor): ``(B, D)`` test image embeddings.
        patch_joint (torch.Tensor): ``(B, N, D)`` their normalised patch
            tokens in the joint space.
        neck (PCMNeck): PCM's neck with the world's concept table.
        concept_words (Sequence[str]): The concept table's words.
        scenes (Sequence[Scene]): The test images' scenes.
        object_masks (list[np.ndarray]): ``(n_i, H, W)`` masks per image.
        pair_scores (Sequence[float], optional): CLIP scores of synthetic
            pairs.
        pair_faithful (Sequence[bool], optional): Whether each pair's image
            was generated without a defect.
        min_cover (float): See :func:`patch_object_cover`.

    Returns:
        GroundingReport: The figures.
    """
    grid = int(round(patch_joint.shape[1] ** 0.5))
    cover = np.stack([patch_object_cover(m, grid, min_cover)
                      for m in object_masks])  # (B, N)
    if (pair_scores is None) != (pair_faithful is None):
        raise ValueError('Give pair_scores and pair_faithful together.')
    auc = None
    if pair_scores is not None and len(set(pair_faithful)) == 2:
        auc = roc_auc(pair_scores, pair_faithful)
    return GroundingReport(
        **concept_hits(global_embeds, neck, concept_words, scenes),
        **patch_placement(patch_joint, global_embeds, neck, cover),
        clip_score_auc=auc, num_images=len(scenes),
        num_pairs=0 if pair_scores is None else len(pair_scores),
        top_k=neck.top_k)


def measure_world(root: str, scenes: Sequence[Scene]) -> GroundingReport:
    """Measure a built world's CLIP through the world's own files.

    Reads the test feature store (what PCM-Net is tested on), the concept
    file, the CLIP (for ``ln_post`` and ``proj``), the test renders' object
    masks, and the training store's CLIP scores beside the generator's
    defect record.

    Args:
        root (str): The world's folder.
        scenes (Sequence[Scene]): The test scenes, ``test_{i:05d}`` being
            ``scenes[i]``.

    Returns:
        GroundingReport: The figures.
    """
    import open_clip

    from mmpcm.datasets.feature_store import FeatureStore
    from mmpcm.models.backbones.open_clip_vit import OpenCLIPVisionBackbone
    from mmpcm.models.utils.concepts import ConceptVocabulary
    from mmpcm.utils.text_io import read_json
    paths = WorldPaths(root)
    # PCMNeck's defaults are the configs' (K = 5, M = 5, tau = 0.01,
    # threshold 0.0: configs/_base_/models/pcm_vit-b32.py)
    backbone = OpenCLIPVisionBackbone(
        clip=open_clip.create_model(paths.clip_model))
    concepts = ConceptVocabulary.load(paths.concepts, paths.clip_model)
    neck = PCMNeck(concepts, paths.clip_model, embed_dim=backbone.embed_dim)
    test = FeatureStore(paths.test_features)
    ids = [r['image_id'] for r in test.records]
    index = [int(str(i).rsplit('_', 1)[-1]) for i in ids]
    masks = load_test_masks(paths)
    with torch.no_grad():
        patches = torch.from_numpy(test.load_array('patch_tokens.npy')).float()
        patch_joint = backbone.to_joint_space(patches)  # (B, N, D)
        global_embeds = torch.from_numpy(test.load_array()).float()  # (B, D)
    defects = read_json(paths.defects, 'rebuild the world')['defects']
    train = FeatureStore(paths.train_features)
    scores, faithful = [], []
    for record in train.records:
        if record.get('image') in defects:
            scores.append(record['clip_score'])
            faithful.append(defects[record['image']] is None)
    return measure_grounding(global_embeds, patch_joint, neck,
                             concepts.words, [scenes[i] for i in index],
                             [masks[i] for i in ids], scores, faithful)
