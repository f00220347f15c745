"""SynC data refinement (Kim et al., ACM MM 2025, arXiv 2507.18616):
re-pairing on hand-made embeddings, the kept count, the resumable parts,
the pairing file, and the command line (tools/data/refine_pairs.py)."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

from mmpcm.datasets.feature_store import (FeatureStore, Pairing,
                                          load_pairing, save_pairing,
                                          store_meta_sha256)
from mmpcm.preprocessing.refine import (MissingPackageError, SyncConfig,
                                        refine_pairs, refine_store,
                                        search_topk)
from mmpcm.testing import make_random_feature_store
from mmpcm.utils.cli import InputError, MissingInputError

from tool_loader import ROOT, run_tool_here

D = 16  # CLIP width of the random stores


def _unit(*rows):
    rows = np.asarray(rows, dtype=np.float64)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(
        np.float32)


def _e(i, dim=8):
    row = np.zeros(dim)
    row[i] = 1
    return row


def _hand_made_pool():
    """Six pairs whose right re-pairing is known.

    Captions 2..5 sit on their own images. Caption 0 is about the content
    of image 2; its own image 0 points at something unrelated. Caption 1 is
    nearest to image 4 by text-to-image cosine, but image 4 retrieves
    captions 4 and 5, while image 3 (second nearest) retrieves caption 1
    back: the cycle picks image 3. Image 1 is unrelated to caption 1.
    """
    e = _e
    texts = _unit(e(0) + 2 * e(2),  # c0: image 2's content
                  0.3 * e(1) + 1.0 * e(3) + 1.2 * e(4),  # c1
                  e(2), e(3), e(4),
                  e(4) + 0.3 * e(5))  # c5: near c4
    images = _unit(e(6) + 0.2 * e(5),  # broken
                   e(7) + 0.2 * e(2),  # broken
                   e(2), e(3), e(4),
                   e(4) + 0.3 * e(5))
    return images, texts


def test_hand_made_pool_is_repaired_as_expected():
    images, texts = _hand_made_pool()
    cfg = SyncConfig(num_candidates=3, i2t_k=2, keep_fraction=1.0)
    pairing = refine_pairs(images, texts, texts, cfg, progress=False)
    assert pairing.caption_idx.tolist() == [0, 1, 2, 3, 4, 5]
    assert pairing.image_idx.tolist() == [2, 3, 2, 3, 4, 5]
    assert pairing.num_repaired == 2
    # caption 1's nearest image by text-to-image cosine is image 4: the
    # cycle score, not the retrieval alone, chose image 3
    assert int(np.argmax(texts[1] @ images.T)) == 4
    np.testing.assert_allclose(pairing.cycle_score, 1, atol=1e-6)
    np.testing.assert_allclose(
        pairing.clip_score,
        (images[pairing.image_idx] * texts).sum(1), atol=1e-6)
    assert pairing.clip_score.dtype == np.float32


def test_cycle_score_uses_the_sentence_space():
    """Same retrieval, other sentence embeddings: caption 1's cycle score
    via image 4 is its sentence cosine with caption 4 or 5."""
    images, texts = _hand_made_pool()
    sentences = texts.copy()
    sentences[1] = sentences[4]  # caption 1 'says' what caption 4 says
    cfg = SyncConfig(num_candidates=3, i2t_k=2, keep_fraction=1.0)
    pairing = refine_pairs(images, texts, sentences, cfg, progress=False)
    # image 4 (t2i nearest) now scores 1 as well and wins the tie
    assert pairing.image_idx[1] == 4


def _reference(images, texts, sentences, k, r):
    """Brute force over full similarity matrices, the same tie rules."""
    images, texts, sentences = (
        a / np.linalg.norm(a, axis=1, keepdims=True)
        for a in (images, texts, sentences))
    i2t = texts @ images.T  # (P, M)
    back = np.argsort(-i2t.T, axis=1, kind='stable')[:, :r]  # (M, r)
    best, score = [], []
    for c in range(len(texts)):
        cands = np.argsort(-i2t[c], kind='stable')[:k]  # (k, )
        s = np.array([max(sentences[c] @ sentences[x] for x in back[j])
                      for j in cands])
        pick = int(np.flatnonzero(s >= s.max() - 1e-6)[0])
        best.append(cands[pick])
        score.append(s[pick])
    return np.array(best), np.array(score)


def test_matches_a_brute_force_reference():
    rng = np.random.default_rng(3)
    images = rng.standard_normal((37, 12))
    texts = images + 0.8 * rng.standard_normal((37, 12))
    sentences = rng.standard_normal((37, 5)) + texts[:, :5]
    cfg = SyncConfig(num_candidates=4, i2t_k=2, keep_fraction=1.0,
                     chunk_size=10)
    pairing = refine_pairs(images, texts, sentences, cfg, progress=False)
    best, score = _reference(images, texts, sentences, 4, 2)
    assert pairing.image_idx.tolist() == best.tolist()
    np.testing.assert_allclose(pairing.cycle_score, score, atol=1e-5)
    assert pairing.num_repaired > 0


def test_search_topk_is_exact_in_chunks():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 8)).astype(np.float32)
    queries = rng.standard_normal((23, 8)).astype(np.float32)
    found = search_topk(queries, base, k=5, chunk_size=7, use_gpu=False)
    assert found.scores.shape == found.indices.shape == (23, 5)
    assert found.scores.dtype == np.float32
    assert found.indices.dtype == np.int64
    want = np.argsort(-(queries @ base.T), axis=1, kind='stable')[:, :5]
    assert (found.indices == want).all()
    # equal scores: lower row first
    ties = search_topk(np.ones((1, 2)), np.ones((4, 2)), k=4)
    assert ties.indices.tolist() == [[0, 1, 2, 3]]


def test_missing_faiss_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'faiss', None)
    with pytest.raises(MissingPackageError,
                       match='pip install faiss-cpu') as info:
        search_topk(np.ones((1, 2)), np.ones((3, 2)), k=1)
    assert isinstance(info.value, ImportError)
    # the store-level run says so before encoding any caption
    _store(tmp_path / 'store', n=4)
    with pytest.raises(MissingPackageError, match='faiss'):
        refine_store(tmp_path / 'store', tmp_path / 'out', CFG,
                     sentence_model='not/loaded', progress=False)


def test_missing_sentence_model_folder_is_one_line(tmp_path, capsys):
    _store(tmp_path / 'store', n=4)
    run = run_tool_here(capsys, TOOL, str(tmp_path / 'store'),
                        '--sentence-model', str(tmp_path / 'no_model'),
                        '--no-progress')
    assert run.status != 0
    assert _error_line(run.err).startswith(
        f'error: {tmp_path / "no_model"}: no such sentence-transformers '
        'model folder; ')


@pytest.mark.parametrize('pairs,fraction,kept', [
    (10, 0.9, 9), (10, 0.25, 3), (7, 0.9, 6), (3, 0.5, 2), (542401, 0.9,
                                                           488161),
    (10, 1.0, 10), (1, 0.1, 0)])
def test_kept_count_is_keep_fraction_rounded_half_up(pairs, fraction, kept):
    assert SyncConfig(keep_fraction=fraction).num_kept(pairs) == kept


def test_keep_fraction_exact_and_drops_the_lowest_cycle_scores():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((10, 6))
    texts = images + 2.0 * rng.standard_normal((10, 6))
    full = refine_pairs(images, texts, texts,
                        SyncConfig(num_candidates=3, i2t_k=1,
                                   keep_fraction=1.0), progress=False)
    assert full.num_pairs == 10 and len(set(full.cycle_score.tolist())) > 2
    for fraction, kept in ((0.9, 9), (0.55, 6), (0.25, 3)):
        part = refine_pairs(images, texts, texts,
                            SyncConfig(num_candidates=3, i2t_k=1,
                                       keep_fraction=fraction),
                            progress=False)
        assert part.num_pairs == kept
        dropped = np.setdiff1d(full.caption_idx, part.caption_idx)
        assert len(dropped) == 10 - kept
        assert (full.cycle_score[dropped].max()
                <= part.cycle_score.min())
        # the kept pairs are the full run's pairs
        assert (full.image_idx[part.caption_idx] == part.image_idx).all()


def test_config_is_validated():
    for bad in (dict(num_candidates=0), dict(i2t_k=-1),
                dict(keep_fraction=0), dict(keep_fraction=1.5),
                dict(chunk_size=2.5)):
        with pytest.raises(ValueError):
            SyncConfig(**bad)


def test_mismatched_arrays_are_refused():
    with pytest.raises(ValueError, match='width'):
        refine_pairs(np.ones((3, 4)), np.ones((3, 5)), np.ones((3, 2)),
                     progress=False)
    with pytest.raises(ValueError, match='sentence embeddings'):
        refine_pairs(np.ones((3, 4)), np.ones((3, 4)), np.ones((2, 2)),
                     progress=False)


# ---------------------------------------------------------------------------
# stores, parts, resume
# ---------------------------------------------------------------------------
def _store(root, n=40, seed=0, text=True, model='tiny', shard_size=16):
    return make_random_feature_store(
        root, [f'caption {i}' for i in range(n)], num_patches=2,
        patch_dim=4, embed_dim=D, clip_model=model, seed=seed,
        shard_size=shard_size, with_text_embeds=text)


CFG = SyncConfig(num_candidates=5, i2t_k=2, keep_fraction=0.9, chunk_size=8)


def _bytes(folder):
    return {name: open(osp.join(folder, name), 'rb').read()
            for name in ('pairing.npz', 'pairing.json')}


def test_refine_store_writes_a_loadable_pairing(tmp_path):
    store = _store(tmp_path / 'store')
    summary = refine_store(tmp_path / 'store', tmp_path / 'out', CFG,
                           progress=False)
    assert (summary.pairs_in, summary.kept, summary.dropped) == (40, 36, 4)
    pairing = load_pairing(tmp_path / 'out', store)
    assert pairing.num_pairs == 36 and summary.repaired == pairing.num_repaired
    meta = json.loads((tmp_path / 'out' / 'pairing.json').read_text())
    assert meta['store'] == dict(root=str(tmp_path / 'store'), num_items=40,
                                 meta_sha256=store_meta_sha256(store.root))
    assert meta['counts'] == dict(pairs_in=40, kept=36, dropped=4,
                                  repaired=summary.repaired)
    assert meta['settings']['num_candidates'] == 5
    assert meta['settings']['sentence_model'] == 'clip_text_embeds'
    # the CLIP score is the raw cosine of the new pair, from the store
    g = store.load_array('global_embeds.npy').astype(np.float32)
    t = store.load_array('text_embeds.npy').astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    np.testing.assert_allclose(
        pairing.clip_score,
        (g[pairing.image_idx] * t[pairing.caption_idx]).sum(1), atol=1e-5)
    # 5 chunks of 8 per stage, each one file
    parts = sorted(os.listdir(tmp_path / 'out' / 'parts'))
    assert parts == sorted(['settings.json'] + [
        f'{s}_{i:06d}.npz' for s in ('i2t', 't2i') for i in range(5)])


def test_interrupted_run_resumes_to_identical_bytes(tmp_path):
    _store(tmp_path / 'store')
    refine_store(tmp_path / 'store', tmp_path / 'full', CFG, progress=False)
    want = _bytes(tmp_path / 'full')

    written = []

    def crash_after_seven(path):
        written.append(path)
        if len(written) == 7:  # all 5 of stage 1, 2 of stage 2
            raise KeyboardInterrupt

    out = tmp_path / 'resumed'
    with pytest.raises(KeyboardInterrupt):
        refine_store(tmp_path / 'store', out, CFG, progress=False,
                     on_part=crash_after_seven)
    assert not (out / 'pairing.json').exists()
    assert len([n for n in os.listdir(out / 'parts')
                if n.endswith('.npz')]) == 7
    summary = refine_store(tmp_path / 'store', out, CFG, progress=False)
    assert summary.chunks_reused == 7
    assert _bytes(out) == {k: v.replace(b'full', b'resumed')
                           for k, v in want.items()}
    assert _bytes(out)['pairing.npz'] == want['pairing.npz']

    # parts deleted by hand are computed again, the rest reused
    for name in ('i2t_000002.npz', 't2i_000000.npz', 't2i_000004.npz'):
        os.remove(out / 'parts' / name)
    summary = refine_store(tmp_path / 'store', out, CFG, progress=False)
    assert summary.chunks_reused == 7
    assert _bytes(out)['pairing.npz'] == want['pairing.npz']


def test_parts_of_other_settings_are_redone_not_mixed(tmp_path):
    _store(tmp_path / 'store')
    other = SyncConfig(num_candidates=2, i2t_k=1, keep_fraction=0.9,
                       chunk_size=8)
    refine_store(tmp_path / 'store', tmp_path / 'fresh', other,
                 progress=False)
    want = _bytes(tmp_path / 'fresh')['pairing.npz']
    out = tmp_path / 'out'
    refine_store(tmp_path / 'store', out, CFG, progress=False)
    assert _bytes(out)['pairing.npz'] != want
    summary = refine_store(tmp_path / 'store', out, other, progress=False)
    assert summary.chunks_reused == 0
    assert _bytes(out)['pairing.npz'] == want
    # a stray part of other settings dropped among valid ones is ignored
    refine_store(tmp_path / 'store', tmp_path / 'k5', CFG, progress=False)
    os.replace(tmp_path / 'k5' / 'parts' / 't2i_000001.npz',
               out / 'parts' / 't2i_000001.npz')
    summary = refine_store(tmp_path / 'store', out, other, progress=False)
    assert summary.chunks_reused == 9
    assert _bytes(out)['pairing.npz'] == want
    # keep_fraction does not change the parts: all reused
    summary = refine_store(tmp_path / 'store', out, SyncConfig(
        num_candidates=2, i2t_k=1, keep_fraction=0.5, chunk_size=8),
        progress=False)
    assert summary.chunks_reused == 10 and summary.kept == 20


def test_store_without_text_embeds_names_meta_json(tmp_path):
    _store(tmp_path / 'store', text=False)
    with pytest.raises(InputError) as info:
        refine_store(tmp_path / 'store', tmp_path / 'out', CFG,
                     progress=False)
    assert info.value.path == str(tmp_path / 'store' / 'meta.json')
    assert 'text embeddings' in info.value.problem
    assert 're-extract' in info.value.remedy


def test_width_mismatch_names_the_file(tmp_path):
    _store(tmp_path / 'store')
    bad = tmp_path / 'store' / 'shard_00001' / 'text_embeds.npy'
    np.save(bad, np.zeros((16, D + 1), np.float16))
    with pytest.raises(InputError) as info:
        refine_store(tmp_path / 'store', tmp_path / 'out', CFG,
                     progress=False)
    assert info.value.path == str(bad)
    assert str(D + 1) in str(info.value)


def test_out_dir_must_not_be_the_store(tmp_path):
    _store(tmp_path / 'store')
    with pytest.raises(InputError, match='store folder itself'):
        refine_store(tmp_path / 'store', tmp_path / 'store', CFG,
                     progress=False)


# ---------------------------------------------------------------------------
# retrieval with another model's embeddings (--retrieval-store)
# ---------------------------------------------------------------------------
def _set_embeds(root, images, texts):
    """Replace a one-shard store's global and text embeddings."""
    for name, array in (('global_embeds.npy', images),
                        ('text_embeds.npy', texts)):
        np.save(osp.join(root, 'shard_00000', name),
                np.asarray(array, np.float16))


