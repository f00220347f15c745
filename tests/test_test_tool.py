"""tools/test.py: predictions.json, metrics.json and the paper row, from a
checkpoint or a release; early and safe failures."""
import json
import os
import os.path as osp
import runpy
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmpcm.apis import paper_row, prepare_cfg, publish_release, run_test
from mmpcm.evaluation.metrics import caption_metric
from mmpcm.testing import SMOKE_CAPTIONS, write_smoke_data

from tool_loader import one_run, run_tool_here
from tool_loader import ROOT

CONFIG = osp.join(ROOT, 'configs', 'pcm', 'pcm_smoke.py')
TEST_TOOL = osp.join(ROOT, 'tools', 'test.py')
PERFECT_ROW = 'B4 / M / R / C / S: 100.0 / 100.0 / 100.0 / 1000.0 / -'


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """One intra-op thread: tiny models gain nothing from more, and on a
    busy 2-core machine oversubscription makes them ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """The smoke data and a captioner trained on it (in-process, no val)."""
    cwd = tmp_path_factory.mktemp('test_tool')
    write_smoke_data(str(cwd / 'data' / 'smoke'))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        cfg = Config.fromfile(CONFIG)
        cfg.work_dir = str(cwd / 'train')
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        with one_run():
            Runner.from_cfg(prepare_cfg(cfg)).train()
    return cwd


def test_config_checkpoint_writes_predictions_metrics_and_row(
        workspace, monkeypatch, capsys):
    out = workspace / 'out_ckpt'
    monkeypatch.chdir(workspace)
    # The SPICE warning is issued once per process: as in a fresh one.
    monkeypatch.setattr(caption_metric, '_spice_warning_issued', False)
    run = run_tool_here(capsys, 'test', CONFIG,
                        str(workspace / 'train' / 'epoch_100.pth'),
                        '--work-dir', str(out))
    assert run.status == 0, run.err[-3000:]
    assert PERFECT_ROW in run.out.splitlines()
    # SPICE: CoreNLP is not installed here, so skipped with one warning
    # (one line: the tools print warnings as 'warning: <message>').
    spice = [line for line in run.err.splitlines() if 'SPICE' in line]
    assert len(spice) == 1 and spice[0].startswith('warning: SPICE needs')

    run_dir, = [p for p in out.iterdir() if p.is_dir()]
    predictions = json.loads((run_dir / 'predictions.json').read_text())
    assert predictions == [dict(image_id=f'smoke_{i}', caption=c)
                           for i, c in enumerate(SMOKE_CAPTIONS)]
    metrics = json.loads((run_dir / 'metrics.json').read_text())
    assert metrics['paper_row'] == PERFECT_ROW
    assert metrics['metrics']['coco-caption/Bleu_4'] == pytest.approx(100)
    assert f'predictions: {run_dir / "predictions.json"}' in run.out


def test_release_through_run_test_never_unpickles(workspace, tmp_path,
                                                  monkeypatch):
    monkeypatch.chdir(workspace)
    release = str(tmp_path / 'smoke.safetensors')
    info = publish_release(str(workspace / 'train' / 'epoch_100.pth'),
                           release)
    assert info.concepts is not None  # data/smoke/concepts.safetensors

    def refuse(*args, **kwargs):
        raise AssertionError('torch.load called')

    monkeypatch.setattr(torch, 'load', refuse)
    # The config's vocabulary source is gone: all comes from the release.
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(tmp_path / 'out_release')
    cfg.model.head.vocab = 'missing/vocab.json'
    # No METEOR (faster). A list: mmengine reads a dict with "metrics" as
    # an Evaluator config; run_test says so instead of failing late.
    one_metric = dict(cfg.test_evaluator, metrics=['BLEU', 'CIDEr'])
    cfg.test_evaluator = one_metric
    with pytest.raises(ValueError, match='Put the metric in a list'):
        run_test(cfg.copy(), release)
    cfg.test_evaluator = [one_metric]
    outputs = run_test(cfg, release)
    assert outputs.row == 'B4 / M / R / C / S: 100.0 / - / - / 1000.0 / -'

    assert osp.dirname(outputs.predictions_file) == osp.dirname(
        outputs.metrics_file)
    with open(outputs.predictions_file) as f:
        assert [p['caption'] for p in json.load(f)] == SMOKE_CAPTIONS


def _test_tool_main(monkeypatch, *argv):
    """Runs tools/test.py's main() in this process; returns its status."""
    monkeypatch.setattr(sys, 'argv', ['test.py', *argv])
    return runpy.run_path(TEST_TOOL)['main']()


