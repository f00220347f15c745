"""Build the toy world's data: corpus and word vocabulary, test set, CLIP,
synthetic images, features, CLIP scores and concept vocabulary, through
mmpcm's real pipeline.

Every step writes its own output and is skipped when that output is
complete, so an interrupted build resumes.
"""
import logging
import os
import os.path as osp
import random
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import open_clip
import torch

from mmpcm.utils.cli import InputError
from mmpcm.utils.fileio import atomic_write, atomic_write_json
from mmpcm.utils.text_io import read_json
from .clip_train import (TOY_CLIP_CFG, CLIPTrainConfig, retrieval_accuracy,
                         save_open_clip_folder, toy_clip_cfg, train_toy_clip)
from .generator import ToyDiffusionPipeline
from .grounding import measure_world
from .paths import WorldPaths
from .pretrained import SHIPPED_CLIP, restore_shipped_clip
from .render import REAL_STYLE, render_scene_with_masks
from .scenes import (COLOURS, SHAPES, Scene, describe_many, sample_scene)

logger = logging.getLogger(__name__)

#: Concept candidates of the toy world: its shapes and background nouns.
TOY_NOUNS = tuple(SHAPES) + ('background', 'wall', 'grass', 'lawn', 'sand',
                             'beach', 'ground', 'water', 'pool', 'brick',
                             'picture')
#: Words seen fewer times in the corpus become ``<unk>`` in the vocabulary.
VOCAB_MIN_COUNT = 2


@dataclass
class WorldConfig:
    """Size and difficulty of the toy world.

    Attributes:
        num_corpus_scenes (int): Scenes whose captions form the training
            corpus (``captions_per_scene`` each, one synthetic image each).
        captions_per_scene (int): Paraphrases per scene (COCO has five).
        num_test_scenes (int): Held-out scenes rendered "real" for testing,
            with ``captions_per_scene`` references each.
        num_clip_scenes (int): Further scenes on whose real renders the CLIP
            is trained (disjoint from corpus and test).
        clip_width (int): Width of the CLIP's image tower (a multiple of 4).
        clip_layers (int): Its transformer blocks.
        defect_rate (float): Probability of a salient defect per synthetic
            image.
        clip_grounding_steps (int): Steps of the CLIP's first, grounding
            stage (see :func:`~.clip_train.train_toy_clip`).
        clip_steps (int): Steps of its contrastive stage.
        seed (int): Seed of everything in the world.
    """
    num_corpus_scenes: int = 1200
    captions_per_scene: int = 5
    num_test_scenes: int = 250
    num_clip_scenes: int = 20000
    defect_rate: float = 0.3
    clip_width: int = 128
    clip_layers: int = 4
    clip_grounding_steps: int = 1500
    clip_steps: int = 400
    seed: int = 0

    @property
    def image_size(self) -> int:
        return TOY_CLIP_CFG['vision_cfg']['image_size']

    @property
    def clip_model_cfg(self) -> dict:
        """The CLIP's open_clip model config."""
        return toy_clip_cfg(self.clip_width, self.clip_layers)

    def clip_train_config(self) -> CLIPTrainConfig:
        """The CLIP's training settings."""
        return CLIPTrainConfig(grounding_steps=self.clip_grounding_steps,
                               steps=self.clip_steps, seed=self.seed)

    def clip_settings(self) -> Dict:
        """The settings that decide the world's CLIP: its training scenes
        (the split: seed and the three scene counts), model and steps
        (:func:`~.pretrained.misfit` says when a CLIP serves a world)."""
        return {k: v for k, v in asdict(self).items()
                if k not in ('captions_per_scene', 'defect_rate')}


