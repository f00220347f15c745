"""The offline toy world: grammar, renderers, defective generator, CLIP, and
a shrunken run of the whole job."""
import json
import os
import os.path as osp
import random

import numpy as np
import open_clip
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from mmpcm.models import OpenCLIPVisionBackbone
from mmpcm_toyworld.clip_train import (TOY_CLIP_PREPROCESS_CFG,
                                       CLIPTrainConfig, save_open_clip_folder,
                                       train_toy_clip)
from mmpcm_toyworld.generator import DEFECTS, ToyDiffusionPipeline, apply_defect
from mmpcm_toyworld.render import SYNTHETIC_STYLE, render_scene
from mmpcm_toyworld.scenes import INVERSE, describe, parse_caption, sample_scene

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(PROJECT, 'configs', 'pcm_toyworld.py')


@pytest.fixture(autouse=True)
def _restore_deterministic_algorithms():
    """Toy-world runs turn torch's deterministic algorithms on for the
    process; keep that from reaching other test modules."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def _facts(scene):
    objs = sorted((o.colour, o.shape) for o in scene.objects)
    rel = None
    if len(scene.objects) == 2:
        a, b = ((o.colour, o.shape) for o in scene.objects)
        rel = (a, scene.relation, b) if a < b else (b, INVERSE[scene.relation], a)
    return objs, rel, scene.background


def test_every_caption_parses_back_to_its_scene():
    rng = random.Random(0)
    for _ in range(300):
        scene = sample_scene(rng)
        for _ in range(3):
            assert _facts(parse_caption(describe(scene, rng))) == _facts(scene)


def test_generator_is_seeded_and_faithful_without_defects():
    caption = 'a red circle to the left of a blue square on the grass'
    pipe = ToyDiffusionPipeline(defect_rate=0.0, image_size=48)
    gen = lambda: [torch.Generator().manual_seed(7)]  # noqa: E731
    a = pipe([caption], generator=gen(), output_type='np').images[0]
    b = pipe([caption], generator=gen(), output_type='np').images[0]
    assert np.array_equal(a, b)
    # the faithful path draws one number (the defect coin) before rendering
    rng = np.random.default_rng(7)
    rng.random()
    expected = render_scene(parse_caption(caption), rng, 48, SYNTHETIC_STYLE)
    assert np.array_equal((a * 255).round().astype(np.uint8),
                          np.asarray(expected))


def test_defects_change_the_salient_content():
    rng = np.random.default_rng(0)
    scene = parse_caption('a red circle above a blue square on sand')
    for kind in DEFECTS:
        assert _facts(apply_defect(scene, kind, rng)) != _facts(scene)
    pipe = ToyDiffusionPipeline(defect_rate=1.0)
    out = pipe(['a red circle on sand'] * 20,
               generator=[torch.Generator().manual_seed(s) for s in range(20)])
    assert all(d in DEFECTS for d in out.defects)
    assert set(out.defects) > {'wrong_colour'}


def test_clip_folder_loads_like_published_weights(tmp_path):
    rng = random.Random(0)
    scenes = [sample_scene(rng) for _ in range(16)]
    model = train_toy_clip(scenes, CLIPTrainConfig(grounding_steps=2, steps=2, batch_size=8))
    name = save_open_clip_folder(model, str(tmp_path / 'clip'))
    loaded = open_clip.create_model(name)
    assert all(torch.equal(a, b) for a, b in zip(
        model.state_dict().values(), loaded.state_dict().values()))
    # OpenAI's normalisation, saved with the model and trained with
    assert TOY_CLIP_PREPROCESS_CFG['mean'] == list(OPENAI_DATASET_MEAN)
    assert TOY_CLIP_PREPROCESS_CFG['std'] == list(OPENAI_DATASET_STD)
    for key in ('mean', 'std'):
        assert list(loaded.visual.preprocess_cfg[key]) == \
            TOY_CLIP_PREPROCESS_CFG[key] == model.visual.preprocess_cfg[key]
    bb = OpenCLIPVisionBackbone(model_name=name)
    feats = bb(torch.rand(2, 3, 48, 48) * 255)
    assert feats.patch_tokens.shape == (2, 36, 64)


def test_shrunken_job_end_to_end(tmp_path, capsys):
    """The main job on a tiny world: real pipeline, real metric."""
    from mmpcm_toyworld.experiment import (metric_value,
                                           most_frequent_caption_baseline,
                                           test_variant, train_variant)
    from mmpcm_toyworld.world import WorldConfig, build_world
    root = str(tmp_path / 'world')
    world = WorldConfig(num_corpus_scenes=40, num_test_scenes=8,
                        num_clip_scenes=64, clip_grounding_steps=3,
                        clip_steps=3)
    summary = build_world(root, world)
    assert summary['complete'] and summary['num_pairs'] == 200
    options = {'train_cfg.max_epochs': 1, 'param_scheduler.warmup': 5}
    work = str(tmp_path / 'work')
    ckpt = train_variant(CONFIG, root, work, 0, options)
    _check_same_seed_same_weights(ckpt, root, str(tmp_path / 'twin'), options)
    # One epoch more resumes from epoch 1 (mmengine's real resume path),
    # quietly: a progress line on the terminal, mmengine's config dump and
    # hook table in the log file only.
    more = dict(options, **{'train_cfg.max_epochs': 2})
    capsys.readouterr()
    assert train_variant(CONFIG, root, work, 0, more, quiet=True) == osp.join(
        work, 'epoch_2.pth')
    out = capsys.readouterr().out
    assert 'training: epoch 2/2, loss ' in out
    assert 'Config:' not in out and 'Hooks will be executed' not in out
    logs = [osp.join(d, f) for d, _, fs in os.walk(work) for f in fs
            if f.endswith('.log')]
    assert any('Config:' in open(p).read() for p in logs)
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip().endswith('epoch_2.pth')
    assert not osp.exists(ckpt)  # max_keep_ckpts=1
    import torch
    state = torch.load(osp.join(work, 'epoch_2.pth'), weights_only=False)
    assert state['meta']['epoch'] == 2
    assert state['meta']['iter'] == 2 * 4  # 200 pairs / batch 64 -> 4 a epoch
    ckpt = osp.join(work, 'epoch_2.pth')
    result = test_variant(CONFIG, root, work, ckpt, options)
    assert 0 <= metric_value(result.metrics, 'CIDEr')
    for key in ('chair/CHAIR-i', 'chair/CHAIR-s', 'chair/object_recall',
                'chair_colour/CHAIR-i'):
        assert 0 <= metric_value(result.metrics, key) <= 100
    with open(result.predictions_file) as f:
        assert len(json.load(f)) == 8
    baseline = most_frequent_caption_baseline(root)
    assert 0 <= metric_value(baseline, 'chair/CHAIR-i') <= 100
    grounding = summary['grounding']
    assert grounding['num_images'] == 8 and grounding['num_pairs'] == 200
    assert all(0.0 <= grounding[k] <= 1.0 for k in (
        'objects_in_top_k', 'shape_top1', 'patches_on_objects',
        'clip_score_auc'))
    _check_objects_and_defects(root, world)
    _check_a_world_without_vocab_gets_one(root, world)
    # A rebuilt world with other settings is refused, not mixed.
    with pytest.raises(ValueError, match='world.json'):
        build_world(root, WorldConfig(num_corpus_scenes=41))


def _check_same_seed_same_weights(ckpt, root, work, options):
    """A second run with the same seed trains bit-identical weights: toy-world
    runs turn on torch's deterministic algorithms (``load_variant_cfg``)."""
    from mmpcm_toyworld.experiment import load_variant_cfg, train_variant
    cfg = load_variant_cfg(CONFIG, root, work, 0, options)
    assert cfg.randomness == dict(
        seed=0, deterministic=not torch.cuda.is_available())
    twin = train_variant(CONFIG, root, work, 0, options)
    assert torch.are_deterministic_algorithms_enabled() == (
        not torch.cuda.is_available())
    first = torch.load(ckpt, weights_only=False)['state_dict']
    second = torch.load(twin, weights_only=False)['state_dict']
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def _check_objects_and_defects(root, world):
    """CHAIR's objects are the scenes' objects, and the defect record says
    what the generator drew into each saved image."""
    from PIL import Image
    from mmpcm.preprocessing.generation import load_generation_records
    from mmpcm_toyworld.scenes import parse_caption
    from mmpcm_toyworld.paths import WorldPaths
    from mmpcm_toyworld.world import toy_pipeline
    paths = WorldPaths(root)
    with open(paths.test_gt) as f:
        refs = {a['image_id']: a['caption'] for a in json.load(f)['annotations']}
    with open(paths.test_objects) as f:
        objects = json.load(f)['objects']
    assert set(objects) == set(refs)
    for image_id, caption in refs.items():
        assert objects[image_id] == sorted(
            {o.shape for o in parse_caption(caption).objects})
    with open(paths.defects) as f:
        defects = json.load(f)['defects']
    assert len(defects) == 200
    assert 0.15 < np.mean([d is not None for d in defects.values()]) < 0.45
    pipe = toy_pipeline(world)
    records = list(load_generation_records(paths.synthetic).values())
    for record in records[:12]:
        image, defect = pipe.generate_one(record.caption, record.seed,
                                          world.image_size)
        saved = Image.open(osp.join(paths.synthetic, record.file))
        assert np.array_equal(np.asarray(saved), np.asarray(image))
        assert defects[record.file] == defect


