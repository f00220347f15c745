"""Import of the authors' released per-image .npz features."""
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest

from mmpcm.datasets.feature_store import FeatureStore
from mmpcm.preprocessing import release_import
from mmpcm.preprocessing.extraction import CLIP_SCORE_TEXT
from mmpcm.preprocessing.release_import import (clip_feature_info,
                                                find_release_files,
                                                import_release_features,
                                                load_caption_map,
                                                load_clip_scores)
from mmpcm.utils.cli import InputError, error_line

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
N, DV, D = 4, 8, 6
# part -> ids; sorted order is sp0 (by file name), sp1, then sp10
PARTS = {0: ['7', '12', '3'], 1: ['5', '40'], 10: ['1']}
ORDER = ['12', '3', '7', '40', '5', '1']
CAPTIONS = {i: f'caption of image {i}' for i in ORDER}
# raw cosines (what a store holds); multiples of 1/16, so 2.5 x and back is
# exact in binary floating point
SCORES = {i: 0.125 + 0.0625 * k for k, i in enumerate(ORDER)}


def _info(**kwargs):
    cfg = dict(clip_model='tiny', pretrained=None, num_patches=N,
               patch_dim=DV, embed_dim=D)
    cfg.update(kwargs)
    return clip_feature_info(**cfg)


def _arrays(image_id):
    rng = np.random.default_rng(int(image_id))
    return (rng.standard_normal((N, DV)).astype(np.float32),
            rng.standard_normal(D).astype(np.float32) * 3)


def _make_release(root, parts=PARTS, prefix='clip_feats'):
    for part, ids in parts.items():
        folder = root / f'{prefix}_sp{part}'
        folder.mkdir(parents=True)
        for image_id in ids:
            patches, g = _arrays(image_id)
            if int(image_id) % 2:  # both (D,) and (1, D) occur
                g = g[None]
            np.savez(folder / f'{image_id}.npz', features=patches,
                     g_feature=g)
    return root


def _tool(name):
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, 'tools', 'data', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_store(root, ids=ORDER, scores=SCORES, int_ids=False):
    store = FeatureStore(str(root))
    assert len(store) == len(ids)
    for k, image_id in enumerate(ids):
        patches, g = _arrays(image_id)
        item = store.get(k)
        np.testing.assert_array_equal(item.patch_tokens,
                                      patches.astype(np.float16))
        np.testing.assert_array_equal(
            item.global_embed, (g / np.linalg.norm(g)).astype(np.float16))
        assert item.record == {
            'image_id': int(image_id) if int_ids else image_id,
            'caption': CAPTIONS[image_id],
            'clip_score': None if scores is None else scores[image_id]}
    return store


# --------------------------------------------------------------------------
# the import
# --------------------------------------------------------------------------
def test_find_files_in_sorted_order(tmp_path):
    root = _make_release(tmp_path / 'release')
    files = find_release_files(root)
    assert [f.image_id for f in files] == ORDER
    assert [f.part for f in files] == [0, 0, 0, 1, 1, 10]
    single = find_release_files(root / 'clip_feats_sp1')
    assert [f.image_id for f in single] == ['40', '5']


def test_import_store_equals_inputs(tmp_path):
    root = _make_release(tmp_path / 'release')
    result = import_release_features(root, tmp_path / 'store', CAPTIONS,
                                     _info(), clip_scores=SCORES,
                                     shard_size=4, batch_size=3)
    assert (result.num_files, result.num_resumed, result.num_written) == (
        6, 0, 6)
    store = _check_store(tmp_path / 'store')
    assert [s.count for s in store.meta.shards] == [4, 2]
    assert store.clip_info.model == 'tiny'