def test_pickle_payload_refused_with_the_trusted_route(
        workspace, tmp_path, monkeypatch, capsys):
    marker = tmp_path / 'pwned'

    class Payload:

        def __reduce__(self):
            return os.system, (f'touch {marker}', )

    state = torch.load(workspace / 'train' / 'epoch_100.pth',
                       weights_only=False)['state_dict']
    evil = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=state, meta=dict(note=Payload())), evil)
    monkeypatch.chdir(workspace)
    status = _test_tool_main(monkeypatch, CONFIG, str(evil), '--work-dir',
                             str(tmp_path / 'out'))
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith(f'error: Refused to load checkpoint {str(evil)!r}')
    assert 'load_trusted_checkpoint' in err
    assert not marker.exists()


def test_work_dir_without_a_best_checkpoint(workspace, monkeypatch,
                                             capsys, tmp_path):
    """The workspace run trained without validation: epoch checkpoints and
    last_checkpoint, no best one. Its last checkpoint is tested, and a line
    says so; without last_checkpoint it is one error line."""
    import shutil
    work = workspace / 'train'
    assert (work / 'epoch_100.pth').is_file()
    monkeypatch.chdir(workspace)
    bare = tmp_path / 'bare'
    bare.mkdir()
    shutil.copy(work / 'epoch_100.pth', bare / 'epoch_100.pth')
    for argv in ([CONFIG, str(bare)], [CONFIG, '--work-dir', str(bare)]):
        assert _test_tool_main(monkeypatch, *argv) == 1
        captured = capsys.readouterr()
        assert captured.err.startswith(
            f'error: {bare}: no best-coco-caption/CIDEr checkpoint '
            '(best_coco-caption_CIDEr_*.pth) (it has ')
        assert (f'; pass a checkpoint file (e.g. {bare / "epoch_100.pth"}), '
                'or train with validation') in captured.err
        assert captured.err.count('\n') == 1
        assert captured.out == ''
    from mmpcm.apis.best_checkpoint import resolve_checkpoint_or_last
    found = resolve_checkpoint_or_last(None, work_dir=str(work))
    assert found.path.endswith('epoch_100.pth')
    assert found.describe() == (
        f'checkpoint: {found.path} (the last one written in {work}, a run '
        'that kept no best-by-validation checkpoint)')


def test_checkpoint_of_another_clip_than_the_test_features_is_refused(
        workspace, tmp_path, monkeypatch):
    """A checkpoint trained on features of one CLIP, tested with a config
    whose test features are of another (e.g. another toy world)."""
    from mmpcm.utils.cli import InputError
    monkeypatch.chdir(workspace)
    state = torch.load(workspace / 'train' / 'epoch_100.pth',
                       weights_only=False)
    text = state['meta']['cfg']
    assert "model_name=None" in text
    state['meta']['cfg'] = text.replace(
        "model_name=None", "model_name='local-dir:other_world/clip'", 1)
    other = tmp_path / 'other.pth'
    torch.save(state, other)
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(tmp_path / 'out')
    cfg.test_dataloader.dataset.clip_model = 'local-dir:data/smoke/clip'
    with pytest.raises(InputError, match="trained with CLIP 'local-dir:"
                       "other_world/clip', but the config's test features "
                       "are of 'local-dir:data/smoke/clip'"):
        run_test(cfg, str(other))
    # The same folder named another way is the same CLIP.
    from mmpcm.apis.run_config import check_test_features_clip
    cfg.test_dataloader.dataset.clip_model = (
        'local-dir:' + str(workspace / 'other_world' / 'clip'))
    check_test_features_clip(cfg, str(other), 'local-dir:other_world/clip')


def test_show_dir_that_is_a_file_is_refused_first(workspace, monkeypatch,
                                                  capsys, tmp_path):
    monkeypatch.chdir(workspace)
    a_file = tmp_path / 'a_file'
    a_file.write_text('x')
    assert _test_tool_main(monkeypatch, CONFIG, str(workspace / 'nope.pth'),
                           '--show-dir', str(a_file)) == 1
    err = capsys.readouterr().err
    assert err == (f'error: {a_file}: is a file, not a folder; give a '
                   'folder path (created if missing)\n')


