"""Feature store, SynthImgCapDataset and pcm_collate."""
import json
import os
import pickle

import numpy as np
import pytest
import torch

import mmpcm.registry  # noqa: F401  (compat patches first)
from mmengine.registry import init_default_scope
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader

from mmpcm.datasets.collate import pcm_collate
from mmpcm.datasets.feature_store import (CLIPFeatureInfo, FeatureStore,
                                          FeatureStoreMeta,
                                          FeatureStoreWriter, read_meta)
from mmpcm.datasets.synth_imgcap import SynthImgCapDataset
from mmpcm.registry import DATASETS, FUNCTIONS
from mmpcm.testing import make_random_feature_store
from mmpcm.utils.cli import InputError, MissingInputError, error_line

N, DV, D = 4, 8, 6  # tiny num_patches, patch_dim, embed_dim
CAPTIONS = [f'a photo of thing {i}' for i in range(10)]


def _clip_info(**kwargs) -> CLIPFeatureInfo:
    cfg = dict(model='tiny', num_patches=N, patch_dim=DV, embed_dim=D)
    cfg.update(kwargs)
    return CLIPFeatureInfo(**cfg)


def _batch(n: int, seed: int = 0, start: int = 0):
    """Random (patches, unit globals, records) for ``n`` items."""
    rng = np.random.default_rng(seed)
    patches = rng.standard_normal((n, N, DV)).astype(np.float32)
    globals_ = rng.standard_normal((n, D))
    globals_ /= np.linalg.norm(globals_, axis=-1, keepdims=True)
    records = [
        dict(image_id=start + i, caption=f'cap {start + i}', clip_score=0.3)
        for i in range(n)
    ]
    return patches, globals_, records


@pytest.fixture
def store(tmp_path) -> FeatureStore:
    return make_random_feature_store(
        tmp_path / 'store', CAPTIONS, N, DV, D, shard_size=4,
        image_ids=[f'img{i}' for i in range(10)], with_text_embeds=True)


def _has_preadv() -> bool:
    from mmpcm.datasets.feature_store import reader
    return reader._HAS_PREADV


def _dataset(root, **kwargs) -> SynthImgCapDataset:
    return SynthImgCapDataset(data_root=str(root), **kwargs)


def _one_line(error: BaseException) -> str:
    """The line a tool prints for ``error`` (without ``'error: '``)."""
    line, user_error = error_line(error)
    assert user_error and '\n' not in line
    return line


# --------------------------------------------------------------------------
# store round trip
# --------------------------------------------------------------------------
def test_meta_json_layout(store):
    with open(store.meta_path) as f:
        meta = json.load(f)
    assert meta == {
        'format': 'mmpcm-features',
        'version': 1,
        'clip': {
            'model': 'tiny', 'pretrained': None, 'image_size': 224,
            'patch_pool': 1, 'num_patches': N, 'patch_dim': DV,
            'embed_dim': D
        },
        'dtype': 'float16',
        'has_text_embeds': True,
        'shards': [{'name': 'shard_00000', 'count': 4},
                   {'name': 'shard_00001', 'count': 4},
                   {'name': 'shard_00002', 'count': 2}],
        'num_items': 10,
    }
    assert FeatureStoreMeta.from_dict(meta).to_dict() == meta
    shard = os.path.join(store.root, 'shard_00001')
    assert sorted(os.listdir(shard)) == [
        'global_embeds.npy', 'patch_tokens.npy', 'records.jsonl',
        'text_embeds.npy'
    ]
    assert np.load(os.path.join(shard, 'patch_tokens.npy')).dtype == np.float16