def _own_pairs_pool():
    """Six pairs in D = 16 on which every caption keeps its own image:
    caption i and image i share axis i, all rows share axis 12 (cross
    cosines 0.19, own 0.97)."""
    images = _unit(*[_e(i, D) + 0.5 * _e(12, D) for i in range(6)])
    texts = _unit(*[_e(i, D) + 0.5 * _e(12, D) + 0.3 * _e(13, D)
                    for i in range(6)])
    return images, texts


def _hand_made_stores(tmp_path):
    """A training store (D = 16) whose own embeddings keep every pair, and
    a retrieval store of the same pairs (width 8, the hand-made pool) that
    re-pairs captions 0 and 1 to images 2 and 3."""
    captions = [f'caption {i}' for i in range(6)]
    train = make_random_feature_store(
        tmp_path / 'train', captions, num_patches=2, patch_dim=4,
        embed_dim=D, clip_model='train-clip', with_text_embeds=True)
    _set_embeds(train.root, *_own_pairs_pool())
    make_random_feature_store(
        tmp_path / 'retr', captions, num_patches=3, patch_dim=5,
        embed_dim=8, clip_model='retrieval-clip', seed=1,
        with_text_embeds=True)
    _set_embeds(tmp_path / 'retr', *_hand_made_pool())
    return tmp_path / 'train', tmp_path / 'retr'