def split_scenes(cfg: WorldConfig) -> Tuple[List[Scene], List[Scene],
                                            List[Scene]]:
    """Disjoint corpus, test and CLIP-training scenes (by scene content)."""
    rng = random.Random(cfg.seed)
    wanted = cfg.num_test_scenes + cfg.num_corpus_scenes + cfg.num_clip_scenes
    seen: Dict[str, Scene] = {}
    for _ in range(wanted * 50):
        scene = sample_scene(rng)
        seen.setdefault(scene.key(), scene)
        if len(seen) == wanted:
            break
    scenes = list(seen.values())
    if len(scenes) < wanted:
        raise ValueError(f'The grammar yields only {len(scenes)} distinct '
                         f'scenes; {wanted} were asked for.')
    t, c = cfg.num_test_scenes, cfg.num_corpus_scenes
    return scenes[t:t + c], scenes[:t], scenes[t + c:]


# ---------------------------------------------------------------- steps
def write_corpus(paths: WorldPaths, scenes: Sequence[Scene],
                 cfg: WorldConfig) -> None:
    """The training corpus and its word vocabulary.

    ``captions_per_scene`` captions per scene (text only) go through
    mmpcm's corpus preparation for a caption list (what
    ``tools/data/prepare_corpus.py`` does with a text file), which writes
    ``train_captions.txt`` and ``vocab.json`` (words seen at least
    :data:`VOCAB_MIN_COUNT` times). A world built before it had a
    vocabulary (``corpus.txt``, no ``vocab.json``) gets both from its own
    corpus, and nothing else of it is rebuilt.
    """
    from mmpcm.preprocessing.corpus import prepare_corpus, write_text_corpus
    if osp.isfile(paths.corpus) and osp.isfile(paths.vocab):
        return
    if osp.isfile(paths.old_corpus):
        source = paths.old_corpus
    else:
        source = paths.corpus
        if not osp.isfile(source):
            rng = random.Random(cfg.seed + 1)
            write_text_corpus(source, [
                c for s in scenes
                for c in describe_many(s, rng, cfg.captions_per_scene)])
    prepared = prepare_corpus(source, paths.root, min_count=VOCAB_MIN_COUNT)
    if source == paths.old_corpus:
        os.remove(paths.old_corpus)
    logger.info(f'toy world: {prepared.vocab}: {prepared.vocab_report}')


def write_test_set(paths: WorldPaths, scenes: Sequence[Scene],
                   cfg: WorldConfig) -> None:
    """Real renders of the held-out scenes, their COCO-format references,
    their objects' masks and their objects for CHAIR (by shape and by
    coloured shape)."""
    outputs = (paths.test_gt, paths.test_masks, paths.test_objects,
               paths.test_coloured_objects, paths.object_synonyms,
               paths.coloured_object_synonyms)
    if all(osp.isfile(p) for p in outputs):
        return
    os.makedirs(paths.test_images, exist_ok=True)
    rng = np.random.default_rng(cfg.seed + 2)
    text_rng = random.Random(cfg.seed + 3)
    images, annotations, masks = [], [], {}
    shapes, coloured = {}, {}
    for i, scene in enumerate(scenes):
        image_id = f'test_{i:05d}'
        image, masks[image_id] = render_scene_with_masks(
            scene, rng, cfg.image_size, REAL_STYLE)
        image.save(osp.join(paths.test_images, f'{image_id}.png'))
        images.append(dict(id=image_id, file_name=f'{image_id}.png'))
        for caption in describe_many(scene, text_rng, cfg.captions_per_scene):
            annotations.append(dict(id=len(annotations), image_id=image_id,
                                    caption=caption))
        shapes[image_id] = sorted({o.shape for o in scene.objects})
        coloured[image_id] = sorted({f'{o.colour} {o.shape}'
                                     for o in scene.objects})
    atomic_write(paths.test_masks,
                 lambda f: np.savez_compressed(f, **masks))
    atomic_write_json(paths.object_synonyms,
                      dict(objects={s: [] for s in SHAPES}))
    atomic_write_json(paths.coloured_object_synonyms, dict(objects={
        f'{c} {s}': [] for c in COLOURS for s in SHAPES}))
    atomic_write_json(paths.test_objects, dict(objects=shapes))
    atomic_write_json(paths.test_coloured_objects, dict(objects=coloured))
    atomic_write_json(paths.test_gt,
                      dict(images=images, annotations=annotations))