def test_writer_reader_round_trip(tmp_path):
    patches, globals_, records = _batch(7)
    with FeatureStoreWriter(tmp_path, _clip_info(), shard_size=3) as writer:
        writer.add(patches[:2], globals_[:2], records[:2])
        writer.add(torch.from_numpy(patches[2:]), globals_[2:], records[2:])
        assert writer.num_items == 6 and writer.num_buffered == 1
    store = FeatureStore(tmp_path)
    assert len(store) == 7 and [s.count for s in store.shards] == [3, 3, 1]
    for i in (0, 3, 6, -1):
        item = store.get(i)
        assert item.patch_tokens.dtype == np.float16
        np.testing.assert_array_equal(item.patch_tokens,
                                      patches[i].astype(np.float16))
        np.testing.assert_array_equal(item.global_embed,
                                      globals_[i].astype(np.float16))
        assert item.record == records[i] and item.text_embed is None
    assert store.captions() == [r['caption'] for r in records]
    assert store.load_array('global_embeds.npy').shape == (7, D)


def test_writer_validates_inputs(tmp_path):
    writer = FeatureStoreWriter(tmp_path, _clip_info())
    patches, globals_, records = _batch(3)
    with pytest.raises(ValueError, match=r'patch_tokens has shape '
                       r'\(3, 4, 9\), expected \(3, 4, 8\)'):
        writer.write_shard(np.zeros((3, N, DV + 1)), globals_, records)
    with pytest.raises(ValueError, match='global_embeds has shape'):
        writer.write_shard(patches, globals_[:2], records)
    with pytest.raises(ValueError, match='L2-normalised'):
        writer.write_shard(patches, globals_ * 2, records)
    with pytest.raises(ValueError, match='not finite in float16'):
        writer.write_shard(patches * 1e6, globals_, records)
    with pytest.raises(ValueError, match='image_id'):
        writer.write_shard(patches, globals_, [{}] * 3)
    with pytest.raises(TypeError, match='floating'):
        writer.write_shard(patches.astype(np.int32), globals_, records)
    assert writer.num_items == 0 and not os.listdir(tmp_path)


# --------------------------------------------------------------------------
# resume and crash safety
# --------------------------------------------------------------------------
def test_writer_resumes_after_complete_shards(tmp_path):
    patches, globals_, records = _batch(5)
    writer = FeatureStoreWriter(tmp_path, _clip_info(), shard_size=2)
    writer.add(patches, globals_, records)  # 2 shards written, 1 buffered
    del writer  # crash: the buffered item is lost

    writer = FeatureStoreWriter(tmp_path, _clip_info(), shard_size=2)
    assert writer.num_items == 4 and len(writer.shards) == 2
    start = writer.num_items
    writer.add(patches[start:], globals_[start:], records[start:])
    writer.close()
    store = FeatureStore(tmp_path)
    assert [r['image_id'] for r in store.records] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(store.get(4).patch_tokens,
                                  patches[4].astype(np.float16))


def test_incomplete_shards_are_ignored_and_overwritten(tmp_path):
    patches, globals_, records = _batch(6)
    writer = FeatureStoreWriter(tmp_path, _clip_info())
    writer.write_shard(patches[:2], globals_[:2], records[:2])
    # Crash in the next shard: a half-written tmp dir, and a shard dir that
    # was moved into place but never listed in meta.json.
    stale_tmp = tmp_path / '.shard_00001.tmp-99999'
    stale_tmp.mkdir()
    (stale_tmp / 'patch_tokens.npy').write_bytes(b'garbage')
    unlisted = tmp_path / 'shard_00001'
    unlisted.mkdir()
    np.save(unlisted / 'patch_tokens.npy', np.zeros((9, N, DV), np.float16))
    (unlisted / 'records.jsonl').write_text('{"image_id": "bad"}\n')

    store = FeatureStore(tmp_path)
    assert len(store) == 2 and [r['image_id'] for r in store.records] == [0, 1]

    writer = FeatureStoreWriter(tmp_path, _clip_info())
    assert writer.num_items == 2 and not stale_tmp.exists()
    writer.write_shard(patches[2:], globals_[2:], records[2:])
    store = FeatureStore(tmp_path)
    assert [r['image_id'] for r in store.records] == list(range(6))
    assert store.get(5).record['image_id'] == 5
    assert not [p for p in os.listdir(tmp_path) if 'tmp' in p]