HAND_CFG = SyncConfig(num_candidates=3, i2t_k=2, keep_fraction=1.0,
                      chunk_size=4)


def _store_cosines(pairing):
    g, t = _own_pairs_pool()
    g, t = g.astype(np.float16).astype(np.float32), t.astype(
        np.float16).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return (g[pairing.image_idx] * t[pairing.caption_idx]).sum(1)


def test_refine_pairs_clip_embeds_score_the_kept_pairs():
    images, texts = _hand_made_pool()
    own_images, own_texts = _own_pairs_pool()
    pairing = refine_pairs(images, texts, texts, HAND_CFG, progress=False,
                           clip_embeds=(own_images, own_texts),
                           retrieval=dict(source='test'))
    assert pairing.image_idx.tolist() == [2, 3, 2, 3, 4, 5]
    np.testing.assert_allclose(
        pairing.clip_score, (own_images[pairing.image_idx]
                             * own_texts).sum(1), atol=1e-6)
    assert pairing.meta['settings']['retrieval'] == dict(source='test')
    with pytest.raises(ValueError, match='clip_embeds'):
        refine_pairs(images, texts, texts, HAND_CFG, progress=False,
                     clip_embeds=(own_images[:5], own_texts))


def test_retrieval_store_drives_the_search_not_the_clip_score(tmp_path):
    train, retr = _hand_made_stores(tmp_path)
    # the training store's own embeddings keep every caption's image
    own = refine_store(train, tmp_path / 'own', HAND_CFG, progress=False)
    assert own.repaired == 0
    assert load_pairing(tmp_path / 'own').image_idx.tolist() == list(
        range(6))
    # the retrieval store's embeddings re-pair captions 0 and 1
    summary = refine_store(train, tmp_path / 'out', HAND_CFG,
                           progress=False, retrieval_store=retr)
    pairing = load_pairing(tmp_path / 'out', FeatureStore(train))
    assert pairing.image_idx.tolist() == [2, 3, 2, 3, 4, 5]
    assert summary.repaired == 2
    # CLIP scores: the training store's cosines of the new pairs (caption 0
    # on image 2: 0.19), not the retrieval store's (0.89)
    want = _store_cosines(pairing)
    np.testing.assert_allclose(pairing.clip_score, want, atol=1e-3)
    assert pairing.clip_score[0] < 0.3
    settings = pairing.meta['settings']
    assert settings['retrieval'] == dict(
        source='retrieval_store', root=str(retr), model='retrieval-clip',
        pretrained=None, embed_dim=8,
        meta_sha256=store_meta_sha256(str(retr)))
    assert settings['sentence_model'] == 'clip_text_embeds'
    own_settings = load_pairing(tmp_path / 'own').meta['settings']
    assert own_settings['retrieval'] == dict(
        source='store', model='train-clip', pretrained=None)


