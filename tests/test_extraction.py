"""CLIP feature extraction: tiny SD images -> tiny CLIP -> feature store ->
SynthImgCapDataset -> one training step of a tiny PCMCaptioner."""
import importlib.util
import json
import os
import os.path as osp
import sys
from types import SimpleNamespace

import numpy as np
import open_clip
import pytest
import torch
from mmengine.optim import OptimWrapper
from PIL import Image
from torch.utils.data import DataLoader

import mmpcm.registry  # noqa: F401  (compat patches first)
from mmpcm.datasets.feature_store import writer as feature_store
from mmpcm.datasets.collate import pcm_collate
from mmpcm.datasets.feature_store import FeatureStore
from mmpcm.datasets.synth_imgcap import SynthImgCapDataset
from mmpcm.text import WordVocabulary
from mmpcm.preprocessing.extraction import (CLIP_SCORE_TEXT,
                                            CLIPFeatureExtractor, CLIPSpec,
                                            ExtractionConfig, ExtractionItem,
                                            clip_image_transform,
                                            device_preprocess,
                                            device_transform_size,
                                            extract_features,
                                            items_from_folder,
                                            items_from_generated,
                                            items_from_list, loading,
                                            merge_feature_parts,
                                            normalize_caption_for_clip,
                                            rank_run)
from mmpcm.preprocessing.generation import GenerationConfig, generate_images
from mmpcm.preprocessing.sharding import RankInfo
from mmpcm.testing.pipelines import (TINY_SD_SIZE, save_tiny_open_clip,
                                     save_tiny_sd_pipeline)
from mmpcm.registry import MODELS
from mmpcm.testing import (TINY_EMBED_DIM, TINY_NUM_PATCHES, TINY_PATCH_DIM,
                           random_concepts, tiny_captioner_cfg)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
LONG = 'a very long caption ' + ' '.join(f'word{i}' for i in range(80))
CAPTIONS = [
    'a dog runs on the grass', 'a cat sleeps on a sofa', 'two horses',
    'a red ball on a table', 'a man rides a horse', 'a plate of food',
    'a train at the station', 'a boat on a lake', 'a kite in the sky',
    'a bowl of fruit', 'a dog and a cat', LONG]


