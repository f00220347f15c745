"""PCMCaptionVisualizerHook: validation images with their captions drawn
into mmengine's Visualizer (local PNGs, TensorBoard), in image and feature
mode, missing images logged and skipped; the default runtime's wiring."""
import glob
import itertools
import json
import logging
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.visualization import Visualizer
from PIL import Image
from torch.utils.data import DataLoader

from mmpcm.datasets import (CLIPFeatureInfo, FeatureStoreWriter,
                            ImageFolderCaptionDataset, SynthImgCapDataset,
                            pcm_collate)
from mmpcm.datasets.transforms import load_image
from mmpcm.engine.hooks import PCMCaptionVisualizerHook
from mmpcm.engine.hooks.caption_visualizer_hook import caption_picture
from mmpcm.registry import METRICS
from mmpcm.testing import (TINY_EMBED_DIM, TINY_NUM_PATCHES, TINY_PATCH_DIM,
                           build_tiny_captioner)
from mmpcm.visualization import clip_view, concept_view

from tool_loader import one_run

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SIZE = 64  # display side of the drawn CLIP view (2x the tiny CLIP's 32)
CAPTIONS = ['a red ball on the green grass', 'two dogs play in the snow',
            'a man rides a horse on the beach', 'a cat sleeps on a sofa']
IDS = ['ball', 'dogs', 'horse', 'cat']
_unique = itertools.count()


@pytest.fixture(autouse=True)
def own_instances():
    """Drop the visualizers, loggers and message hubs a test made (and
    close the runner's log file), as the end of a run would."""
    with one_run():
        yield


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A tiny random captioner, four small PNGs and their references."""
    root = tmp_path_factory.mktemp('vis_hook')
    model = build_tiny_captioner(
        str(root), CAPTIONS,
        ['ball', 'dog', 'man', 'horse', 'cat', 'sofa']).model
    (root / 'images').mkdir()
    rng = np.random.default_rng(0)
    for i, image_id in enumerate(IDS):
        Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 48, 3),
                                     dtype=np.uint8)).save(
                                         root / 'images' / f'{image_id}.png')
    gt = dict(images=[dict(id=i, file_name=f'{i}.png') for i in IDS],
              annotations=[
                  dict(id=k, image_id=i, caption=c)
                  for k, (i, c) in enumerate(zip(IDS, CAPTIONS))
              ] + [dict(id=9, image_id='ball', caption='a second reference'),
                   dict(id=10, image_id='ball', caption='a third one')])
    (root / 'gt.json').write_text(json.dumps(gt))
    return model, root


def fake_runner(model, dataset, tmp_path, epoch=1, ann_file=None):
    """What the hook uses of a Runner, with a real Visualizer writing
    PNGs (LocalVisBackend) into ``tmp_path/vis_data/vis_image``."""
    name = f'vis_hook_test_{next(_unique)}'
    visualizer = Visualizer(name=name, save_dir=str(tmp_path),
                            vis_backends=[dict(type='LocalVisBackend')])
    logger = logging.getLogger(f'mmpcm.tests.{name}')
    logger.setLevel(logging.INFO)
    return SimpleNamespace(
        model=model, epoch=epoch, visualizer=visualizer, logger=logger,
        val_dataloader=DataLoader(dataset, batch_size=2,
                                  collate_fn=pcm_collate),
        cfg=Config(dict(val_evaluator=dict(type='PCMCaptionMetric',
                                           ann_file=ann_file))))


def saved(tmp_path):
    return sorted(osp.basename(p) for p in glob.glob(
        osp.join(str(tmp_path), 'vis_data', 'vis_image', '*.png')))


def image_dataset(root):
    return ImageFolderCaptionDataset(
        data_root=str(root), ann_file='gt.json',
        data_prefix=dict(img_path='images'), image_size=32)


def expected_pictures(model, dataset, n, references):
    """Each item drawn from an independent eval-mode prediction."""
    batch = pcm_collate([dataset[i] for i in range(n)])
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
        samples = model.predict(data['inputs'], data['data_samples'],
                                return_concepts=True)
    out = []
    for i, sample in enumerate(samples):
        info = dataset.get_data_info(i)
        plain = clip_view(load_image(info['img_path']),
                          model.backbone.preprocess_cfg, SIZE)
        view = concept_view(sample.pcm_concepts, model.neck.concept_words)
        out.append((sample.pred_caption, plain, view,
                    references.get(info['image_id'], [])[:2]))
    return out


def test_draws_each_validation_image_with_its_caption(setup, tmp_path,
                                                      caplog):
    """The first num_images items, one PNG each per epoch, showing the
    eval-mode caption and concepts; the wrapped model's mode is restored."""
    model, root = setup
    dataset = image_dataset(root)
    wrapped = torch.nn.DataParallel(model)  # an mmengine model wrapper
    model.train()
    runner = fake_runner(wrapped, dataset, tmp_path,
                         ann_file=str(root / 'gt.json'))
    hook = PCMCaptionVisualizerHook(num_images=3, image_size=SIZE)
    with caplog.at_level(logging.INFO):
        hook.after_val_epoch(runner)
        runner.epoch = 2
        hook.after_val_epoch(runner)
    assert model.training  # restored
    names = [f'val_caption_{k:02d}_{IDS[k]}' for k in range(3)]
    assert saved(tmp_path) == sorted(f'{n}_{e}.png' for n in names
                                     for e in (1, 2))
    references = {i: [c] for i, c in zip(IDS, CAPTIONS)}
    references['ball'] += ['a second reference', 'a third one']
    expected = expected_pictures(model, dataset, 3, references)
    for name, (caption, plain, view, refs) in zip(names, expected):
        got = np.asarray(Image.open(
            tmp_path / 'vis_data' / 'vis_image' / f'{name}_2.png'))
        want = np.asarray(caption_picture(plain, caption, refs, view))
        np.testing.assert_array_equal(got, want)
        # The drawing shows this caption (another one draws differently),
        # and the selected patches are outlined on CLIP's view.
        other = np.asarray(caption_picture(plain, caption + ' indeed', refs,
                                           view))
        assert other.shape != got.shape or (other != got).any()
        assert view.patches
        assert (got[:SIZE] != np.asarray(plain)).any()
        assert f'"{caption}"' in caplog.text
    assert len(expected[0][3]) == 2  # ball: two of its three references