def test_retrieval_source_is_in_the_parts_fingerprint(tmp_path):
    import shutil
    _store(tmp_path / 'store')
    shutil.copytree(tmp_path / 'store', tmp_path / 'copy')
    out = tmp_path / 'out'
    refine_store(tmp_path / 'store', out, CFG, progress=False)
    want = _bytes(out)['pairing.npz']
    # the same embeddings as a retrieval store: the same pairs, but the
    # parts of the store's own retrieval are not reused
    summary = refine_store(tmp_path / 'store', out, CFG, progress=False,
                           retrieval_store=tmp_path / 'copy')
    assert summary.chunks_reused == 0
    assert _bytes(out)['pairing.npz'] == want
    settings = json.loads((out / 'parts' / 'settings.json').read_text())
    assert settings['settings']['retrieval']['source'] == 'retrieval_store'
    # another retrieval store of the same pairs: computed anew, different
    _store(tmp_path / 'other', seed=5, model='other')
    summary = refine_store(tmp_path / 'store', out, CFG, progress=False,
                           retrieval_store=tmp_path / 'other')
    assert summary.chunks_reused == 0
    assert _bytes(out)['pairing.npz'] != want
    # a rerun resumes every part; back to the store's own: all anew
    summary = refine_store(tmp_path / 'store', out, CFG, progress=False,
                           retrieval_store=tmp_path / 'other')
    assert summary.chunks_reused == 10
    summary = refine_store(tmp_path / 'store', out, CFG, progress=False)
    assert summary.chunks_reused == 0
    assert _bytes(out)['pairing.npz'] == want


def _refused(tmp_path, retrieval_root, out='out'):
    with pytest.raises(InputError) as info:
        refine_store(tmp_path / 'store', tmp_path / out, CFG,
                     progress=False, retrieval_store=retrieval_root)
    assert not (tmp_path / out / 'pairing.json').exists()
    return info.value


def test_retrieval_store_of_other_pairs_is_refused(tmp_path):
    _store(tmp_path / 'store')
    # another size
    _store(tmp_path / 'bigger', n=41, model='other')
    err = _refused(tmp_path, tmp_path / 'bigger')
    assert err.path == str(tmp_path / 'bigger' / 'meta.json')
    assert '41 items' in err.problem and '40' in err.problem
    # the same size, another caption at item 19 (shard 1, line 4)
    captions = [f'caption {i}' for i in range(40)]
    captions[19] = 'a caption of another corpus'
    make_random_feature_store(
        tmp_path / 'captions', captions, num_patches=2, patch_dim=4,
        embed_dim=8, clip_model='other', shard_size=16,
        with_text_embeds=True)
    err = _refused(tmp_path, tmp_path / 'captions')
    assert err.path == str(tmp_path / 'captions' / 'shard_00001' /
                           'records.jsonl')
    assert err.problem.startswith('line 4 (item 19): caption ')
    assert 'another corpus' in err.problem and 'caption 19' in err.problem
    # the same captions, other image ids
    make_random_feature_store(
        tmp_path / 'ids', [f'caption {i}' for i in range(40)],
        num_patches=2, patch_dim=4, embed_dim=8, clip_model='other',
        image_ids=[f'img{i}' for i in range(40)], with_text_embeds=True)
    err = _refused(tmp_path, tmp_path / 'ids')
    assert err.path == str(tmp_path / 'ids' / 'shard_00000' /
                           'records.jsonl')
    assert err.problem.startswith("line 1 (item 0): image_id 'img0'")


def test_retrieval_store_embeddings_are_checked(tmp_path):
    _store(tmp_path / 'store')
    _store(tmp_path / 'notext', text=False, model='other')
    err = _refused(tmp_path, tmp_path / 'notext')
    assert err.path == str(tmp_path / 'notext' / 'meta.json')
    assert 'retrieval store' in err.problem
    assert 'text embeddings' in err.problem
    # its own widths may differ from the store's but must agree
    make_random_feature_store(
        tmp_path / 'wide', [f'caption {i}' for i in range(40)],
        num_patches=2, patch_dim=4, embed_dim=24, clip_model='other',
        shard_size=16, with_text_embeds=True)
    bad = tmp_path / 'wide' / 'shard_00001' / 'text_embeds.npy'
    np.save(bad, np.zeros((16, 20), np.float16))
    err = _refused(tmp_path, tmp_path / 'wide')
    assert err.path == str(bad) and '20' in str(err)
    # a missing retrieval store names its folder; it is not the output
    with pytest.raises(MissingInputError) as info:
        refine_store(tmp_path / 'store', tmp_path / 'out', CFG,
                     progress=False, retrieval_store=tmp_path / 'nope')
    assert str(tmp_path / 'nope') in str(info.value)
    _store(tmp_path / 'same', model='other')
    err = _refused(tmp_path, tmp_path / 'same', out='same')
    assert 'retrieval store folder itself' in err.problem