@pytest.fixture(scope='module', autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a busy 2-core machine, 2 threads spin-wait
    and run the tiny models 5-20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> dict:
    """Tiny SD images of 12 captions (one longer than CLIP's context) and a
    tiny CLIP saved as model config + safetensors."""
    root = tmp_path_factory.mktemp('extraction')
    captions = root / 'captions.txt'
    captions.write_text('\n'.join(CAPTIONS) + '\n')
    generated = str(root / 'generated')
    generate_images(
        str(captions), generated,
        GenerationConfig(model=save_tiny_sd_pipeline(root / 'sd'),
                         num_inference_steps=2, height=TINY_SD_SIZE,
                         width=TINY_SD_SIZE, chunk_size=5, batch_size=6),
        RankInfo(), progress=False)
    clip = save_tiny_open_clip(root / 'clip')
    return dict(captions=str(captions), generated=generated, clip=clip)


def _spec(data) -> CLIPSpec:
    return CLIPSpec(model_name=None, pretrained=data['clip'].weights,
                    model_cfg=data['clip'].model_cfg)


def _config(**kwargs) -> ExtractionConfig:
    cfg = dict(batch_size=4, num_workers=0, shard_size=3)
    cfg.update(kwargs)
    return ExtractionConfig(**cfg)


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'extract_features_tool',
        osp.join(ROOT, 'tools', 'data', 'extract_features.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.fixture(scope='module')
def reference(data, tmp_path_factory) -> str:
    """The tool's single-process extraction of the generated images."""
    out = str(tmp_path_factory.mktemp('ref') / 'store')
    _run_tool_on_generated(data, out)
    return out


def _run_tool_on_generated(data, out: str, *extra: str) -> None:
    """``tools/data/extract_features.py`` over the generated images."""
    argv = ['extract_features.py', out, '--generated', data['generated'],
            '--captions', data['captions'], '--model-cfg',
            data['clip'].model_cfg, '--pretrained', data['clip'].weights,
            '--batch-size', '4', '--workers', '2', '--shard-size', '3',
            *extra, '--no-progress']
    old = sys.argv
    sys.argv = argv
    try:
        _load_tool().main()
    finally:
        sys.argv = old


def _arrays(root: str) -> tuple:
    store = FeatureStore(root)
    ids = [r['image_id'] for r in store.records]
    return ids, store.load_array('patch_tokens.npy'), store.load_array(
        'global_embeds.npy')


# --------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------
def test_store_scores_and_one_training_step(reference, data, tmp_path):
    store = FeatureStore(reference)
    assert len(store) == 12 and store.has_text_embeds
    assert store.clip_info.to_dict() == dict(
        model='custom', pretrained=store.clip_info.pretrained, image_size=32,
        patch_pool=1, num_patches=TINY_NUM_PATCHES, patch_dim=TINY_PATCH_DIM,
        embed_dim=TINY_EMBED_DIM)
    assert store.clip_info.pretrained.startswith('sha256:')
    assert store.clip_score_text == CLIP_SCORE_TEXT
    records = store.records
    assert [r['image_id'] for r in records] == list(range(12))
    assert [r['caption'] for r in records] == CAPTIONS
    assert records[0]['image'] == 'images/000000/000000000.jpg'
    assert [r['caption_truncated'] for r in records] == [False] * 11 + [True]
    # clip_score is the raw cosine of the stored global and text embeddings
    g = store.load_array('global_embeds.npy').astype(np.float32)
    t = store.load_array('text_embeds.npy').astype(np.float32)
    scores = np.array([r['clip_score'] for r in records])
    np.testing.assert_allclose(scores, (g * t).sum(-1), atol=2e-3)
    with open(osp.join(reference, 'extraction_info.json')) as f:
        info = json.load(f)
    assert (info['num_items'], info['num_failed'],
            info['num_captions_truncated']) == (12, 0, 1)
    assert sorted(os.listdir(reference)) == [
        'extraction_info.json', 'extraction_source.json', 'failed.txt',
        'meta.json'] + [f'shard_{i:05d}' for i in range(4)]

    # the training data set loads it and a tiny captioner trains on it
    vocab = WordVocabulary.from_captions(CAPTIONS, min_count=1)
    cfg = tiny_captioner_cfg(vocab.words, None)
    dataset = SynthImgCapDataset(
        data_root=reference, num_patches=TINY_NUM_PATCHES,
        patch_dim=TINY_PATCH_DIM, embed_dim=TINY_EMBED_DIM,
        pipeline=[dict(type='PCMTokenizeCaption', vocab=vocab.words,
                       max_len=cfg['head']['max_len'])])
    concepts = str(tmp_path / 'concepts.safetensors')
    random_concepts(['dog', 'cat', 'horse', 'ball', 'man', 'food']).save(
        concepts)
    torch.manual_seed(0)
    model = MODELS.build(tiny_captioner_cfg(vocab.words, concepts))
    params = [p for p in model.parameters() if p.requires_grad]
    optim = OptimWrapper(torch.optim.Adam(params, lr=1e-3))
    batch = next(iter(DataLoader(dataset, batch_size=4,
                                 collate_fn=pcm_collate)))
    before = [p.detach().clone() for p in params]
    log = model.train_step(batch, optim)
    assert torch.isfinite(log['loss'])
    assert any(not torch.equal(a, b) for a, b in zip(before, params))


def test_features_equal_open_clip_on_its_own_preprocessing(data):
    """[0, 255] input + our transform == open_clip's preprocess + encoder."""
    extractor = CLIPFeatureExtractor(_spec(data))
    model = extractor.model
    preprocess = open_clip.image_transform(model.visual.image_size,
                                           is_train=False)
    item = items_from_generated(data['generated'])[0]
    image = Image.open(item.path).convert('RGB').resize((48, 40))
    ours = extractor.transform(image)
    assert ours.dtype == torch.uint8 and ours.shape == (3, 32, 32)
    _, g = extractor.encode_images(ours[None])
    with torch.no_grad():
        ref = model.encode_image(preprocess(image)[None], normalize=True)
    torch.testing.assert_close(g, ref, atol=1e-5, rtol=1e-4)
    texts, truncated = extractor.encode_texts(['a dog', LONG])
    assert truncated == [False, True]
    with torch.no_grad():
        ref = model.encode_text(open_clip.tokenize(['a dog', LONG]),
                                normalize=True)
    torch.testing.assert_close(texts, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('text,expected', [
    ('A dog runs.', 'a dog runs'),
    ('Two cats. ', 'two cats'),
    ('a dog .', 'a dog'),
    ('Wait...', 'wait'),
    ('Mr. Smith at St. Paul.', 'mr. smith at st. paul'),
    ('a dog runs', 'a dog runs'),
    ('', ''),
])
def test_normalize_caption_for_clip(text, expected):
    assert normalize_caption_for_clip(text) == expected
    assert normalize_caption_for_clip(expected) == expected


def test_pair_scores_see_the_normalised_caption(data, tmp_path):
    """'A Dog.' and 'a dog' on one image get one CLIP score; the record
    keeps the caption as written (the training target)."""
    first = items_from_generated(data['generated'])[0]
    items = [ExtractionItem(first.path, 0, first.relpath, 'A Dog.'),
             ExtractionItem(first.path, 1, first.relpath, 'a dog')]
    out = str(tmp_path / 'store')
    extract_features(items, out, _spec(data), _config(), progress=False)
    store = FeatureStore(out)
    assert store.clip_score_text == CLIP_SCORE_TEXT
    records = store.records
    assert [r['caption'] for r in records] == ['A Dog.', 'a dog']
    assert records[0]['clip_score'] == records[1]['clip_score']
    texts = store.load_array('text_embeds.npy')
    np.testing.assert_array_equal(texts[0], texts[1])
    # As written, this CLIP embeds the two captions apart (its tokenizer
    # lowercases, but the period is a token): without the normalisation
    # the two scores would differ.
    extractor = CLIPFeatureExtractor(_spec(data))
    with torch.no_grad():
        raw = extractor.model.encode_text(
            extractor.tokenizer(['A Dog.', 'a dog']), normalize=True)
    assert (raw[0] - raw[1]).abs().max() > 1e-2

    # A finished store scored on captions as written is not taken as done.
    meta_path = osp.join(out, 'meta.json')
    with open(meta_path) as f:
        meta = json.load(f)
    del meta['clip_score_text']
    with open(meta_path, 'w') as f:
        json.dump(meta, f)
    with pytest.raises(ValueError, match=r'meta.json: clip_score_text is '
                       r"None, not 'lowercase_strip_final_period'"):
        extract_features(items, out, _spec(data), _config(), progress=False)


def test_every_tensor_of_the_extractor_lives_on_its_device(data):
    """The backbone wrapper's pixel mean/std follow the model to the
    extractor's device (they once stayed on the CPU and broke CUDA)."""
    extractor = CLIPFeatureExtractor(_spec(data), device='meta')
    tensors = {**dict(extractor.backbone.named_parameters()),
               **dict(extractor.backbone.named_buffers())}
    assert {'mean', 'std'} <= set(tensors)
    wrong = {k: str(v.device) for k, v in tensors.items()
             if v.device.type != 'meta'}
    assert not wrong, wrong


# --------------------------------------------------------------------------
# resume, sharding, merge
# --------------------------------------------------------------------------
def test_resume_after_a_crash_mid_shard(reference, data, tmp_path,
                                        monkeypatch):
    out = str(tmp_path / 'store')
    items = items_from_generated(data['generated'])
    real_save = feature_store._save_npy
    calls = []

    def crash_in_third_shard(path, array):
        calls.append(path)
        if len(calls) == 2 * 3 + 2:  # 3 files per shard (+ records)
            with open(path, 'wb') as f:
                f.write(b'\x93NUMPY half')  # half-written, then die
            raise KeyboardInterrupt('simulated crash')
        real_save(path, array)

    monkeypatch.setattr(feature_store, '_save_npy', crash_in_third_shard)
    with pytest.raises(KeyboardInterrupt):
        extract_features(items, out, _spec(data), _config(), progress=False)
    part = osp.join(out, 'rank_00000-of-00001')
    assert FeatureStore(part).meta.num_items == 6  # 2 complete shards
    assert any(n.startswith('.shard_00002.tmp') for n in os.listdir(part))

    monkeypatch.setattr(feature_store, '_save_npy', real_save)
    summary = extract_features(items, out, _spec(data), _config(),
                               progress=False)
    assert (summary.already_done, summary.extracted) == (6, 6)
    assert sorted(os.listdir(out)) == sorted(os.listdir(reference))
    ids, patches, globals_ = _arrays(out)
    ref_ids, ref_patches, ref_globals = _arrays(reference)
    assert ids == ref_ids == list(range(12))  # every item exactly once
    np.testing.assert_array_equal(patches, ref_patches)
    np.testing.assert_array_equal(globals_, ref_globals)


def test_two_ranks_and_merge(reference, data, tmp_path, monkeypatch):
    out = str(tmp_path / 'store')
    items = items_from_generated(data['generated'], data['captions'])
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('RANK', '1')
    summary = extract_features(items, out, _spec(data), _config(),
                               progress=False)
    assert summary.merged_dir is None and summary.extracted == 6
    with pytest.raises(ValueError, match=r'rank\(s\) \[0\] of 2 have not '
                       'finished'):
        merge_feature_parts(out)
    monkeypatch.setenv('WORLD_SIZE', '3')
    monkeypatch.setenv('RANK', '0')
    with pytest.raises(ValueError, match='WORLD_SIZE=\\[2\\]'):
        extract_features(items, out, _spec(data), _config(), progress=False)
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(ValueError, match='another input list'):
        extract_features(items[:-1], out, _spec(data), _config(),
                         progress=False)
    summary = extract_features(items, out, _spec(data), _config(),
                               progress=False)
    parts = [osp.join(out, f'rank_0000{r}-of-00002') for r in (0, 1)]
    rank_ids = [[r['image_id'] for r in FeatureStore(p).records]
                for p in parts]
    assert rank_ids == [list(range(6)), list(range(6, 12))]
    merge_feature_parts(out)
    ids, patches, globals_ = _arrays(out)
    ref_ids, ref_patches, ref_globals = _arrays(reference)
    assert ids == ref_ids  # input order, no overlap, no gap
    np.testing.assert_array_equal(patches, ref_patches)
    np.testing.assert_array_equal(globals_, ref_globals)
    assert not [n for n in os.listdir(out) if n.startswith('rank_')]
    # a rerun of a rank into the merged store is a no-op
    summary = extract_features(items, out, _spec(data), _config(),
                               progress=False)
    assert summary.merged_dir == out and summary.already_done == 12


def test_interrupted_merge_can_be_rerun(data, tmp_path, monkeypatch):
    out = str(tmp_path / 'store')
    items = items_from_generated(data['generated'])
    extract_features(items, out, _spec(data), _config(merge=False),
                     progress=False)
    real_replace = os.replace
    moved = []

    def crash_after_two_moves(src, dst):
        if osp.basename(osp.dirname(src)).startswith('rank_'):
            if len(moved) == 2:
                raise KeyboardInterrupt('simulated crash')
            moved.append(src)
        real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', crash_after_two_moves)
    with pytest.raises(KeyboardInterrupt):
        merge_feature_parts(out)
    monkeypatch.setattr(os, 'replace', real_replace)
    assert not osp.exists(osp.join(out, 'meta.json'))  # not a store yet
    store = merge_feature_parts(out)
    assert [r['image_id'] for r in store.records] == list(range(12))


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------
def _write_images(folder, data) -> None:
    """3 good images, a truncated JPEG, a text file named .png, a README."""
    os.makedirs(osp.join(folder, 'sub'))
    items = items_from_generated(data['generated'])
    for name, item in zip(['b.jpg', 'a.png', 'sub/c.jpg'], items):
        Image.open(item.path).save(osp.join(folder, name))
    with open(items[3].path, 'rb') as f:
        jpeg = f.read()
    with open(osp.join(folder, 'truncated.jpg'), 'wb') as f:
        f.write(jpeg[:len(jpeg) // 2])
    with open(osp.join(folder, 'not_an_image.png'), 'w') as f:
        f.write('hello')
    with open(osp.join(folder, 'README.txt'), 'w') as f:
        f.write('not an image')


def test_real_image_folder_with_unreadable_images(data, tmp_path):
    folder = str(tmp_path / 'images')
    _write_images(folder, data)
    out = str(tmp_path / 'store')
    summary = extract_features(items_from_folder(folder), out, _spec(data),
                               _config(num_workers=2), progress=False)
    assert summary.extracted == 3
    assert sorted(f.image_id for f in summary.failed) == [
        'not_an_image', 'truncated']
    store = FeatureStore(out)
    assert not store.has_text_embeds
    assert [(r['image_id'], r['image'], r['caption'], r['clip_score'])
            for r in store.records] == [
                ('a', 'a.png', None, None), ('b', 'b.jpg', None, None),
                ('c', 'sub/c.jpg', None, None)]
    with open(osp.join(out, 'failed.txt')) as f:
        failed = [line.split('\t') for line in f.read().splitlines()]
    assert [(i, osp.basename(p)) for i, p, _ in failed] == [
        ('not_an_image', 'not_an_image.png'), ('truncated', 'truncated.jpg')]
    assert 'truncated' in failed[1][2]
    # the test split needs no captions
    assert len(SynthImgCapDataset(data_root=out, with_caption=False,
                                  test_mode=True)) == 3


def test_image_list_with_a_missing_file(data, tmp_path):
    folder = tmp_path / 'images'
    _write_images(str(folder), data)
    (tmp_path / 'list.txt').write_text('images/a.png\n\nimages/sub/c.jpg\n'
                                       'images/gone.jpg\n')
    items = items_from_list(tmp_path / 'list.txt')
    assert [i.image_id for i in items] == ['a', 'c', 'gone']
    summary = extract_features(items, tmp_path / 'store', _spec(data),
                               _config(), progress=False)
    assert summary.extracted == 2
    assert [f.image_id for f in summary.failed] == ['gone']
    assert summary.failed[0].reason == 'no such file'  # load_image's words


def test_caption_file_mismatch(data, tmp_path):
    lines = list(CAPTIONS)
    lines[4] = 'a woman rides a horse'
    other = tmp_path / 'other.txt'
    other.write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError) as err:
        items_from_generated(data['generated'], other)
    assert str(err.value).startswith(
        f"{other}:5: line is 'a woman rides a horse', but")
    assert "from 'a man rides a horse'" in str(err.value)


def test_missing_weights_and_duplicate_ids(data, tmp_path):
    spec = CLIPSpec(model_name=None, model_cfg=data['clip'].model_cfg,
                    pretrained=str(tmp_path / 'missing.safetensors'))
    with pytest.raises(FileNotFoundError, match='missing.safetensors'):
        extract_features(items_from_generated(data['generated']),
                         tmp_path / 'store', spec, _config(), progress=False)
    assert not osp.exists(tmp_path / 'store')
    (tmp_path / 'x').mkdir()
    (tmp_path / 'y').mkdir()
    (tmp_path / 'list.txt').write_text('x/a.jpg\ny/a.png\n')
    with pytest.raises(ValueError, match="image id 'a'.*used by both"):
        items_from_list(tmp_path / 'list.txt')


# --------------------------------------------------------------------------
# decoding on the device (torchvision's CPU decoder stands in for nvJPEG)
# --------------------------------------------------------------------------
# Tolerances of decode='device' against the PIL path, for the tiny random
# CLIP. The uint8 inputs differ by at most 2 levels (mean about 0.16: another
# bicubic resampler, rounding once instead of after each pass); through the
# tiny CLIP that moved the stored features by at most 7e-4 (unit-norm global
# embeddings, fp16) and 0.035 (patch tokens, mean |value| 0.8) when
# measured. The tolerances leave 3-7x headroom above that, and stay 8x and
# 30x below the smallest difference between the features of two different
# test images (0.042 and 3.2), so a swapped or garbage image cannot pass.
GLOBAL_ATOL = 5e-3
PATCH_ATOL = 0.1


def _assert_features_close(root: str, ref_root: str) -> None:
    ids, patches, globals_ = _arrays(root)
    ref_ids, ref_patches, ref_globals = _arrays(ref_root)
    assert ids == ref_ids
    np.testing.assert_allclose(globals_.astype(np.float32),
                               ref_globals.astype(np.float32),
                               atol=GLOBAL_ATOL, rtol=0)
    np.testing.assert_allclose(patches.astype(np.float32),
                               ref_patches.astype(np.float32),
                               atol=PATCH_ATOL, rtol=0)


def _source(root: str) -> dict:
    with open(osp.join(root, 'extraction_source.json')) as f:
        return json.load(f)


def test_tool_decode_device_matches_the_pil_path(reference, data, tmp_path):
    """--decode device (on the CPU here) stores what the PIL path stores, up
    to rounding, and records the mode."""
    out = str(tmp_path / 'store')
    _run_tool_on_generated(data, out, '--decode', 'device')
    _assert_features_close(out, reference)
    store, ref = FeatureStore(out), FeatureStore(reference)
    assert [(r['image_id'], r['caption'], r['image']) for r in store.records
            ] == [(r['image_id'], r['caption'], r['image'])
                  for r in ref.records]
    np.testing.assert_array_equal(store.load_array('text_embeds.npy'),
                                  ref.load_array('text_embeds.npy'))
    np.testing.assert_allclose(
        [r['clip_score'] for r in store.records],
        [r['clip_score'] for r in ref.records], atol=2 * GLOBAL_ATOL)
    assert (_source(out)['decode'], _source(reference)['decode']) == (
        'device', 'cpu')
    with open(osp.join(out, 'extraction_info.json')) as f:
        assert json.load(f)['source']['decode'] == 'device'


def _noisy_jpegs(folder: str, sizes: list) -> None:
    """Colour fields with noise, one JPEG per size (quality 95)."""
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(base).resize((w, h),
                                                         Image.BICUBIC))
        noisy = smooth + rng.normal(0, 8, (h, w, 3))  # (H, W, 3)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(
            osp.join(folder, f'{i:02d}.jpg'), quality=95)


def test_device_preprocess_resizes_and_crops_like_pil(data, tmp_path):
    """Larger and non-square JPEGs (the tiny CLIP's input is 32 px): the
    shared device function against open_clip's PIL transform, then the
    stored features of both modes."""
    folder = str(tmp_path / 'images')
    _noisy_jpegs(folder, [(48, 40), (40, 48), (64, 64), (53, 37), (32, 32),
                          (96, 80), (48, 40)])  # two of a shape: one resize
    items = items_from_folder(folder)
    extractor = CLIPFeatureExtractor(_spec(data))
    size = device_transform_size(extractor.transform)
    assert size == 32
    pil = torch.stack([loading._load_image(it.path, extractor.transform)[0]
                       for it in items])  # (B, 3, S, S)
    files = [torch.from_numpy(np.fromfile(it.path, dtype=np.uint8))
             for it in items]  # B x (num_bytes, )
    dev = device_preprocess(files, size, 'cpu')  # (B, 3, S, S)
    assert dev.dtype == torch.uint8 and dev.shape == pil.shape
    diff = (dev.float() - pil.float()).abs()
    assert diff.mean() < 0.3 and diff.max() <= 3
    # one at a time gives the same as in a batch of mixed shapes
    torch.testing.assert_close(device_preprocess(files[3:4], size, 'cpu'),
                               dev[3:4], atol=0, rtol=0)

    stores = {}
    for mode in ('cpu', 'device'):
        stores[mode] = str(tmp_path / mode)
        extract_features(items, stores[mode], _spec(data),
                         _config(decode=mode), progress=False)
    _assert_features_close(stores['device'], stores['cpu'])


def test_device_decode_refuses_other_transforms():
    squash = SimpleNamespace(visual=SimpleNamespace(
        preprocess_cfg=dict(size=32, resize_mode='squash'), image_size=32))
    with pytest.raises(ValueError, match="decode='device' reproduces"):
        device_transform_size(clip_image_transform(squash))
    with pytest.raises(ValueError, match='decode must be one of'):
        ExtractionConfig(decode='gpu')


def _write_odd_jpegs(folder: str, data) -> None:
    """Next to _write_images' files: a grayscale and a CMYK JPEG, and a
    complete JPEG with a broken Huffman table (its header reads fine)."""
    item = items_from_generated(data['generated'])[5]
    with Image.open(item.path) as img:
        img.convert('L').save(osp.join(folder, 'gray.jpg'))
        img.convert('CMYK').save(osp.join(folder, 'cmyk.jpg'))
    with open(item.path, 'rb') as f:
        jpeg = bytearray(f.read())
    dht = jpeg.find(b'\xff\xc4')  # define-Huffman-table marker
    jpeg[dht + 5:dht + 25] = b'\xff' * 20
    with open(osp.join(folder, 'bad_huffman.jpg'), 'wb') as f:
        f.write(bytes(jpeg))


def test_device_decode_png_cmyk_and_corrupt_files(data, tmp_path, caplog,
                                                  monkeypatch):
    """Fallback per item: files the device decoder is not given (PNG, CMYK,
    truncated, not an image) and JPEGs it rejects go through PIL, so they
    are stored, or listed in failed.txt with the reason, as with
    decode='cpu'."""
    folder = str(tmp_path / 'images')
    _write_images(folder, data)
    _write_odd_jpegs(folder, data)
    items = items_from_folder(folder)
    sent = {osp.relpath(it.path, folder)
            for it in items if loading._device_jpeg_bytes(it.path)
            is not None}
    assert sent == {'b.jpg', 'sub/c.jpg', 'gray.jpg', 'bad_huffman.jpg'}
    assert loading._device_jpeg_bytes(str(tmp_path / 'gone.jpg')) is None

    # The device decoder also rejects b.jpg (PIL reads it): one by one, then
    # PIL in the main process. bad_huffman.jpg fails both ways.
    with open(osp.join(folder, 'b.jpg'), 'rb') as f:
        b_bytes = f.read()
    real = device_preprocess

    def rejects_b(files, size, device):
        if any(bytes(t.numpy()) == b_bytes for t in files):
            raise RuntimeError('simulated rejection')
        return real(files, size, device)

    monkeypatch.setattr(rank_run, 'device_preprocess', rejects_b)
    summaries, stores = {}, {}
    for mode in ('cpu', 'device'):
        stores[mode] = str(tmp_path / mode)
        summaries[mode] = extract_features(
            items, stores[mode], _spec(data),
            _config(num_workers=2, decode=mode), progress=False)
    assert summaries['device'].extracted == summaries['cpu'].extracted == 5
    assert summaries['device'].failed == summaries['cpu'].failed
    assert sorted(f.image_id for f in summaries['device'].failed) == [
        'bad_huffman', 'not_an_image', 'truncated']
    with open(osp.join(stores['cpu'], 'failed.txt')) as f:
        failed_cpu = f.read()
    with open(osp.join(stores['device'], 'failed.txt')) as f:
        assert f.read() == failed_cpu  # same images, same PIL reasons
    _assert_features_close(stores['device'], stores['cpu'])
    ids, patches, _ = _arrays(stores['device'])
    _, ref_patches, _ = _arrays(stores['cpu'])
    for name in ('a', 'b', 'cmyk'):  # decoded by PIL in both runs
        i = ids.index(name)
        np.testing.assert_array_equal(patches[i], ref_patches[i])
    log = caplog.text
    assert 'decoding them one by one' in log
    assert f"{osp.join(folder, 'b.jpg')}: the decoder on cpu rejected it " \
        '(simulated rejection); decoded with PIL instead' in log
    assert 'bad_huffman.jpg: the decoder' not in log  # failed, not decoded


def test_resume_in_the_other_decode_mode_is_refused(data, tmp_path):
    out = str(tmp_path / 'store')
    items = items_from_generated(data['generated'])
    extract_features(items[:4], out, _spec(data), _config(merge=False),
                     progress=False)
    source = osp.join(out, 'extraction_source.json')
    with pytest.raises(ValueError) as err:
        extract_features(items[:4], out, _spec(data),
                         _config(merge=False, decode='device'),
                         progress=False)
    message = str(err.value)
    assert message.startswith(f'{source}: "decode" is \'cpu\'')
    assert "this run has decode='device'" in message
    assert '--decode cpu' in message
    # A folder from before the option (no "decode") was decoded by PIL.
    recorded = _source(out)
    del recorded['decode']
    with open(source, 'w') as f:
        json.dump(recorded, f)
    with pytest.raises(ValueError, match='"decode" is \'cpu\''):
        extract_features(items[:4], out, _spec(data),
                         _config(merge=False, decode='device'),
                         progress=False)
    summary = extract_features(items[:4], out, _spec(data),
                               _config(merge=False), progress=False)
    assert (summary.already_done, summary.extracted) == (4, 0)