def test_writer_refuses_other_clip_info(tmp_path):
    FeatureStoreWriter(tmp_path, _clip_info()).write_shard(*_batch(2))
    with pytest.raises(ValueError) as err:
        FeatureStoreWriter(tmp_path, _clip_info(model='ViT-L-14',
                                                patch_dim=16))
    msg = str(err.value)
    assert str(tmp_path / 'meta.json') in msg
    assert "clip.model is 'tiny' (writer: 'ViT-L-14')" in msg
    assert 'clip.patch_dim is 8 (writer: 16)' in msg


def test_clip_score_text_is_recorded_and_never_mixed(tmp_path):
    norm = 'lowercase_strip_final_period'
    with FeatureStoreWriter(tmp_path, _clip_info(),
                            clip_score_text=norm) as writer:
        writer.write_shard(*_batch(2))
    assert FeatureStore(tmp_path).clip_score_text == norm
    meta = json.loads((tmp_path / 'meta.json').read_text())
    assert meta['clip_score_text'] == norm
    # a store scored another way (or unrecorded) is not resumed into it
    with pytest.raises(ValueError, match=r"clip_score_text is "
                       r"'lowercase_strip_final_period' but this writer "
                       r"scores captions normalised as None"):
        FeatureStoreWriter(tmp_path, _clip_info())
    # a store without the key reads as None, and writes no key
    other = tmp_path / 'plain'
    FeatureStoreWriter(other, _clip_info()).write_shard(*_batch(2))
    assert FeatureStore(other).clip_score_text is None
    assert 'clip_score_text' not in json.loads(
        (other / 'meta.json').read_text())


def test_text_embeds_all_or_none(tmp_path):
    patches, globals_, records = _batch(4)
    writer = FeatureStoreWriter(tmp_path, _clip_info())
    writer.write_shard(patches[:2], globals_[:2], records[:2],
                       text_embeds=globals_[:2])
    with pytest.raises(ValueError, match='every shard must have text_embeds'):
        writer.write_shard(patches[2:], globals_[2:], records[2:])


# --------------------------------------------------------------------------
# bad stores: clear messages naming the file and both values
# --------------------------------------------------------------------------
def test_missing_root(tmp_path):
    root = tmp_path / 'nope'
    with pytest.raises(FileNotFoundError) as err:
        FeatureStore(root)
    assert isinstance(err.value, MissingInputError)
    with pytest.raises(FileNotFoundError) as err:
        _dataset(root)
    line = _one_line(err.value)
    assert line.startswith(f'{root}: no such feature store folder')
    assert 'extract the features first with tools/data/extract_features.py'\
        in line