# ---------------------------------------------------------------------------
# the pairing file
# ---------------------------------------------------------------------------
def _pairing(store_root, n=6):
    return Pairing(
        caption_idx=np.array([0, 2, 3, 5], np.int64),
        image_idx=np.array([0, 0, 4, 5], np.int64),
        clip_score=np.array([0.3, 0.25, 0.2, -0.1], np.float32),
        cycle_score=np.array([1, 0.9, 0.8, 0.95], np.float32),
        meta=dict(settings=dict(note='hand-made'),
                  store=dict(root=str(store_root), num_items=n,
                             meta_sha256=store_meta_sha256(store_root))))


def test_pairing_round_trip_and_refusals(tmp_path):
    store = _store(tmp_path / 'store', n=6)
    pairing = _pairing(store.root)
    save_pairing(pairing, tmp_path / 'p')
    loaded = load_pairing(tmp_path / 'p', store)
    for name in ('caption_idx', 'image_idx', 'clip_score', 'cycle_score'):
        got = getattr(loaded, name)
        assert got.dtype == getattr(pairing, name).dtype
        assert (got == getattr(pairing, name)).all()
    assert loaded.meta['counts'] == dict(pairs_in=6, kept=4, dropped=2,
                                         repaired=2)
    # readable without mmpcm and without pickle
    with np.load(tmp_path / 'p' / 'pairing.npz', allow_pickle=False) as f:
        assert sorted(f.files) == ['caption_idx', 'clip_score',
                                   'cycle_score', 'image_idx']
    # saving again gives the same bytes
    before = _bytes(tmp_path / 'p')
    save_pairing(pairing, tmp_path / 'p')
    assert _bytes(tmp_path / 'p') == before

    # another store: other size, or same size and other meta.json
    for other in (_store(tmp_path / 'bigger', n=7),
                  _store(tmp_path / 'other', n=6, model='other')):
        with pytest.raises(InputError) as info:
            load_pairing(tmp_path / 'p', other)
        assert info.value.path == str(tmp_path / 'p' / 'pairing.json')
        assert 'made for the store' in info.value.problem

    # a tampered npz
    npz = tmp_path / 'p' / 'pairing.npz'
    data = bytearray(npz.read_bytes())
    data[-40] ^= 1
    npz.write_bytes(bytes(data))
    with pytest.raises(InputError) as info:
        load_pairing(tmp_path / 'p', store)
    assert info.value.path == str(npz) and 'sha256' in info.value.problem

    # no pairing.json: not finished
    os.remove(tmp_path / 'p' / 'pairing.json')
    with pytest.raises(MissingInputError, match='pairing.json: missing'):
        load_pairing(tmp_path / 'p')


def test_pairing_arrays_are_checked(tmp_path):
    store = _store(tmp_path / 'store', n=6)
    good = _pairing(store.root)
    with pytest.raises(ValueError, match='outside'):
        save_pairing(good._replace(image_idx=np.array([0, 0, 4, 6])),
                     tmp_path / 'p')
    with pytest.raises(ValueError, match='ascending'):
        save_pairing(good._replace(caption_idx=np.array([0, 2, 2, 5])),
                     tmp_path / 'p')
    with pytest.raises(ValueError, match='one length'):
        save_pairing(good._replace(clip_score=np.zeros(3, np.float32)),
                     tmp_path / 'p')
    # a file edited consistently (sha256 updated) is still checked
    save_pairing(good, tmp_path / 'p')
    from mmpcm.datasets.feature_store.pairing import write_npz_deterministic
    from mmpcm.utils.fileio import sha256_file
    npz = tmp_path / 'p' / 'pairing.npz'
    with open(npz, 'wb') as f:
        write_npz_deterministic(f, dict(
            caption_idx=good.caption_idx, image_idx=np.array([0, 0, 4, 9]),
            clip_score=good.clip_score, cycle_score=good.cycle_score))
    meta = json.loads((tmp_path / 'p' / 'pairing.json').read_text())
    meta['npz_sha256'] = sha256_file(npz)
    (tmp_path / 'p' / 'pairing.json').write_text(json.dumps(meta))
    with pytest.raises(InputError) as info:
        load_pairing(tmp_path / 'p')
    assert info.value.path == str(npz) and 'outside [0, 6)' in str(
        info.value)


# ---------------------------------------------------------------------------
# sentence-transformers (a tiny random model built here, nothing downloaded)
# ---------------------------------------------------------------------------
def _tiny_sentence_model(folder):
    st = pytest.importorskip('sentence_transformers')
    transformers = pytest.importorskip('transformers')
    words = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'caption'] + [
        str(i) for i in range(10)]
    bert = folder / 'bert'
    bert.mkdir(parents=True)
    (bert / 'vocab.txt').write_text('\n'.join(words) + '\n')
    transformers.BertTokenizer(str(bert / 'vocab.txt')).save_pretrained(
        bert)
    config = transformers.BertConfig(
        vocab_size=len(words), hidden_size=8, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=32)
    transformers.BertModel(config).save_pretrained(bert)
    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer import modules
    except ImportError:
        from sentence_transformers import models as modules
    word = modules.Transformer(str(bert), max_seq_length=16)
    dim = getattr(word, 'get_embedding_dimension',
                  getattr(word, 'get_word_embedding_dimension', None))()
    pool = modules.Pooling(dim)
    model = st.SentenceTransformer(modules=[word, pool], device='cpu')
    model.save(str(folder / 'st'))
    return str(folder / 'st')


def test_sentence_transformer_model_from_a_folder(tmp_path):
    model = _tiny_sentence_model(tmp_path / 'model')
    _store(tmp_path / 'store', n=12)
    cfg = SyncConfig(num_candidates=3, i2t_k=2, keep_fraction=0.5,
                     chunk_size=5)
    summary = refine_store(tmp_path / 'store', tmp_path / 'out', cfg,
                           sentence_model=model, device='cpu',
                           progress=False)
    assert summary.kept == 6
    pairing = load_pairing(tmp_path / 'out')
    assert pairing.meta['settings']['sentence_model'] == model
    with np.load(tmp_path / 'out' / 'parts' / 'sentences.npz') as f:
        embeds = f['embeds']
    assert embeds.shape == (12, 8) and embeds.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeds, axis=1), 1, atol=1e-5)
    first = _bytes(tmp_path / 'out')
    # a rerun reads the cached sentence embeddings and reuses every part
    summary = refine_store(tmp_path / 'store', tmp_path / 'out', cfg,
                           sentence_model=model, device='cpu',
                           progress=False)
    assert summary.chunks_reused == 6 and _bytes(tmp_path / 'out') == first


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------
TOOL = 'data/refine_pairs'