def _check_a_world_without_vocab_gets_one(root, world):
    """A world built before the world wrote vocab.json (its corpus in
    corpus.txt) gets the vocabulary of its own corpus; nothing else of it
    is rebuilt."""
    from mmpcm.text.vocab import WordVocabulary
    from mmpcm_toyworld.paths import WorldPaths
    from mmpcm_toyworld.world import build_world
    paths = WorldPaths(root)
    words = WordVocabulary.load(paths.vocab).words
    assert 'circle' in words
    with open(paths.corpus, encoding='utf-8') as f:
        corpus = f.read()
    kept = [paths.test_gt, paths.concepts,
            osp.join(paths.clip, 'open_clip_model.safetensors'),
            osp.join(paths.synthetic, 'generation_meta.json'),
            osp.join(paths.train_features, 'meta.json'),
            osp.join(paths.test_features, 'meta.json')]
    stamps = [os.stat(p).st_mtime_ns for p in kept]
    os.remove(paths.vocab)
    os.rename(paths.corpus, paths.old_corpus)
    assert build_world(root, world)['complete']
    assert WordVocabulary.load(paths.vocab).words == words
    with open(paths.corpus, encoding='utf-8') as f:
        assert f.read() == corpus
    assert not osp.exists(paths.old_corpus)
    assert [os.stat(p).st_mtime_ns for p in kept] == stamps