def test_missing_meta(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        _dataset(tmp_path)
    assert isinstance(err.value, MissingInputError)
    line = _one_line(err.value)
    assert line.startswith(f'{tmp_path / "meta.json"}: no meta.json, so the '
                           'feature store is incomplete')
    assert 're-run tools/data/extract_features.py' in line


def test_bad_meta_json(tmp_path, store):
    with open(store.meta_path) as f:
        meta = json.load(f)
    meta['num_items'] = 11
    with open(store.meta_path, 'w') as f:
        json.dump(meta, f)
    with pytest.raises(ValueError, match='num_items is 11 but the shard '
                       'counts sum to 10'):
        FeatureStore(store.root)
    with open(store.meta_path, 'w') as f:
        f.write('{not json')
    with pytest.raises(ValueError, match='meta.json: not valid JSON'):
        FeatureStore(store.root)
    meta['num_items'] = 10
    meta['clip']['patch_dim'] = 0
    with open(store.meta_path, 'w') as f:
        json.dump(meta, f)
    with pytest.raises(InputError) as err:
        FeatureStore(store.root)
    assert _one_line(err.value).startswith(
        f'{store.meta_path}: clip.patch_dim must be a positive int, got 0; '
        'rebuild the store')
    del meta['clip']['model']
    with open(store.meta_path, 'w') as f:
        json.dump(meta, f)
    with pytest.raises(InputError, match=r"meta.json: clip: missing key\(s\) "
                       r"\['model'\]"):
        FeatureStore(store.root)


def test_missing_shard_file(store):
    path = os.path.join(store.root, 'shard_00001', 'global_embeds.npy')
    os.remove(path)
    with pytest.raises(FileNotFoundError) as err:
        _dataset(store.root)
    msg = _one_line(err.value)
    assert msg.startswith(f'{path}: missing') and 'shape (4, 6)' in msg


def test_array_shape_not_matching_meta(store):
    path = os.path.join(store.root, 'shard_00002', 'patch_tokens.npy')
    np.save(path, np.zeros((2, N, DV + 1), np.float16))
    with pytest.raises(ValueError) as err:
        FeatureStore(store.root)
    assert str(err.value).startswith(
        f'{path}: array is float16 of shape (2, 4, 9), {store.meta_path} '
        'expects float16 of shape (2, 4, 8); rebuild the store')


def test_truncated_array(store):
    path = os.path.join(store.root, 'shard_00000', 'patch_tokens.npy')
    with open(path, 'r+b') as f:
        f.truncate(200)
    with pytest.raises(ValueError, match=f'{path}: cannot be read'):
        FeatureStore(store.root)


def test_records_count_not_matching_meta(store):
    path = os.path.join(store.root, 'shard_00000', 'records.jsonl')
    with open(path, 'a') as f:
        f.write('{"image_id": 99}\n')
    with pytest.raises(ValueError, match=f'{path}: has more than 4 records'):
        _dataset(store.root)


@pytest.mark.parametrize('arg, value, key, found', [
    ('patch_dim', 768, 'clip.patch_dim', '8'),
    ('clip_model', 'ViT-B-32', 'clip.model', "'tiny'"),
    ('num_patches', 49, 'clip.num_patches', '4'),
    ('embed_dim', 512, 'clip.embed_dim', '6'),
])
def test_meta_disagrees_with_dataset_args(store, arg, value, key, found):
    with pytest.raises(ValueError) as err:
        _dataset(store.root, **{arg: value})
    assert _one_line(err.value) == (
        f'{store.meta_path}: {key} is {found}, the config expects {value!r}: '
        "the store was made with another CLIP than the config's; use the "
        "config of the store's CLIP, or extract the features with the "
        "config's CLIP into a new folder (tools/data/extract_features.py) "
        'and point data_root at it')


def test_check_accepts_nested_and_rejects_unknown_keys(store):
    store.check({'clip': {'patch_dim': DV, 'model': 'tiny'}, 'dtype': None})
    with pytest.raises(KeyError, match='no key'):
        store.check({'clip.patch_size': 32})


@pytest.mark.parametrize('caption', ['', '   ', None])
def test_training_needs_captions(tmp_path, caption):
    captions = CAPTIONS[:5] + [caption] + CAPTIONS[6:]
    store = make_random_feature_store(tmp_path, captions, N, DV, D,
                                      shard_size=4)
    path = os.path.join(store.root, 'shard_00001', 'records.jsonl')
    with pytest.raises(ValueError) as err:
        _dataset(store.root)
    assert _one_line(err.value).startswith(
        f'{path}: line 2: caption is {caption!r}, but training')
    dataset = _dataset(store.root, with_caption=False, test_mode=True)
    assert 'gt_caption' not in dataset[5]['data_samples']
    assert dataset[4]['data_samples'].gt_caption == CAPTIONS[4]


# --------------------------------------------------------------------------
# dataset
# --------------------------------------------------------------------------
def test_dataset_items(store):
    dataset = _dataset(store.root, clip_model='tiny', num_patches=N,
                       patch_dim=DV, embed_dim=D)
    assert len(dataset) == 10
    assert dataset.metainfo['clip'] == store.clip_info.to_dict()
    assert dataset.metainfo['feature_store'] == dict(
        root=store.root, dtype='float16', has_text_embeds=True, num_items=10,
        pairing=None)
    info = dataset.get_data_info(6)
    assert set(info) == {'sample_idx', 'store_idx', 'image_id', 'caption',
                         'clip_score'}
    item = dataset[6]
    patches = item['inputs']['patch_tokens']
    assert patches.dtype == torch.float16 and patches.shape == (N, DV)
    assert item['inputs']['global_embed'].shape == (D, )
    expected = store.get(6)
    np.testing.assert_array_equal(patches.numpy(), expected.patch_tokens)
    sample = item['data_samples']
    assert isinstance(sample, DataSample)
    assert sample.image_id == 'img6' and sample.sample_idx == 6
    assert sample.gt_caption == CAPTIONS[6]
    assert sample.clip_score == pytest.approx(expected.record['clip_score'])


def test_dataset_pipeline(store):
    def add_flag(results):
        results['inputs']['flag'] = torch.ones(1)
        return results

    dataset = _dataset(store.root, pipeline=[add_flag])
    assert dataset[0]['inputs']['flag'].item() == 1


@pytest.mark.parametrize('serialize_data', [True, False])
def test_lazy_init_indices_and_serialize(store, serialize_data):
    dataset = _dataset(store.root, lazy_init=True, indices=[7, 2],
                       serialize_data=serialize_data)
    assert not dataset._fully_initialized
    dataset.full_init()
    assert len(dataset) == 2
    sample = dataset[0]['data_samples']
    assert sample.image_id == 'img7' and sample.sample_idx == 0
    np.testing.assert_array_equal(
        dataset[1]['inputs']['patch_tokens'].numpy(),
        store.get(2).patch_tokens)


def test_build_from_config(store):
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(
        dict(type='SynthImgCapDataset', data_root=store.root,
             patch_dim=DV, test_mode=True))
    assert isinstance(dataset, SynthImgCapDataset) and len(dataset) == 10
    assert FUNCTIONS.get('pcm_collate') is pcm_collate


def test_store_pickle_drops_memory_maps_and_files(store):
    store.get(0)
    store.load_array()  # memory-mapped
    assert store._maps
    assert store._row_sources or not _has_preadv()
    clone = pickle.loads(pickle.dumps(store))
    assert clone._maps == {} and clone._row_sources == {}
    np.testing.assert_array_equal(clone.get(9).patch_tokens,
                                  store.get(9).patch_tokens)


@pytest.mark.parametrize('read', ['preadv', 'mmap'])
@pytest.mark.parametrize('num_workers', [0, 2])
def test_dataloader_round_trip(store, num_workers, read, monkeypatch):
    """Files opened in the parent before the fork: memory maps are made
    anew in each worker; ``preadv`` reads through the inherited files."""
    from mmpcm.datasets.feature_store import reader
    if read == 'mmap':
        monkeypatch.setattr(reader, '_HAS_PREADV', False)
    elif not reader._HAS_PREADV:
        pytest.skip('os.preadv is missing on this platform')
    dataset = _dataset(store.root)
    dataset[0]  # files opened in the parent before the fork

    def maps_of_this_process(results):
        results['inputs']['own_maps'] = torch.tensor(
            dataset.store._pid == os.getpid())
        return results

    dataset.pipeline.transforms.append(maps_of_this_process)
    loader = DataLoader(dataset, batch_size=4, shuffle=False,
                        num_workers=num_workers, collate_fn=pcm_collate)
    batches = list(loader)
    assert [len(b['data_samples']) for b in batches] == [4, 4, 2]
    patches = torch.cat([b['inputs']['patch_tokens'] for b in batches])
    globals_ = torch.cat([b['inputs']['global_embed'] for b in batches])
    assert patches.shape == (10, N, DV) and patches.dtype == torch.float16
    if read == 'mmap':
        assert all(b['inputs']['own_maps'].all() for b in batches)
    else:
        assert dataset.store._row_sources and not dataset.store._maps
    for i in range(10):
        item = store.get(i)
        np.testing.assert_array_equal(patches[i].numpy(), item.patch_tokens)
        np.testing.assert_array_equal(globals_[i].numpy(), item.global_embed)
    captions = [s.gt_caption for b in batches for s in b['data_samples']]
    assert captions == CAPTIONS


def test_rows_read_with_preadv_match_the_memory_map(store, monkeypatch):
    from mmpcm.datasets.feature_store import reader
    if not reader._HAS_PREADV:
        pytest.skip('os.preadv is missing on this platform')
    files = dict(patch_tokens='patch_tokens.npy',
                 global_embed='global_embeds.npy',
                 text_embed='text_embeds.npy')
    read = [store.get(i) for i in range(10)]
    assert store._row_sources  # the rows came through preadv
    for i, item in enumerate(read):
        shard, row = store.locate(i)
        for name, filename in files.items():
            np.testing.assert_array_equal(
                getattr(item, name), store._map(shard, filename)[row])
    monkeypatch.setattr(reader, '_HAS_PREADV', False)
    mapped = FeatureStore(store.root)
    for i, item in enumerate(read):  # the fallback reads the same rows
        other = mapped.get(i)
        for name in files:
            np.testing.assert_array_equal(getattr(item, name),
                                          getattr(other, name))
    assert not mapped._row_sources
    store.close()
    assert store._row_sources == {} and store._maps == {}
    np.testing.assert_array_equal(store.get(3).patch_tokens,
                                  read[3].patch_tokens)


def test_file_truncated_after_opening_fails_naming_it(store):
    from mmpcm.datasets.feature_store import reader
    if not reader._HAS_PREADV:
        pytest.skip('os.preadv is missing on this platform')
    store.get(0)
    path = os.path.join(store.root, 'shard_00000', 'patch_tokens.npy')
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) - 1)
    with pytest.raises(OSError, match=f'{path}: read .* of row 3'):
        store.get(3)