def train_clip(paths: WorldPaths, scenes: Sequence[Scene],
               cfg: WorldConfig) -> None:
    """Save the world's CLIP: the shipped one where it serves this world
    (:func:`~.pretrained.restore_shipped_clip`), else one trained on
    ``scenes`` here."""
    marker = osp.join(paths.clip, 'open_clip_model.safetensors')
    if not osp.isfile(marker):
        if restore_shipped_clip(cfg.clip_settings(), paths.clip):
            logger.info(f'toy world: CLIP: the shipped one ({SHIPPED_CLIP})')
        else:
            model = train_toy_clip(scenes, cfg.clip_train_config(),
                                   nouns=TOY_NOUNS,
                                   model_cfg=cfg.clip_model_cfg)
            tmp = paths.clip + '.tmp'
            save_open_clip_folder(model, tmp, cfg.clip_model_cfg)
            os.replace(tmp, paths.clip)


def toy_pipeline(cfg: WorldConfig) -> ToyDiffusionPipeline:
    """The world's stand-in for Stable Diffusion."""
    return ToyDiffusionPipeline(cfg.defect_rate, image_size=cfg.image_size)


def generate_synthetic(paths: WorldPaths, cfg: WorldConfig) -> None:
    """Caption -> defective synthetic image, through the generation tool."""
    from mmpcm.preprocessing.generation import (GenerationConfig,
                                                generate_images)
    from mmpcm.preprocessing.sharding import RankInfo
    size = cfg.image_size
    gen_cfg = GenerationConfig(
        model=f'mmpcm-toyworld(defect_rate={cfg.defect_rate})',
        num_inference_steps=1, guidance_scale=1.0, height=size, width=size,
        dtype='float32', seed=cfg.seed, image_format='png', batch_size=64,
        device='cpu')
    generate_images(paths.corpus, paths.synthetic, gen_cfg,
                    rank_info=RankInfo(0, 1, 0), progress=False,
                    pipeline=toy_pipeline(cfg))


def record_defects(paths: WorldPaths, cfg: WorldConfig) -> None:
    """Which synthetic images the generator broke, and how.

    The generation records hold each image's caption and seed; the toy
    pipeline's :meth:`~ToyDiffusionPipeline.draw_scene` says, from those
    two, what it drew. Written as ``{"defects": {image file: kind or
    null}}`` (files relative to the synthetic folder, as the feature
    store's records name them).
    """
    from mmpcm.preprocessing.generation import load_generation_records
    if osp.isfile(paths.defects):
        return
    pipe = toy_pipeline(cfg)
    defects = {
        r.file: pipe.draw_scene(r.caption, r.seed)[1]
        for r in load_generation_records(paths.synthetic).values()
        if r.status == 'ok'
    }
    atomic_write_json(paths.defects,
                      dict(defect_rate=cfg.defect_rate, defects=defects))


def extract(paths: WorldPaths) -> None:
    """CLIP features and scores of the synthetic and the real test images."""
    from mmpcm.preprocessing.extraction import (CLIPSpec, ExtractionConfig,
                                                extract_features,
                                                items_from_folder,
                                                items_from_generated)
    from mmpcm.preprocessing.sharding import RankInfo
    spec = CLIPSpec(model_name=paths.clip_model)
    run = ExtractionConfig(batch_size=256, num_workers=0, device='cpu',
                           amp=False)
    one = RankInfo(0, 1, 0)
    if not osp.isfile(osp.join(paths.train_features, 'meta.json')):
        extract_features(items_from_generated(paths.synthetic, paths.corpus),
                         paths.train_features, spec, run,
                         source=paths.synthetic, rank_info=one,
                         progress=False)
    if not osp.isfile(osp.join(paths.test_features, 'meta.json')):
        extract_features(items_from_folder(paths.test_images),
                         paths.test_features, spec, run,
                         source=paths.test_images, rank_info=one,
                         progress=False)