def _error_line(err):
    lines = [line for line in err.splitlines()
             if not line.startswith('warning: ')]
    assert len(lines) == 1, err
    assert lines[0].startswith('error: ') and 'Traceback' not in err
    return lines[0]


def test_cli_good_run_and_resume(tmp_path, capsys):
    store = _store(tmp_path / 'store')
    args = (str(tmp_path / 'store'), '--chunk-size', '8',
            '--num-candidates', '5', '--no-progress')
    run = run_tool_here(capsys, TOOL, *args)
    assert run.status == 0, run.err
    out = tmp_path / 'store_sync'
    assert (out / 'pairing.json').is_file()
    assert load_pairing(out, store).num_pairs == 36
    assert '40 pairs in, 36 kept, 4 dropped' in run.out
    assert str(out / 'pairing.json') in run.out
    run = run_tool_here(capsys, TOOL, *args)
    assert run.status == 0 and '10 chunks resumed' in run.out


def test_cli_retrieval_store(tmp_path, capsys):
    train, retr = _hand_made_stores(tmp_path)
    run = run_tool_here(capsys, TOOL, str(train), '--retrieval-store',
                        str(retr), '--num-candidates', '3',
                        '--keep-fraction', '1', '--chunk-size', '4',
                        '--out', str(tmp_path / 'out'), '--no-progress')
    assert run.status == 0, run.err
    assert '6 pairs in, 6 kept, 0 dropped, 2 re-paired' in run.out
    pairing = load_pairing(tmp_path / 'out', FeatureStore(train))
    assert pairing.image_idx.tolist() == [2, 3, 2, 3, 4, 5]
    assert pairing.meta['settings']['retrieval']['root'] == str(retr)
    # a retrieval store of other pairs: one line naming its file
    _store(tmp_path / 'other', n=7, model='other')
    run = run_tool_here(capsys, TOOL, str(train), '--retrieval-store',
                        str(tmp_path / 'other'), '--no-progress')
    assert run.status != 0
    assert _error_line(run.err).startswith(
        f'error: {tmp_path / "other" / "meta.json"}: the retrieval store '
        'has 7 items')


def test_cli_bad_inputs_are_one_line(tmp_path, capsys):
    run = run_tool_here(capsys, TOOL, str(tmp_path / 'nope'))
    assert run.status != 0
    assert str(tmp_path / 'nope') in _error_line(run.err)
    _store(tmp_path / 'notext', text=False)
    run = run_tool_here(capsys, TOOL, str(tmp_path / 'notext'))
    assert run.status != 0
    line = _error_line(run.err)
    assert line.startswith(f'error: {tmp_path / "notext" / "meta.json"}: ')
    _store(tmp_path / 'store')
    run = run_tool_here(capsys, TOOL, str(tmp_path / 'store'),
                        '--keep-fraction', '1.5')
    assert run.status != 0
    assert _error_line(run.err).startswith('error: --keep-fraction: ')


def test_cli_debug_and_a_light_help():
    with pytest.raises(SystemExit) as info:
        run_tool_here.__globals__['load_tool'](TOOL).main(['--help'])
    assert info.value.code == 0
    source = open(osp.join(ROOT, 'tools', f'{TOOL}.py')).read()
    assert 'run_tool(' in source and 'add_debug_flag(' in source
    code = ('import runpy, sys\n'
            f'sys.argv = ["refine_pairs.py", "--help"]\n'
            'try:\n'
            f'    runpy.run_path({osp.join(ROOT, "tools", TOOL + ".py")!r},'
            ' run_name="__main__")\n'
            'except SystemExit:\n'
            '    pass\n'
            'heavy = [m for m in ("faiss", "torch", "numpy", "tqdm") '
            'if m in sys.modules]\n'
            'print("HEAVY", heavy)\n')
    done = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert 'HEAVY []' in done.stdout, done.stdout + done.stderr


# ---------------------------------------------------------------------------
# retrieval with an open_clip model (--retrieval-model, e.g. SigLIP2)
# ---------------------------------------------------------------------------
MODEL_CAPTIONS = ['A red square.', 'a green circle.', 'A Blue triangle',
                  'two yellow dots.', 'A black line.', 'a white field.']
MODEL_COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200),
                 (220, 220, 40), (10, 10, 10), (245, 245, 245)]


def _tiny_clip_folder(folder):
    """A tiny random open_clip model saved as a local-dir: folder (as the
    toy world saves its CLIP); returns its model name."""
    import torch
    from safetensors.torch import save_file

    from mmpcm.testing import TINY_CLIP_CFG
    from mmpcm.testing.pipelines import build_tiny_open_clip
    os.makedirs(folder, exist_ok=True)
    model = build_tiny_open_clip(seed=3)
    with torch.no_grad():  # not a flat image tower: images must differ
        model.visual.proj.mul_(4)
    config = dict(model_cfg=TINY_CLIP_CFG,
                  preprocess_cfg=dict(size=32, mean=[0.5, 0.4, 0.3],
                                      std=[0.2, 0.25, 0.3]))
    with open(osp.join(folder, 'open_clip_config.json'), 'w') as f:
        json.dump(config, f)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              osp.join(folder, 'open_clip_model.safetensors'))
    return f'local-dir:{folder}'