def test_feature_mode_finds_images_and_skips_a_missing_one(
        setup, tmp_path, caplog):
    """Features from a store: the records' image paths under the extraction
    source, then image_root/<id>.png; a missing image is named once in a
    warning and left out, the rest drawn."""
    model, root = setup
    store = tmp_path / 'store'
    rng = np.random.default_rng(1)
    n = 4
    records = [dict(image_id=i, caption=None, clip_score=None)
               for i in ['ball', 'dogs', 'ghost', 'cat']]
    records[0]['image'] = 'ball.png'  # as extract_features.py stores it
    with FeatureStoreWriter(
            str(store), CLIPFeatureInfo('custom', TINY_NUM_PATCHES,
                                        TINY_PATCH_DIM,
                                        TINY_EMBED_DIM)) as writer:
        glob_ = rng.standard_normal((n, TINY_EMBED_DIM))
        writer.add(rng.standard_normal((n, TINY_NUM_PATCHES, TINY_PATCH_DIM)),
                   glob_ / np.linalg.norm(glob_, axis=1, keepdims=True),
                   records)
    (store / 'extraction_source.json').write_text(
        json.dumps(dict(root=str(root / 'images'))))
    dataset = SynthImgCapDataset(str(store), with_caption=False,
                                 test_mode=True)

    # Without image_root only the recorded path is found.
    runner = fake_runner(model, dataset, tmp_path / 'a')
    hook = PCMCaptionVisualizerHook(num_images=4, image_size=SIZE)
    with caplog.at_level(logging.INFO):
        hook.after_val_epoch(runner)
    assert saved(tmp_path / 'a') == ['val_caption_00_ball_1.png']
    warning, = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert 'no image for 3 of the first 4' in warning.message
    assert 'image_root' in warning.message

    # With image_root: the reference file's file_name under it (COCO).
    caplog.clear()
    coco = tmp_path / 'coco.json'
    coco.write_text(json.dumps(dict(
        images=[dict(id=i, file_name=f'images/{i}.png') for i in IDS],
        annotations=[dict(id=0, image_id='dogs', caption='two dogs')])))
    runner = fake_runner(model, dataset, tmp_path / 'b', ann_file=str(coco))
    hook = PCMCaptionVisualizerHook(num_images=4, image_size=SIZE,
                                    image_root=str(root))
    with caplog.at_level(logging.INFO):
        hook.after_val_epoch(runner)
        runner.epoch = 2
        hook.after_val_epoch(runner)
    drawn = [f'val_caption_{k:02d}_{i}' for k, i in ((0, 'ball'), (1, 'dogs'),
                                                      (3, 'cat'))]
    assert saved(tmp_path / 'b') == sorted(f'{d}_{e}.png' for d in drawn
                                           for e in (1, 2))
    warnings = [r.message for r in caplog.records
                if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # said once, not every epoch
    assert "no image for 1 of the first 4" in warnings[0]
    assert "'ghost'" in warnings[0] and 'ghost.png' in warnings[0]
    assert hook._items[1].references == ['two dogs']


def test_no_images_anywhere_logs_once_and_draws_nothing(setup, tmp_path,
                                                        caplog):
    """A release-style store (ids only) and no image_root, as the default
    runtime meets it: one warning, no picture, no error."""
    model, root = setup
    from mmpcm.testing.stores import make_random_feature_store
    make_random_feature_store(tmp_path / 'store', [None] * 2,
                              TINY_NUM_PATCHES, TINY_PATCH_DIM,
                              TINY_EMBED_DIM, clip_model='custom')
    dataset = SynthImgCapDataset(str(tmp_path / 'store'), with_caption=False,
                                 test_mode=True)
    runner = fake_runner(model, dataset, tmp_path)
    hook = PCMCaptionVisualizerHook()
    with caplog.at_level(logging.INFO):
        for epoch in (1, 2):
            runner.epoch = epoch
            hook.after_val_epoch(runner)
    assert saved(tmp_path) == []
    messages = [r.message for r in caplog.records]
    assert len(messages) == 1 and 'no image for 2 of the first 2' in (
        messages[0]) and 'image_root' in messages[0]


def test_interval_and_drawing_errors(setup, tmp_path, caplog):
    """interval skips epochs; a failing backend is a warning, not a crash;
    bad arguments are refused."""
    model, root = setup
    runner = fake_runner(model, image_dataset(root), tmp_path)
    hook = PCMCaptionVisualizerHook(num_images=1, interval=2,
                                    image_size=SIZE)
    hook.after_val_epoch(runner)  # epoch 1: not a multiple of 2
    assert saved(tmp_path) == []

    def broken(*args, **kwargs):
        raise OSError('disk full')

    runner.visualizer.add_image = broken
    runner.epoch = 2
    with caplog.at_level(logging.INFO):
        hook.after_val_epoch(runner)
    assert 'OSError: disk full' in caplog.text and 'run goes on' in (
        caplog.text)
    for bad in (dict(num_images=-1), dict(interval=0), dict(image_size=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PCMCaptionVisualizerHook(**bad)


@METRICS.register_module(force=True)
class _VisHookTestMetric(BaseMetric):
    """Counts predictions; the caption metric needs Java."""

    def process(self, data_batch, data_samples):
        self.results.extend(s['pred_caption'] for s in data_samples)

    def compute_metrics(self, results):
        return dict(count=len(results))


def test_runner_sends_pictures_and_scalars_to_tensorboard(setup, tmp_path):
    """A real Runner from config dicts with the default runtime's
    visualizer and hook: PNGs and a TensorBoard event file holding the
    image tags and the validation scalar."""
    from mmengine.runner import Runner
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    model, root = setup
    runtime = Config.fromfile(
        osp.join(ROOT, 'configs', '_base_', 'default_runtime.py'))
    hooks = [dict(h, num_images=2, image_size=SIZE)
             for h in runtime.custom_hooks]
    runner = Runner(
        model=model, work_dir=str(tmp_path), default_scope='mmpretrain',
        experiment_name=f'vis_hook_runner_{next(_unique)}',
        visualizer=runtime.visualizer.to_dict(), custom_hooks=hooks,
        val_dataloader=dict(dataset=image_dataset(root), batch_size=2,
                            sampler=dict(type='DefaultSampler',
                                         shuffle=False),
                            collate_fn=dict(type='pcm_collate')),
        val_cfg=dict(), val_evaluator=dict(type='_VisHookTestMetric'))
    runner.val()
    runner.visualizer.close()
    vis_data = osp.join(runner.log_dir, 'vis_data')
    assert sorted(osp.basename(p) for p in glob.glob(
        osp.join(vis_data, 'vis_image', '*.png'))) == [
            'val_caption_00_ball_0.png', 'val_caption_01_dogs_0.png']
    events, = glob.glob(osp.join(vis_data, 'events.out.tfevents.*'))
    tags = EventAccumulator(events).Reload().Tags()
    assert {'val_caption_00_ball', 'val_caption_01_dogs'} <= set(
        tags['images'])
    assert 'count' in tags['scalars']  # the validation metric


@pytest.mark.parametrize('name', ['pcm_coco.py', 'pcm_smoke.py'])
def test_default_runtime_wires_tensorboard_and_the_hook(name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'pcm', name))
    assert [b['type'] for b in cfg.visualizer.vis_backends] == [
        'LocalVisBackend', 'TensorboardVisBackend']
    assert [h['type'] for h in cfg.custom_hooks] == [
        'PCMCaptionVisualizerHook']