def test_collated_batch_is_in_shared_memory_only_in_workers(store):
    dataset = _dataset(store.root)

    def collate(batch):
        out = pcm_collate(batch)
        out['inputs']['shared'] = torch.tensor(
            out['inputs']['patch_tokens'].is_shared())
        return out

    in_main = collate([dataset[i] for i in range(4)])
    assert not in_main['inputs']['shared']
    loader = DataLoader(dataset, batch_size=4, num_workers=1,
                        collate_fn=collate)
    batches = list(loader)
    assert all(b['inputs']['shared'] for b in batches)
    torch.testing.assert_close(batches[0]['inputs']['patch_tokens'],
                               in_main['inputs']['patch_tokens'])


# --------------------------------------------------------------------------
# collate
# --------------------------------------------------------------------------
def test_collate_tensor_and_dict_inputs():
    images = [dict(inputs=torch.full((3, 5, 7), float(i)),
                   data_samples=DataSample()) for i in range(2)]
    out = pcm_collate(images)
    assert out['inputs'].shape == (2, 3, 5, 7)
    assert out['inputs'][1].unique().item() == 1
    assert len(out['data_samples']) == 2

    nested = [dict(inputs=dict(a=np.zeros(3), b=dict(c=torch.ones(2))))
              for _ in range(3)]
    out = pcm_collate(nested)
    assert out['inputs']['a'].shape == (3, 3)
    assert out['inputs']['b']['c'].shape == (3, 2)
    assert out['data_samples'] is None