def build_concepts(paths: WorldPaths) -> List[str]:
    """The corpus' most frequent concept nouns, embedded with the CLIP."""
    from mmpcm.preprocessing.concepts import (NounList,
                                              build_concept_vocabulary,
                                              load_clip_text_encoder)
    if not osp.isfile(paths.concepts):
        with open(paths.corpus, encoding='utf-8') as f:
            captions = [line.strip() for line in f if line.strip()]
        encoder = load_clip_text_encoder(paths.clip_model)
        vocab, _ = build_concept_vocabulary(
            captions, encoder, paths.clip_model, num_concepts=len(TOY_NOUNS),
            nouns=NounList.from_entries([[n] for n in TOY_NOUNS],
                                        source='toy-world nouns'))
        vocab.save(paths.concepts)
    from mmpcm.models.utils.concepts import ConceptVocabulary
    return ConceptVocabulary.load(paths.concepts).words


def load_world_config(paths: WorldPaths) -> WorldConfig:
    """The settings a built world records in its world.json.

    Raises:
        InputError: If world.json is missing or holds no settings.
    """
    remedy = 'build the world first (projects/toyworld/tools/run.py)'
    content = read_json(paths.config, remedy)
    if not isinstance(content, dict) or not isinstance(
            content.get('settings'), dict):
        raise InputError(paths.config, 'not a toy-world record (no '
                         '"settings")', remedy)
    return WorldConfig(**content['settings'])


def build_world(root: str, cfg: WorldConfig = WorldConfig()) -> Dict:
    """Build (or finish building) the toy world under ``root``.

    Args:
        root (str): Output folder.
        cfg (WorldConfig): The world's settings; a root built with other
            settings is refused.

    Returns:
        dict: The world's summary (settings and a few statistics).
    """
    paths = WorldPaths(root)
    os.makedirs(root, exist_ok=True)
    settings = asdict(cfg)
    remedy = 'use another folder, or delete this one to rebuild it'
    if osp.isfile(paths.config):
        content = read_json(paths.config, remedy)
        recorded = content.get('settings') if isinstance(content,
                                                         dict) else None
        if recorded is None:
            raise InputError(paths.config, 'not a toy-world record (no '
                             '"settings")', remedy)
        if recorded != settings:
            changed = ', '.join(f'{k} {recorded.get(k)} (not {v})'
                                for k, v in settings.items()
                                if recorded.get(k) != v)
            raise InputError(paths.config, 'this world was built with other '
                             f'settings: {changed}', remedy)
    atomic_write_json(paths.config, dict(settings=settings, complete=False))
    corpus, test, clip_scenes = split_scenes(cfg)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    logger.info('toy world: corpus and test set')
    write_corpus(paths, corpus, cfg)
    write_test_set(paths, test, cfg)
    logger.info('toy world: its CLIP')
    train_clip(paths, clip_scenes, cfg)
    # a sanity check on scenes the CLIP never saw (fresh renders, captions)
    checked = test[:200]
    accuracy = retrieval_accuracy(
        open_clip.create_model(paths.clip_model).eval(), checked)
    logger.info('toy world: CLIP image -> caption top-1 retrieval '
                f'{accuracy:.2f} ({len(checked)} test scenes)')
    logger.info('toy world: synthetic images')
    generate_synthetic(paths, cfg)
    record_defects(paths, cfg)
    logger.info('toy world: CLIP features and scores')
    extract(paths)
    concepts = build_concepts(paths)
    grounding = measure_world(root, test)
    logger.info(f'toy world: CLIP grounding: {grounding.summary()}')
    summary = dict(settings=settings, complete=True,
                   clip_retrieval_top1=accuracy, concepts=concepts,
                   grounding=grounding.to_dict(),
                   num_pairs=len(corpus) * cfg.captions_per_scene,
                   num_test_images=len(test))
    atomic_write_json(paths.config, summary)
    return summary