def test_java_missing_fails_before_the_model_is_built(
        workspace, tmp_path, monkeypatch):

    def no_runner(*args, **kwargs):
        raise AssertionError('the runner (and model) was built')

    monkeypatch.setattr(Runner, 'from_cfg', no_runner)
    monkeypatch.chdir(workspace)
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(tmp_path / 'out')
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(RuntimeError, match='needs Java'):
        run_test(cfg, str(workspace / 'train' / 'epoch_100.pth'))


def test_paper_row():
    assert paper_row({'a/Bleu_4': 31.54, 'a/METEOR': 25.9, 'a/ROUGE_L': 53.9,
                      'a/CIDEr': 103.8, 'a/SPICE': 19.66}) == (
                          'B4 / M / R / C / S: 31.5 / 25.9 / 53.9 / 103.8 / '
                          '19.7')
    assert paper_row({'CIDEr': 50.0}) == 'B4 / M / R / C / S: - / - / - / ' \
                                         '50.0 / -'


# --------------------------------------------------------------------------
# --show-dir: the results gallery
# --------------------------------------------------------------------------
def _write_pngs(folder, ids, size=40):
    """One random PNG per image id (file stem = id)."""
    import numpy as np
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for image_id in ids:
        Image.fromarray(rng.integers(0, 256, (size, size + 8, 3),
                                     dtype=np.uint8)).save(
                                         folder / f'{image_id}.png')
    return folder


class _GalleryPage:
    """The gallery's entries: the JSON its script draws from."""

    def __init__(self, path):
        import re
        with open(path, encoding='utf-8') as f:
            text = f.read()
        match = re.search(r'<script type="application/json" '
                          r'id="gallery-data">(.*?)</script>', text, re.S)
        data = json.loads(match.group(1))
        self.text = text
        self.entries = [dict(
            attrs={'data-id': e['id']}, caption=e['caption'],
            scores=[f'{k} {v}' for k, v in e['scores'].items()],
            chips=[f'{c["word"]} {c["prob"]:.2f}'
                   for c in e.get('concepts', [])],
            refs=e['refs'], img=e.get('thumb'),
            patches=len(e.get('patches', [])), raw=e)
            for e in data['entries']]


def _check_gallery(show, predictions, references, words,
                   scores=('CIDEr',)):
    page = _GalleryPage(show / 'index.html')
    by_id = {e['attrs']['data-id']: e for e in page.entries}
    assert list(by_id) == [p['image_id'] for p in predictions]
    for p in predictions:
        entry = by_id[p['image_id']]
        assert ' '.join(entry['caption'].split()) == p['caption']
        assert entry['refs'] == references[p['image_id']]
        assert entry['img'] and (show / entry['img']).is_file()
        assert [s.split()[0] for s in entry['scores']] == list(scores)
        # top-3 concepts of the smoke concept table, with probabilities
        assert len(entry['chips']) == 3
        assert all(c.split()[0] in words for c in entry['chips'])
        assert 1 <= entry['patches'] <= 3  # num_selected=3
    return by_id


def _smoke_references(workspace):
    gt = json.loads((workspace / 'data' / 'smoke' /
                     'test_gt.json').read_text())
    refs = {}
    for a in gt['annotations']:
        refs.setdefault(a['image_id'], []).append(a['caption'])
    return refs


def test_show_dir_writes_a_gallery_in_feature_mode(workspace, monkeypatch,
                                                   capsys):
    from mmpcm.models.utils.concepts import ConceptVocabulary
    monkeypatch.chdir(workspace)
    ids = [f'smoke_{i}' for i in range(len(SMOKE_CAPTIONS))]
    images = _write_pngs(workspace / 'smoke_images', ids)
    show = workspace / 'gallery_features'
    run = run_tool_here(capsys, 'test', CONFIG,
                        str(workspace / 'train' / 'epoch_100.pth'),
                        '--work-dir', str(workspace / 'out_gallery'),
                        '--show-dir', str(show),
                        '--show-image-root', str(images))
    assert run.status == 0, run.err[-3000:]
    assert f'gallery: {show / "index.html"}' in run.out
    run_dir, = [p for p in (workspace / 'out_gallery').iterdir()
                if p.is_dir()]
    predictions = json.loads((run_dir / 'predictions.json').read_text())
    words = ConceptVocabulary.load(
        'data/smoke/concepts.safetensors').words
    by_id = _check_gallery(show, predictions, _smoke_references(workspace),
                           words)
    # The memorised captions: every image has the CIDEr-D of a perfect
    # caption, which the run's mean reports too.
    metrics = json.loads((run_dir / 'metrics.json').read_text())['metrics']
    per_image = [float(e['scores'][0].split()[1]) for e in by_id.values()]
    assert sum(per_image) / len(per_image) == pytest.approx(
        metrics['coco-caption/CIDEr'], abs=0.1 * len(per_image))
    html_text = (show / 'index.html').read_text()
    assert 'coco-caption/CIDEr' in html_text and 'epoch_100.pth' in html_text