def test_collate_errors_name_the_key():
    batch = [dict(inputs=dict(patch_tokens=torch.zeros(4, 8))),
             dict(inputs=dict(patch_tokens=torch.zeros(5, 8)))]
    with pytest.raises(ValueError, match=r"inputs\['patch_tokens'\] is "
                       r'torch.float32 \(4, 8\) in sample 0 but '
                       r'torch.float32 \(5, 8\) in sample 1'):
        pcm_collate(batch)
    batch = [dict(inputs=dict(a=torch.zeros(1))), dict(inputs=dict(b=1))]
    with pytest.raises(ValueError, match=r"inputs has keys \['a'\] in sample "
                       r"0 but \['b'\] in sample 1"):
        pcm_collate(batch)
    with pytest.raises(ValueError, match='empty batch'):
        pcm_collate([])


def test_read_meta_of_empty_store(tmp_path):
    FeatureStoreWriter(tmp_path, _clip_info()).close()
    assert read_meta(tmp_path).num_items == 0
    store = FeatureStore(tmp_path)
    assert len(store) == 0 and store.load_array().shape == (0, D)


def _pairing_of(store_root, caption_idx, image_idx, scores):
    from mmpcm.datasets.feature_store import (Pairing, save_pairing,
                                              store_meta_sha256)
    store = FeatureStore(store_root)
    pairing = Pairing(
        np.asarray(caption_idx, dtype=np.int64),
        np.asarray(image_idx, dtype=np.int64),
        np.asarray(scores, dtype=np.float32),
        np.zeros(len(caption_idx), dtype=np.float32),
        dict(settings=dict(method='hand-made'),
             store=dict(root=str(store_root), num_items=len(store),
                        meta_sha256=store_meta_sha256(store_root))))
    folder = str(store_root) + '_sync'
    save_pairing(pairing, folder)
    return folder