def _model_world(tmp_path, normalised=True):
    """A generation folder of 6 PNGs (various sizes), a store of their
    captions (records with "image"; clip_score_text as the extraction
    writes it) and the tiny model."""
    from PIL import Image
    gen = tmp_path / 'gen'
    os.makedirs(gen / 'images')
    rels = []
    for i, colour in enumerate(MODEL_COLOURS):
        rel = f'images/{i:03d}.png'
        pixels = np.zeros((20 + 3 * i, 40 - 2 * i, 3), np.uint8)
        pixels[...] = colour
        pixels[::3, ::2] = 255 - np.asarray(colour)  # some texture
        Image.fromarray(pixels).save(gen / rel)
        rels.append(rel)
    store = make_random_feature_store(
        tmp_path / 'store', MODEL_CAPTIONS, num_patches=2, patch_dim=4,
        embed_dim=D, clip_model='train-clip', with_text_embeds=True,
        shard_size=4)
    item = 0
    for shard in sorted(n for n in os.listdir(store.root)
                        if n.startswith('shard_')):
        path = osp.join(store.root, shard, 'records.jsonl')
        lines = []
        for line in open(path).read().splitlines():
            record = json.loads(line)
            record['image'] = rels[item]
            item += 1
            lines.append(json.dumps(record))
        open(path, 'w').write('\n'.join(lines) + '\n')
    if normalised:
        meta_path = osp.join(store.root, 'meta.json')
        meta = json.load(open(meta_path))
        meta['clip_score_text'] = 'lowercase_strip_final_period'
        json.dump(meta, open(meta_path, 'w'))
    name = _tiny_clip_folder(str(tmp_path / 'tiny_clip'))
    return tmp_path / 'store', gen, rels, name


def _reference_embeds(name, gen, rels, captions):
    """What the retrieval must use: the model's own normalised
    encode_image / encode_text of the images and the CLIP-normalised
    captions, computed here independently."""
    import open_clip
    import torch
    from PIL import Image
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    tokenizer = open_clip.get_tokenizer(name)
    model.eval()
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.open(gen / r).convert('RGB'))
                              for r in rels])
        images = torch.nn.functional.normalize(model.encode_image(pixels),
                                               dim=-1).numpy()
        texts = torch.nn.functional.normalize(
            model.encode_text(tokenizer(captions)), dim=-1).numpy()
    return images, texts


MODEL_CFG = SyncConfig(num_candidates=3, i2t_k=2, keep_fraction=1.0,
                       chunk_size=4)


def _spy_refine_pairs(monkeypatch):
    from mmpcm.preprocessing.refine import sync
    seen = {}
    real = sync.refine_pairs

    def spy(images, texts, *args, **kwargs):
        seen.update(images=np.asarray(images), texts=np.asarray(texts),
                    clip_embeds=kwargs.get('clip_embeds'))
        return real(images, texts, *args, **kwargs)

    monkeypatch.setattr(sync, 'refine_pairs', spy)
    return seen


def test_retrieval_model_embeds_the_store_images_and_captions(
        tmp_path, monkeypatch):
    store, gen, rels, name = _model_world(tmp_path)
    seen = _spy_refine_pairs(monkeypatch)
    written = []
    summary = refine_store(store, tmp_path / 'out', MODEL_CFG,
                           progress=False, device='cpu',
                           retrieval_model=name, image_root=gen,
                           on_part=written.append, batch_size=4)
    want_images, want_texts = _reference_embeds(
        name, gen, rels, ['a red square', 'a green circle',
                          'a blue triangle', 'two yellow dots',
                          'a black line', 'a white field'])
    np.testing.assert_allclose(seen['images'], want_images, atol=1e-5)
    np.testing.assert_allclose(seen['texts'], want_texts, atol=1e-5)
    # the images differ (a flat tower would pass any loader)
    assert (want_images @ want_images.T)[~np.eye(6, dtype=bool)].max() < 0.99
    # the captions really were normalised: the raw ones embed otherwise
    _, raw = _reference_embeds(name, gen, rels, MODEL_CAPTIONS)
    assert np.abs(raw - want_texts).max() > 1e-3
    # the CLIP scores stay the store's own
    own = FeatureStore(store)
    assert seen['clip_embeds'][0].shape == (6, D)
    pairing = load_pairing(tmp_path / 'out', own)
    g = own.load_array('global_embeds.npy').astype(np.float32)
    t = own.load_array('text_embeds.npy').astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    np.testing.assert_allclose(
        pairing.clip_score,
        (g[pairing.image_idx] * t[pairing.caption_idx]).sum(1), atol=1e-3)
    assert summary.pairs_in == 6
    # the caches: written once each, holding the same embeddings
    parts = tmp_path / 'out' / 'parts'
    assert {osp.basename(p) for p in written} >= {'retrieval_images.npz',
                                                   'retrieval_texts.npz'}
    with np.load(parts / 'retrieval_images.npz') as data:
        np.testing.assert_allclose(data['embeds'], want_images, atol=1e-5)
    retrieval = pairing.meta['settings']['retrieval']
    folder = name[len('local-dir:'):]
    assert retrieval['source'] == 'retrieval_model'
    assert retrieval['model'] == name and retrieval['pretrained'] is None
    assert retrieval['embed_dim'] == 16
    assert retrieval['image_root'] == str(gen)
    assert len(retrieval['weights_sha256']) == 64
    settings = json.loads((parts / 'settings.json').read_text())
    assert settings['settings']['retrieval']['model'] == name
    assert osp.isdir(folder)