def test_show_dir_writes_a_gallery_in_image_mode(workspace, monkeypatch):
    from mmpcm.models.utils.concepts import ConceptVocabulary
    monkeypatch.chdir(workspace)
    ids = [f'smoke_{i}' for i in range(len(SMOKE_CAPTIONS))]
    images = _write_pngs(workspace / 'smoke_images_b', ids)
    show = workspace / 'gallery_images'
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(workspace / 'out_gallery_img')
    cfg.test_dataloader.dataset = dict(
        type='ImageFolderCaptionDataset',
        data_prefix=dict(img_path=str(images)), image_size=32)
    # CLIP-S of a tiny random CLIP of the backbone's shape, beside CIDEr
    cfg.test_evaluator = [
        dict(cfg.test_evaluator, metrics=['BLEU', 'CIDEr']),
        dict(type='PCMCLIPScore', model_name=None, pretrained=None,
             model_cfg=cfg.tiny_clip)]
    # a config saved by an earlier run carries that run's gallery hook
    stale = workspace / 'stale_gallery'
    cfg.custom_hooks = [dict(type='PCMGalleryHook', out_dir=str(stale))]
    outputs = run_test(cfg, str(workspace / 'train' / 'epoch_100.pth'),
                       show_dir=str(show))
    assert outputs.gallery_file == str(show / 'index.html')
    assert not stale.exists()
    with open(outputs.predictions_file) as f:
        predictions = json.load(f)
    words = ConceptVocabulary.load(
        'data/smoke/concepts.safetensors').words
    _check_gallery(show, predictions, _smoke_references(workspace), words,
                   scores=['CIDEr', 'CLIP-S'])
    # the per-image CLIP-S are the run's own: their mean is its CLIP-S
    page = _GalleryPage(show / 'index.html')
    clip_s = [e['raw']['scores']['CLIP-S'] for e in page.entries]
    assert sum(clip_s) / len(clip_s) == pytest.approx(
        outputs.metrics['clip-score/CLIP-S'], abs=0.01)


def test_gallery_marks_hallucinated_objects_and_missing_images(tmp_path):
    from mmpcm.visualization import concept_view
    from mmpcm.visualization.gallery import (GalleryEntry, GalleryHeader,
                                             write_gallery)
    picture = dict(concept_ids=torch.tensor([2, 0]),
                   concept_probs=torch.tensor([0.8, 0.2]),
                   concept_kept=torch.tensor([True, True]),
                   selected=torch.tensor([True, False, False, False]),
                   patch_concept=torch.tensor([0, 1, 0, 0]),
                   patch_similarity=torch.tensor([.4, .1, .2, .3]))
    view = concept_view(picture, ['cat', 'dog', 'sofa'])
    entry = GalleryEntry('img_1', 'a dog on a sofa',
                         image_path=str(tmp_path / 'missing.png'),
                         references=['a cat on a sofa'],
                         scores={'CIDEr': 50.0},
                         words=['a', 'dog', 'on', 'a', 'sofa'],
                         hallucinated={1}, hallucinated_objects=['dog'],
                         concepts=view)
    path = write_gallery(str(tmp_path / 'g'), [entry],
                         GalleryHeader('t', metrics={'CIDEr': 50.0}), 32)
    page = _GalleryPage(path)
    raw = page.entries[0]['raw']
    assert raw['words'][raw['marked'][0]] == 'dog' and raw['marked'] == [1]
    assert raw['halluc'] == ['dog']
    assert '1 image(s) without a thumbnail' in page.text
    assert [c.split() for c in page.entries[0]['chips']] == [
        ['sofa', '0.80'], ['cat', '0.20']]
    assert page.entries[0]['img'] is None
    with pytest.raises(ValueError, match='no captioned image'):
        write_gallery(str(tmp_path / 'h'), [], GalleryHeader('t'), 32)