def test_pairing_trains_captions_on_their_chosen_images(tmp_path):
    captions = [f'caption {i}' for i in range(5)]
    root = tmp_path / 'store'
    make_random_feature_store(root, captions, num_patches=4, patch_dim=8,
                              embed_dim=6, image_ids=[f'im{i}' for i in
                                                      range(5)])
    # caption 1 dropped; captions 0 and 3 re-paired; one image serves two
    pairing = _pairing_of(root, [0, 2, 3, 4], [2, 2, 0, 4],
                          [0.5, 0.25, 0.125, 0.75])
    plain = _dataset(root)
    paired = _dataset(root, pairing=pairing)
    assert len(paired) == 4
    store = FeatureStore(root)
    for p, (c, i, s) in enumerate([(0, 2, 0.5), (2, 2, 0.25), (3, 0, 0.125),
                                   (4, 4, 0.75)]):
        item = paired[p]
        sample = item['data_samples']
        assert sample.gt_caption == captions[c]
        assert sample.clip_score == s
        assert float(item['inputs']['clip_score']) == s
        np.testing.assert_array_equal(item['inputs']['patch_tokens'].numpy(),
                                      store.get(i).patch_tokens)
        np.testing.assert_array_equal(item['inputs']['global_embed'].numpy(),
                                      store.get(i).global_embed)
        assert sample.image_id == f'im{i}'
        assert paired.get_data_info(p)['caption_idx'] == c
    # without the pairing: every row with its own caption and score
    assert len(plain) == 5
    assert plain[3]['data_samples'].gt_caption == captions[3]
    assert 'Refined pairing' in repr(paired)


def test_pairing_of_another_store_is_refused(tmp_path):
    make_random_feature_store(tmp_path / 'a', ['x', 'y', 'z'], num_patches=4,
                              patch_dim=8, embed_dim=6)
    make_random_feature_store(tmp_path / 'b', ['x', 'y', 'z'], num_patches=4,
                              patch_dim=8, embed_dim=6, seed=1,
                              clip_model='other')
    pairing = _pairing_of(tmp_path / 'a', [0, 1], [1, 1], [0.1, 0.2])
    with pytest.raises(InputError) as info:
        _dataset(tmp_path / 'b', pairing=pairing)
    line = _one_line(info.value)
    assert 'pairing.json' in line, line
    with pytest.raises(MissingInputError):
        _dataset(tmp_path / 'a', pairing=str(tmp_path / 'nowhere'))