def test_resume_after_partial_import(tmp_path, monkeypatch):
    root = _make_release(tmp_path / 'release')
    out = tmp_path / 'store'
    read = release_import.read_release_npz
    calls = []

    def crash_on_fifth(path, *args, **kwargs):
        calls.append(osp.basename(path))
        if len(calls) == 5:
            raise KeyboardInterrupt
        return read(path, *args, **kwargs)

    monkeypatch.setattr(release_import, 'read_release_npz', crash_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        import_release_features(root, out, CAPTIONS, _info(), shard_size=2,
                                batch_size=1)
    assert len(FeatureStore(str(out))) == 4  # two complete shards
    calls.clear()
    result = import_release_features(root, out, CAPTIONS, _info(),
                                     shard_size=2, batch_size=1)
    assert (result.num_resumed, result.num_written) == (4, 2)
    assert calls == ['5.npz', '1.npz']  # only what was missing is read
    _check_store(out, scores=None)
    again = import_release_features(root, out, CAPTIONS, _info())
    assert (again.num_resumed, again.num_written) == (6, 0)


def test_resume_refuses_a_store_of_other_input(tmp_path):
    root = _make_release(tmp_path / 'release')
    out = tmp_path / 'store'
    import_release_features(root, out, CAPTIONS, _info(), shard_size=2)
    other = _make_release(tmp_path / 'other', {0: ['99', '98', '97']})
    with pytest.raises(ValueError, match="stored item 0 has image_id '12'"):
        import_release_features(other, out, {'99': 'a', '98': 'b',
                                             '97': 'c'}, _info())
    with pytest.raises(ValueError, match='other CLIP settings'):
        import_release_features(root, out, CAPTIONS, _info(embed_dim=7))


def test_pool_on_import_and_int_ids(tmp_path):
    folder = tmp_path / 'release' / 'f_sp0'
    folder.mkdir(parents=True)
    grid = np.arange(16 * DV, dtype=np.float32).reshape(16, DV)
    np.savez(folder / '8.npz', features=grid, g_feature=np.ones(D))
    import_release_features(tmp_path / 'release', tmp_path / 'store',
                            {'8': 'a cat'}, _info(), pool=2, int_ids=True)
    item = FeatureStore(str(tmp_path / 'store')).get(0)
    want = grid.reshape(2, 2, 2, 2, DV).mean(axis=(1, 3)).reshape(4, DV)
    np.testing.assert_array_equal(item.patch_tokens, want.astype(np.float16))
    assert item.record['image_id'] == 8


def test_import_tool(tmp_path, capsys):
    root = _make_release(tmp_path / 'release')
    captions = tmp_path / 'captions.json'
    captions.write_text(json.dumps({
        'annotations': [{'id': int(i), 'image_id': 0, 'caption': c}
                        for i, c in CAPTIONS.items()]}))
    scores = tmp_path / 'scores.json'
    # the release's clipscore: 2.5 x cosine; the store gets the cosine
    scores.write_text(json.dumps({i: 2.5 * v for i, v in SCORES.items()}))
    out = tmp_path / 'store'
    argv = [str(root), str(out), '--captions', str(captions), '--clip-scores',
            str(scores), '--clip-model', 'tiny', '--pretrained', 'openai',
            '--num-patches', str(N), '--patch-dim', str(DV), '--embed-dim',
            str(D), '--int-ids', '--no-progress']
    assert _tool('import_release_features').main(argv) == 0
    assert '6 released files: 0 already stored, 6 imported' in (
        capsys.readouterr().out)
    store = _check_store(out, int_ids=True)
    assert store.clip_info.pretrained == 'openai'
    assert store.clip_score_text == CLIP_SCORE_TEXT

    # a score that cannot be 2.5 x a cosine: one error line, nothing written
    scores.write_text(json.dumps({i: 2.6 for i in SCORES}))
    status = _tool('import_release_features').main(
        [*argv[:1], str(tmp_path / 'new'), *argv[2:]])
    err = capsys.readouterr().err
    assert status == 1 and err.count('\n') == 1
    assert err.startswith(f"error: {scores}: score of id '12' is 2.6, "
                          'beyond +-2.5')
    assert '--clip-score-scale' in err
    assert not (tmp_path / 'new').exists()


# --------------------------------------------------------------------------
# CLIP sizes, captions and scores
# --------------------------------------------------------------------------
def test_clip_feature_info_of_the_paper_models():
    b32 = clip_feature_info('ViT-B-32')
    assert (b32.num_patches, b32.patch_dim, b32.embed_dim, b32.patch_pool,
            b32.pretrained) == (49, 768, 512, 1, 'openai')
    l14 = clip_feature_info('ViT-L-14')
    assert (l14.num_patches, l14.patch_dim, l14.embed_dim,
            l14.patch_pool) == (64, 1024, 768, 2)
    with pytest.raises(ValueError, match='no config for'):
        clip_feature_info('tiny')


def test_caption_map_formats(tmp_path):
    coco = tmp_path / 'coco.json'
    coco.write_text(json.dumps({'images': [], 'annotations': [
        {'id': 3, 'image_id': 9, 'caption': 'a\ndog'}]}))
    assert load_caption_map(coco) == {'3': 'a dog'}
    assert load_caption_map(coco, id_key='image_id') == {'9': 'a dog'}
    karpathy = tmp_path / 'karpathy.json'
    karpathy.write_text(json.dumps({'images': [{'sentences': [
        {'sentid': 5, 'raw': 'A cat.'}, {'sentid': 6, 'raw': 'A hat.'}]}]}))
    assert load_caption_map(karpathy) == {'5': 'A cat.', '6': 'A hat.'}
    plain = tmp_path / 'plain.json'
    plain.write_text(json.dumps({'a': 'x', '7': 'y'}))
    assert load_caption_map(plain) == {'a': 'x', '7': 'y'}
    listed = tmp_path / 'list.json'
    listed.write_text(json.dumps(['x', 'y']))
    assert load_caption_map(listed) == {'0': 'x', '1': 'y'}
    text = tmp_path / 'corpus.txt'
    text.write_bytes(b'first\n\nsecond\n')
    assert load_caption_map(text) == {'0': 'first', '1': 'second'}
    coco.write_text(json.dumps({'annotations': [
        {'id': 3, 'caption': 'a'}, {'id': 3, 'caption': 'b'}]}))
    with pytest.raises(ValueError, match="id '3' appears twice"):
        load_caption_map(coco)
    coco.write_text(json.dumps({'annotations': [{'caption': 'a'}]}))
    with pytest.raises(ValueError, match="needs 'id'"):
        load_caption_map(coco)


def test_clip_scores_file(tmp_path, caplog):
    path = tmp_path / 'scores.json'
    path.write_text(json.dumps({'1': 0.625, '2': None, '3': -0.25}))
    with caplog.at_level('WARNING'):
        assert load_clip_scores(path) == {'1': 0.25, '2': None, '3': -0.1}
        assert load_clip_scores(path, scale=1) == {
            '1': 0.625, '2': None, '3': -0.25}
    assert not caplog.records
    path.write_text(json.dumps({'1': 'high'}))
    with pytest.raises(ValueError, match="score of id '1'"):
        load_clip_scores(path)
    # beyond 2.5 it cannot be 2.5 x a cosine; beyond 1 not a cosine
    path.write_text(json.dumps({'1': 0.6, '7': -2.51}))
    with pytest.raises(ValueError, match=r"score of id '7' is -2.51, beyond "
                       r'\+-2.5, so it is not 2.5 x a cosine'):
        load_clip_scores(path)
    with pytest.raises(ValueError, match=r"score of id '7' is -2.51, beyond "
                       r'\+-1'):
        load_clip_scores(path, scale=1)
    with pytest.raises(ValueError, match='--clip-score-scale: must be a '
                       'positive number, got 0'):
        load_clip_scores(path, scale=0)
    path.write_text(json.dumps([0.5]))
    with pytest.raises(InputError) as err:
        load_clip_scores(path)
    assert error_line(err.value)[0] == (
        f'{path}: expected a JSON object {{id: score}}, found list; pass the '
        "release's CLIP score file, a JSON object {id: score} "
        '(--clip-scores)')


def test_raw_cosines_with_the_release_scale_are_warned_about(tmp_path,
                                                            caplog):
    path = tmp_path / 'scores.json'
    path.write_text(json.dumps({str(i): 0.28 + 0.01 * i for i in range(5)}))
    with caplog.at_level('WARNING'):
        load_clip_scores(path)
    assert len(caplog.records) == 1
    assert 'the median |CLIP score| is 0.120' in caplog.text
    assert '--clip-score-scale 1' in caplog.text
    caplog.clear()
    with caplog.at_level('WARNING'):
        assert load_clip_scores(path, scale=1)['0'] == 0.28
    assert not caplog.records


# --------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------
def _one_file_release(tmp_path, **arrays):
    folder = tmp_path / 'release' / 'feats_sp0'
    folder.mkdir(parents=True)
    np.savez(folder / '3.npz', **arrays)
    return tmp_path / 'release', str(folder / '3.npz')


@pytest.mark.parametrize('arrays,error,message', [
    (dict(features=np.zeros((N, DV))), ValueError,
     r"3.npz: no 'g_feature' array \(found \['features'\]\)"),
    (dict(g_feature=np.ones(D)), ValueError, "no 'features' array"),
    (dict(features=np.zeros((N + 1, DV)), g_feature=np.ones(D)), ValueError,
     r"features has shape \(5, 8\), but CLIP 'tiny' features are \(4, 8\)"),
    (dict(features=np.zeros((N, DV)), g_feature=np.ones((2, D))), ValueError,
     r"g_feature has shape \(2, 6\), but CLIP 'tiny' embeds in \(6,\)"),
    (dict(features=np.zeros((N, DV)), g_feature=np.zeros(D)), ValueError,
     'cannot be normalised'),
    (dict(features=np.array([{'x': 1}], dtype=object), g_feature=np.ones(D)),
     ValueError, 'cannot be read'),
])
def test_bad_npz(tmp_path, arrays, error, message):
    root, path = _one_file_release(tmp_path, **arrays)
    with pytest.raises(error, match=message) as err:
        import_release_features(root, tmp_path / 'store', {'3': 'x'},
                                _info())
    assert error_line(err.value)[0].startswith(f'{path}: ')


def test_missing_caption_or_score(tmp_path):
    root = _make_release(tmp_path / 'release')
    captions = dict(CAPTIONS)
    del captions['40']
    with pytest.raises(ValueError, match=r"1 released file\(s\) have no "
                       r"caption in the caption file, e.g. '40' \("):
        import_release_features(root, tmp_path / 'store', captions, _info())
    with pytest.raises(ValueError, match='have no CLIP score'):
        import_release_features(root, tmp_path / 'store', CAPTIONS, _info(),
                                clip_scores={'12': 0.2})
    # read from a file, the ids are checked against that file
    scores = tmp_path / 'scores.json'
    scores.write_text(json.dumps({'12': 0.5}))
    with pytest.raises(InputError) as err:
        import_release_features(root, tmp_path / 'store', CAPTIONS, _info(),
                                clip_scores=load_clip_scores(scores))
    assert error_line(err.value)[0].startswith(
        f"{scores}: 5 released file(s) have no CLIP score in the score file, "
        "e.g. '3' (")
    assert str(err.value).endswith('; pass the CLIP score file of these '
                                   'released features (--clip-scores)')
    assert not (tmp_path / 'store').exists()  # checked before writing


def test_bad_release_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        find_release_files(tmp_path / 'nope')
    assert error_line(err.value)[0] == (
        f'{tmp_path / "nope"}: no such release feature folder; pass the '
        'folder that holds the released <feats>_sp<k> folders')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match=r'no <feats>_sp<k> folder'):
        find_release_files(tmp_path / 'empty')
    root = _make_release(tmp_path / 'two', {0: ['1']}, prefix='a')
    _make_release(root, {0: ['1']}, prefix='b')
    with pytest.raises(ValueError, match='several kinds'):
        find_release_files(root)
    assert [f.path for f in find_release_files(root, prefix='b')] == [
        str(root / 'b_sp0' / '1.npz')]
    with pytest.raises(FileNotFoundError, match='no folder named c_sp'):
        find_release_files(root, prefix='c')
    dup = _make_release(tmp_path / 'dup', {0: ['1'], 1: ['1']})
    with pytest.raises(ValueError, match="id '1' appears twice"):
        find_release_files(dup)
    (tmp_path / 'named' / 'f_sp0').mkdir(parents=True)
    np.savez(tmp_path / 'named' / 'f_sp0' / 'x.npz',
             features=np.zeros((N, DV)), g_feature=np.ones(D))
    with pytest.raises(ValueError, match="id 'x' is not an integer"):
        import_release_features(tmp_path / 'named', tmp_path / 's',
                                {'x': 'c'}, _info(), int_ids=True)
