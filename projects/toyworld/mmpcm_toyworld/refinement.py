"""What a refined pairing (SynC, ``tools/data/refine_pairs.py``) did to the
toy world's synthetic pairs, judged against what the generator really drew.

The stand-in generator knows the scene behind every synthetic image: it
parses the caption it was given and draws that scene, or a broken one
(:meth:`~mmpcm_toyworld.generator.ToyDiffusionPipeline.draw_scene`). An image
is *faithful* to a caption when it shows the caption's content: the same
background and the same coloured shapes (sizes and the relation are not
compared: the generator draws an unsaid size at random).
"""
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .paths import WorldPaths
from .scenes import Scene, parse_caption
from .world import load_world_config, toy_pipeline

#: A scene's content: its background and its sorted (colour, shape) pairs.
Content = Tuple[str, Tuple[Tuple[str, str], ...]]


def scene_content(scene: Scene) -> Content:
    """What a caption says and an image must show (see the module doc)."""
    return scene.background, tuple(sorted((o.colour, o.shape)
                                          for o in scene.objects))


@dataclass
class RefinementReport:
    """A refined pairing against the generator's truth.

    Shares are in [0, 1]. A caption is *changed* when the pairing drops it
    or pairs it with another image; it is *fixed* when its own image is not
    faithful to it and the pairing drops it or pairs it with a faithful one.

    Attributes:
        num_pairs (int): Captions (pairs) before refinement.
        kept (int): Pairs in the pairing.
        dropped (int): Captions the pairing dropped.
        repaired (int): Kept captions paired with another image.
        faithful_before (float): Pairs whose own image is faithful.
        faithful_after (float): Kept pairs whose image is faithful.
        fix_recall (float): Unfaithful pairs that were fixed.
        change_precision (float): Changed captions whose own image was
            unfaithful.
        harmed (int): Captions with a faithful own image that the pairing
            moved to an unfaithful one.
    """
    num_pairs: int
    kept: int
    dropped: int
    repaired: int
    faithful_before: float
    faithful_after: float
    fix_recall: float
    change_precision: float
    harmed: int

    def to_dict(self) -> Dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for logs."""
        return (f'SynC kept {self.kept} of {self.num_pairs} pairs '
                f'({self.repaired} re-paired, {self.dropped} dropped); '
                f'faithful images {100 * self.faithful_before:.1f}% -> '
                f'{100 * self.faithful_after:.1f}%; unfaithful pairs fixed '
                f'{100 * self.fix_recall:.1f}% (recall), changes that '
                f'touched an unfaithful pair {100 * self.change_precision:.1f}'
                f'% (precision); faithful pairs made unfaithful: '
                f'{self.harmed}')


def judge_pairing(captions: Sequence[str], drawn: Sequence[Content],
                  caption_idx: np.ndarray,
                  image_idx: np.ndarray) -> RefinementReport:
    """Score a pairing of store rows against the drawn scenes.

    Args:
        captions (Sequence[str]): Caption of each store row (P rows).
        drawn (Sequence[Content]): Content of the image of each store row,
            as the generator drew it.
        caption_idx (np.ndarray): ``(K,)`` kept captions' rows.
        image_idx (np.ndarray): ``(K,)`` the rows whose images they now use.

    Returns:
        RefinementReport: The counts and shares.

    Raises:
        ValueError: If the lengths disagree or a caption is kept twice.
    """
    if len(captions) != len(drawn) or len(caption_idx) != len(image_idx):
        raise ValueError('captions/drawn or caption_idx/image_idx lengths '
                         'differ')
    if len(set(caption_idx.tolist())) != len(caption_idx):
        raise ValueError('a caption is kept more than once')
    said = [scene_content(parse_caption(c)) for c in captions]
    own_ok = np.array([s == d for s, d in zip(said, drawn)])  # (P, )
    new_image = np.full(len(captions), -1)  # (P, ) -1: dropped
    new_image[caption_idx] = image_idx
    kept = new_image >= 0
    new_ok = np.array([k and said[c] == drawn[new_image[c]]
                       for c, k in enumerate(kept)])
    changed = new_image != np.arange(len(captions))
    unfaithful = ~own_ok
    fixed = unfaithful & (~kept | new_ok)
    return RefinementReport(
        num_pairs=len(captions),
        kept=int(kept.sum()),
        dropped=int((~kept).sum()),
        repaired=int((kept & changed).sum()),
        faithful_before=float(own_ok.mean()),
        faithful_after=float(new_ok[kept].mean()) if kept.any() else 0.0,
        fix_recall=(float(fixed.sum() / unfaithful.sum())
                    if unfaithful.any() else 1.0),
        change_precision=(float((changed & unfaithful).sum() / changed.sum())
                          if changed.any() else 1.0),
        harmed=int((own_ok & kept & ~new_ok).sum()))


def drawn_contents(world_root: str) -> Dict[str, Content]:
    """``{synthetic image file: content}`` from the generation records.

    Files are relative to the synthetic folder, as the feature store's
    records name them (``record['image']``).
    """
    from mmpcm.preprocessing.generation import load_generation_records
    paths = WorldPaths(world_root)
    pipe = toy_pipeline(load_world_config(paths))
    return {
        r.file: scene_content(pipe.draw_scene(r.caption, r.seed)[0])
        for r in load_generation_records(paths.synthetic).values()
        if r.status == 'ok'
    }


def measure_refinement(world_root: str, pairing_dir: str) -> RefinementReport:
    """Judge the pairing in ``pairing_dir`` of the world's training store.

    Raises:
        InputError: If the pairing was made for another store (naming its
            file).
    """
    from mmpcm.datasets.feature_store import FeatureStore, load_pairing
    store = FeatureStore(WorldPaths(world_root).train_features)
    pairing = load_pairing(pairing_dir, store)
    records: List[dict] = store.records
    contents = drawn_contents(world_root)
    return judge_pairing([r['caption'] for r in records],
                         [contents[r['image']] for r in records],
                         pairing.caption_idx, pairing.image_idx)