def test_a_finished_variant_is_not_trained_again(tmp_path, monkeypatch):
    """train_variant takes the final checkpoint once mmengine has named it
    in last_checkpoint; an earlier one means the run must train."""
    from mmengine.runner import Runner

    from mmpcm_toyworld import experiment
    work = tmp_path / 'seed0'
    work.mkdir()
    final = work / 'epoch_10.pth'
    final.write_bytes(b'done')
    (work / 'last_checkpoint').write_text(str(final))

    def no_training(cfg):
        raise AssertionError('trained again')

    monkeypatch.setattr(Runner, 'from_cfg', staticmethod(no_training))
    got = experiment.train_variant(CONFIG, str(tmp_path / 'world'),
                                   str(work), seed=0)
    assert got == str(final)
    # An interrupted run resumes from the epoch mmengine last finished.
    seen = []

    def record(cfg):
        seen.append((cfg.get('resume'), cfg.get('load_from')))
        raise AssertionError('trained again')

    monkeypatch.setattr(Runner, 'from_cfg', staticmethod(record))
    earlier = work / 'epoch_9.pth'
    earlier.write_bytes(b'epoch 9')
    (work / 'last_checkpoint').write_text(str(earlier))
    with pytest.raises(AssertionError, match='trained again'):
        experiment.train_variant(CONFIG, str(tmp_path / 'world'), str(work),
                                 seed=0)
    assert seen == [(True, str(earlier))]
    # A named checkpoint that is gone: train from the start.
    earlier.unlink()
    with pytest.raises(AssertionError, match='trained again'):
        experiment.train_variant(CONFIG, str(tmp_path / 'world'), str(work),
                                 seed=0)
    assert seen[-1] == (False, None)


def test_shrunken_world_clip_grounds_its_objects(tmp_path):
    """The world build's grounding figures for a CLIP it trains itself on a
    shrunken world (a 64-wide 2-layer image tower, 4,000 scenes, 550 CPU
    steps, 100 test images), against floors looser than the full world's,
    which the shipped CLIP is checked against (test_pretrained.py). At this
    budget its patch tokens find the objects; its global embedding is only
    starting to rank shapes (shape top-1 26% against 22% by chance), so the
    floors are on patch placement and on naming at least one shape. The
    CLIP trained on whole captions alone, which the world had before, fails
    each floor (selected patches on objects at 2.9 times the all-patch
    share, 47.6% of images mostly on objects, a shape in the top-5 for
    25.6%)."""
    from mmpcm_toyworld.world import WorldConfig, build_world
    world = WorldConfig(num_corpus_scenes=60, num_test_scenes=100,
                        num_clip_scenes=4000, clip_width=64, clip_layers=2,
                        clip_grounding_steps=500, clip_steps=50)
    g = build_world(str(tmp_path / 'world'), world)['grounding']
    assert g['num_images'] == 100 and g['num_pairs'] == 300
    assert g['patches_on_objects'] >= 4 * g['object_pixel_share']
    assert g['images_mostly_on_objects'] >= 0.6
    assert g['any_object_in_top_k'] >= 0.5
    assert 0.0 <= g['clip_score_auc'] <= 1.0