def test_retrieval_model_rerun_reuses_the_cached_embeddings(
        tmp_path, monkeypatch):
    store, gen, _, name = _model_world(tmp_path)
    out = tmp_path / 'out'
    kwargs = dict(progress=False, device='cpu', retrieval_model=name,
                  image_root=gen)
    refine_store(store, out, MODEL_CFG, **kwargs)
    want = _bytes(out)['pairing.npz']
    caches = [out / 'parts' / n for n in ('retrieval_images.npz',
                                          'retrieval_texts.npz')]
    stamps = [p.stat().st_mtime_ns for p in caches]
    # a rerun neither loads the model nor rewrites the caches
    import open_clip

    def no_model(*args, **kwargs):
        raise AssertionError('the model was loaded again')

    monkeypatch.setattr(open_clip, 'create_model_and_transforms', no_model)
    written = []
    summary = refine_store(store, out, MODEL_CFG, on_part=written.append,
                           **kwargs)
    assert written == [] and summary.chunks_reused == 4
    assert [p.stat().st_mtime_ns for p in caches] == stamps
    assert _bytes(out)['pairing.npz'] == want
    # the store's own retrieval in the same folder: its parts are redone,
    # the caches stay for the next model run
    refine_store(store, out, MODEL_CFG, progress=False)
    assert all(p.is_file() for p in caches)
    assert refine_store(store, out, MODEL_CFG, **kwargs).chunks_reused == 0
    assert _bytes(out)['pairing.npz'] == want
    # other weights in the folder: another model, the caches are redone
    monkeypatch.undo()
    folder = name[len('local-dir:'):]
    from safetensors.torch import load_file, save_file
    weights = osp.join(folder, 'open_clip_model.safetensors')
    state = load_file(weights)
    state['visual.proj'] = state['visual.proj'].flip(0).contiguous()
    save_file(state, weights)
    written.clear()
    refine_store(store, out, MODEL_CFG, on_part=written.append, **kwargs)
    assert {osp.basename(p) for p in written} >= {'retrieval_images.npz'}


def test_retrieval_model_missing_image_is_one_error(tmp_path, capsys):
    store, gen, rels, name = _model_world(tmp_path)
    os.remove(gen / rels[4])
    with pytest.raises(InputError) as info:
        refine_store(store, tmp_path / 'out', MODEL_CFG, progress=False,
                     device='cpu', retrieval_model=name, image_root=gen)
    err = info.value
    assert err.path == str(gen / rels[4])
    assert 'no such file' in err.problem and 'image_id 4' in err.problem
    assert 'shard_00001' in err.problem and 'line 1' in err.problem
    assert not (tmp_path / 'out' / 'pairing.json').exists()
    run = run_tool_here(capsys, TOOL, str(store), '--retrieval-model', name,
                        '--image-root', str(gen), '--device', 'cpu',
                        '--out', str(tmp_path / 'out'), '--no-progress')
    assert run.status != 0
    assert _error_line(run.err).startswith(f'error: {gen / rels[4]}: ')


def test_retrieval_model_refusals(tmp_path, capsys):
    store, gen, _, name = _model_world(tmp_path)
    with pytest.raises(InputError, match='--retrieval-store'):
        refine_store(store, tmp_path / 'out', MODEL_CFG, progress=False,
                     retrieval_store=store, retrieval_model=name,
                     image_root=gen)
    with pytest.raises(InputError) as info:
        refine_store(store, tmp_path / 'out', MODEL_CFG, progress=False,
                     retrieval_model=name)
    assert info.value.path == '--image-root'
    with pytest.raises(InputError) as info:
        refine_store(store, tmp_path / 'out', MODEL_CFG, progress=False,
                     retrieval_model=name, retrieval_pretrained='x.pt',
                     image_root=gen)
    assert info.value.path == '--retrieval-pretrained'
    with pytest.raises(MissingInputError):
        refine_store(store, tmp_path / 'out', MODEL_CFG, progress=False,
                     retrieval_model=name, image_root=tmp_path / 'nope')
    # a store whose records lack the image path: its records file named
    _store(tmp_path / 'noimage', n=6)
    with pytest.raises(InputError) as info:
        refine_store(tmp_path / 'noimage', tmp_path / 'out2', MODEL_CFG,
                     progress=False, retrieval_model=name, image_root=gen)
    assert info.value.path.endswith('records.jsonl')
    assert 'line 1' in info.value.problem
    # the command line: the two sources exclude each other
    with pytest.raises(SystemExit) as info:
        run_tool_here(capsys, TOOL, str(store), '--retrieval-model', name,
                      '--image-root', str(gen), '--retrieval-store',
                      str(store))
    assert info.value.code == 2
    assert 'exclude each other' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_tool_here(capsys, TOOL, str(store), '--retrieval-model', name)
    assert '--image-root' in capsys.readouterr().err


def test_cli_retrieval_model(tmp_path, capsys, monkeypatch):
    store, gen, rels, name = _model_world(tmp_path)
    seen = _spy_refine_pairs(monkeypatch)
    run = run_tool_here(capsys, TOOL, str(store), '--retrieval-model', name,
                        '--image-root', str(gen), '--device', 'cpu',
                        '--num-candidates', '3', '--keep-fraction', '1',
                        '--chunk-size', '4', '--batch-size', '2',
                        '--out', str(tmp_path / 'out'), '--no-progress')
    assert run.status == 0, run.err
    assert '6 pairs in, 6 kept, 0 dropped' in run.out
    pairing = load_pairing(tmp_path / 'out', FeatureStore(store))
    retrieval = pairing.meta['settings']['retrieval']
    assert retrieval['source'] == 'retrieval_model'
    assert retrieval['model'] == name
    assert retrieval['image_root'] == str(gen)
    want_images, _ = _reference_embeds(name, gen, rels, ['x'])
    np.testing.assert_allclose(seen['images'], want_images, atol=1e-5)


def test_a_failed_run_leaves_no_empty_output_folder(tmp_path):
    root = tmp_path / 'store'
    _store(root, n=12)
    out = tmp_path / 'out'
    with pytest.raises(MissingInputError):
        refine_store(root, out, SyncConfig(chunk_size=4),
                     sentence_model=str(tmp_path / 'no_model'),
                     progress=False)
    assert not out.exists()
    # a folder the user made beforehand stays
    out.mkdir()
    with pytest.raises(MissingInputError):
        refine_store(root, out, SyncConfig(chunk_size=4),
                     sentence_model=str(tmp_path / 'no_model'),
                     progress=False)
    assert out.is_dir()


def test_an_unloadable_hub_model_is_one_input_error(monkeypatch):
    st = pytest.importorskip('sentence_transformers')
    calls = []

    def unreachable(name, device=None, local_files_only=False):
        calls.append(local_files_only)
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(st, 'SentenceTransformer', unreachable)
    from mmpcm.preprocessing.refine import load_sentence_model
    with pytest.raises(InputError) as info:
        load_sentence_model('someone/no-such-model')
    assert calls == [True, False]  # the cache first, then the hub
    assert 'someone/no-such-model' in str(info.value)
    assert 'Hugging Face cache' in str(info.value)
