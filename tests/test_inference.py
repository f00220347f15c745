"""Real images: preprocessing, image vs feature mode, the inferencer and
tools/caption.py (good images, a truncated JPEG, a text file)."""
import json
import os
import os.path as osp
import sys

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mmpcm.apis import PCMCaptionInferencer, expand_inputs
from mmpcm.datasets import (CLIPFeatureInfo, FeatureStoreWriter,
                            ImageFolderCaptionDataset, SynthImgCapDataset,
                            pcm_collate)
from mmpcm.datasets.clip_transforms import clip_image_tensor
from mmpcm.datasets.transforms import load_image
from mmpcm.testing import (TINY_EMBED_DIM, TINY_NUM_PATCHES, TINY_PATCH_DIM,
                           build_tiny_captioner)
from mmpcm.utils.checkpoint import UntrustedCheckpointError

from tool_loader import load_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
IMAGE_SIZE = 32  # the tiny CLIP's input size
CONCEPT_WORDS = ['ball', 'dog', 'man', 'horse', 'cat', 'sofa']
CAPTIONS = ['a red ball on the green grass', 'two dogs play in the snow',
            'a man rides a horse on the beach', 'a cat sleeps on a sofa']


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """One intra-op thread: tiny models gain nothing from more, and on a
    busy 2-core machine oversubscription makes them ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_images(folder):
    """Five small images: RGB/JPEG/grayscale/RGBA/palette, various sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def pixels(h, w, c=3):
        return rng.integers(0, 256, (h, w, c) if c else (h, w),
                            dtype=np.uint8)

    Image.fromarray(pixels(40, 50)).save(folder / 'a_rgb.png')
    Image.fromarray(pixels(64, 48)).save(folder / 'b_photo.jpg', quality=90)
    Image.fromarray(pixels(33, 70, 0)).save(folder / 'c_gray.png')
    Image.fromarray(pixels(50, 50, 4), 'RGBA').save(folder / 'd_rgba.png')
    (folder / 'sub').mkdir(exist_ok=True)
    Image.fromarray(pixels(45, 36)).convert('P').save(folder / 'sub' /
                                                      'e_pal.png')
    return folder


def add_bad_files(folder):
    """A truncated JPEG and a text file next to the good images."""
    data = (folder / 'b_photo.jpg').read_bytes()
    (folder / 'f_truncated.jpg').write_bytes(data[:len(data) // 2])
    (folder / 'g_notes.txt').write_text('not an image')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A tiny random captioner, its training-style checkpoint, images."""
    root = tmp_path_factory.mktemp('inference')
    tiny = build_tiny_captioner(str(root), CAPTIONS, CONCEPT_WORDS)
    images = write_images(root / 'images')
    return tiny.model, tiny.checkpoint, images, root


def predict(model, dataset, batch_size=2):
    """{image_id: (caption, score)} over a dataset."""
    out = {}
    loader = DataLoader(dataset, batch_size=batch_size,
                        collate_fn=pcm_collate)
    with torch.no_grad():
        for batch in loader:
            for sample in model.test_step(batch):
                out[sample.image_id] = (sample.pred_caption,
                                        float(sample.pred_score))
    return out


def test_preprocessing_matches_open_clip(setup):
    """Same pixels as open_clip's eval transform (before its Normalize)."""
    _, _, images, _ = setup
    reference = open_clip.image_transform(IMAGE_SIZE, is_train=False,
                                          mean=(0, 0, 0), std=(1, 1, 1))
    for path in sorted(images.rglob('*.*')):
        image = load_image(path)
        ours = clip_image_tensor(image, IMAGE_SIZE)
        assert ours.dtype == torch.uint8
        assert ours.shape == (3, IMAGE_SIZE, IMAGE_SIZE)
        torch.testing.assert_close(ours.float() / 255, reference(image),
                                   atol=1e-6, rtol=0)


def test_image_folder_dataset(setup, tmp_path):
    _, _, images, _ = setup
    dataset = ImageFolderCaptionDataset(
        data_prefix=dict(img_path=str(images)), image_size=IMAGE_SIZE)
    assert [dataset.get_data_info(i)['image_id'] for i in range(5)] == [
        'a_rgb', 'b_photo', 'c_gray', 'd_rgba', 'e_pal']
    item = dataset[0]
    assert item['inputs']['images'].shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert item['data_samples'].image_id == 'a_rgb'
    # COCO-format file: ids as given, names relative to the image folder;
    # list file: paths relative to the list's folder, ids the file stems.
    coco = tmp_path / 'coco.json'
    coco.write_text(json.dumps(dict(
        images=[dict(id=7, file_name='sub/e_pal.png'),
                dict(id='x', file_name='a_rgb.png')], annotations=[])))
    dataset = ImageFolderCaptionDataset(
        data_root=str(tmp_path), ann_file='coco.json',
        data_prefix=dict(img_path=str(images)), image_size=IMAGE_SIZE)
    assert [s['data_samples'].image_id for s in dataset] == [7, 'x']
    listed = tmp_path / 'list.txt'
    rel = osp.relpath(images, tmp_path)
    listed.write_text(f'# two images\n{rel}/c_gray.png\n\n'
                      f'{images}/sub/e_pal.png\n')
    dataset = ImageFolderCaptionDataset(ann_file=str(listed),
                                        image_size=IMAGE_SIZE)
    assert [s['data_samples'].image_id for s in dataset] == [
        'c_gray', 'e_pal']
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'c_gray.jpg').write_bytes(b'')
    (tmp_path / 'c_gray.png').write_bytes(b'')
    with pytest.raises(ValueError, match='file stem'):
        ImageFolderCaptionDataset(data_prefix=dict(img_path=str(tmp_path)))


def test_feature_and_image_mode_give_the_same_captions(setup, tmp_path):
    """Images through the online CLIP == their features from a store.

    The features are extracted with the model's own backbone from the same
    preprocessed pixels. In float32 the two paths are the same computation,
    so captions match exactly. The store holds float16: on these images the
    rounding moves scores by < 1e-2 and changes no caption.
    """
    model, _, images, _ = setup
    dataset = ImageFolderCaptionDataset(
        data_prefix=dict(img_path=str(images)), image_size=IMAGE_SIZE)
    online = predict(model, dataset)

    info = CLIPFeatureInfo(model='custom', num_patches=TINY_NUM_PATCHES,
                           patch_dim=TINY_PATCH_DIM, embed_dim=TINY_EMBED_DIM,
                           image_size=IMAGE_SIZE)
    writer = FeatureStoreWriter(str(tmp_path / 'store'), info, shard_size=3)
    fp32 = {}
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=2,
                                collate_fn=pcm_collate):
            feats = model.backbone(batch['inputs']['images'])
            ids = [s.image_id for s in batch['data_samples']]
            writer.add(feats.patch_tokens, feats.global_embed,
                       [dict(image_id=i) for i in ids])
            preds = model.predict(dict(patch_tokens=feats.patch_tokens,
                                       global_embed=feats.global_embed))
            fp32.update({i: (p.pred_caption, float(p.pred_score))
                         for i, p in zip(ids, preds)})
    writer.close()
    store = SynthImgCapDataset(str(tmp_path / 'store'), clip_model='custom',
                               with_caption=False, test_mode=True)
    stored = predict(model, store)

    assert list(online) == list(fp32) == list(stored)
    for image_id, (caption, score) in online.items():
        assert fp32[image_id][0] == caption
        assert fp32[image_id][1] == pytest.approx(score, abs=1e-5)
        assert stored[image_id][0] == caption
        assert stored[image_id][1] == pytest.approx(score, abs=1e-2)


def test_inferencer_inputs_and_failures(setup, tmp_path):
    model, ckpt, images, _ = setup
    online = predict(model, ImageFolderCaptionDataset(
        data_prefix=dict(img_path=str(images)), image_size=IMAGE_SIZE))
    inferencer = PCMCaptionInferencer(ckpt, device='cpu')

    single = inferencer(str(images / 'a_rgb.png'))
    assert single == [dict(image=str(images / 'a_rgb.png'),
                           caption=online['a_rgb'][0],
                           score=pytest.approx(online['a_rgb'][1], abs=1e-4))]
    array = np.asarray(Image.open(images / 'a_rgb.png'))
    assert inferencer(array)[0]['caption'] == online['a_rgb'][0]
    assert inferencer(array)[0]['image'] == 'array[0]'

    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'b_photo.jpg').write_bytes((images / 'b_photo.jpg').read_bytes())
    add_bad_files(bad)
    listed = tmp_path / 'images.txt'
    listed.write_text(f'{images / "c_gray.png"}\n')
    results = inferencer([str(bad), str(listed), str(tmp_path / 'nope.jpg')],
                         batch_size=2)
    assert [r['image'] for r in results] == [
        str(bad / 'b_photo.jpg'), str(bad / 'f_truncated.jpg'),
        str(bad / 'g_notes.txt'), str(images / 'c_gray.png'),
        str(tmp_path / 'nope.jpg')]
    assert results[0]['caption'] == online['b_photo'][0]
    assert results[3]['caption'] == online['c_gray'][0]
    assert 'truncated' in results[1]['error']
    assert 'not an image' in results[2]['error']
    assert 'no such file' in results[4]['error']
    assert len(expand_inputs(str(images))) == 5


def test_pickle_payload_refused_by_the_inferencer(setup, tmp_path):
    model, _, _, _ = setup
    marker = tmp_path / 'pwned'

    class Payload:

        def __reduce__(self):
            return os.system, (f'touch {marker}', )

    evil = tmp_path / 'evil.pth'
    torch.save(dict(meta=dict(), state_dict=model.state_dict(),
                    extra=Payload()), evil)
    with pytest.raises(UntrustedCheckpointError) as info:
        PCMCaptionInferencer(str(evil), device='cpu')
    assert not marker.exists()
    assert 'load_trusted_checkpoint' in str(info.value)


def test_checkpoint_config_text_is_never_executed(setup, tmp_path):
    model, _, _, _ = setup
    marker = tmp_path / 'pwned'
    text = f"model = __import__('os').system('touch {marker}')\n"
    ckpt = tmp_path / 'sneaky.pth'
    torch.save(dict(meta=dict(cfg=text), state_dict=model.state_dict()), ckpt)
    with pytest.raises(ValueError, match='not plain literals'):
        PCMCaptionInferencer(str(ckpt), device='cpu')
    assert not marker.exists()


def test_caption_tool(setup, tmp_path, capsys):
    """Good images are captioned, each bad file gets one line, exit 1."""
    _, ckpt, images, _ = setup
    folder = tmp_path / 'mixed'
    folder.mkdir()
    for name in ('a_rgb.png', 'b_photo.jpg'):
        (folder / name).write_bytes((images / name).read_bytes())
    add_bad_files(folder)
    out = tmp_path / 'captions.jsonl'
    status = load_tool('caption').main(
        [ckpt, str(folder), '--out', str(out), '--batch-size', '2',
         '--num-workers', '0'])
    stderr = capsys.readouterr().err
    assert status == 1, stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r['image'] for r in lines] == [str(folder / 'a_rgb.png'),
                                           str(folder / 'b_photo.jpg')]
    assert all(set(r) == {'image', 'caption', 'score'} for r in lines)
    skipped = [line for line in stderr.splitlines()
               if line.startswith('skipped ')]
    assert len(skipped) == 2
    assert skipped[0].startswith(
        f'skipped {folder / "f_truncated.jpg"}: truncated or corrupt image')
    assert skipped[1] == (f'skipped {folder / "g_notes.txt"}: not an image '
                          'file (unknown or unsupported format)')
    assert 'captioned 2 images, 2 skipped' in stderr


def _caption_tool_main(monkeypatch, *argv):
    """Runs tools/caption.py's main() in this process; returns its status."""
    import runpy
    monkeypatch.setattr(sys, 'argv', ['caption.py', *argv])
    return runpy.run_path(osp.join(ROOT, 'tools', 'caption.py'))['main']()


def test_a_work_dir_means_its_best_checkpoint(setup, tmp_path, monkeypatch,
                                              capsys):
    model, ckpt, images, _ = setup
    work = tmp_path / 'work'
    work.mkdir()
    # the last epoch's weights differ from the best epoch's
    state = torch.load(ckpt, weights_only=False)
    best = work / 'best_coco-caption_CIDEr_epoch_1.pth'
    torch.save(state, best)
    state['state_dict'] = {k: v + 1 if v.is_floating_point() else v
                           for k, v in state['state_dict'].items()}
    torch.save(state, work / 'epoch_2.pth')

    inferencer = PCMCaptionInferencer(str(work), device='cpu')
    assert inferencer.model_file == str(best)
    image = str(images / 'a_rgb.png')
    expected = PCMCaptionInferencer(ckpt, device='cpu')(image)
    assert inferencer(image) == expected

    out = tmp_path / 'captions.jsonl'
    status = _caption_tool_main(monkeypatch, str(work), image, '--out',
                                str(out), '--num-workers', '0',
                                '--no-progress')
    assert status == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        f'checkpoint: {best} (best coco-caption/CIDEr on validation in '
        f'{work})')
    assert [json.loads(line) for line in out.read_text().splitlines()] == (
        expected)

    best.unlink()
    assert _caption_tool_main(monkeypatch, str(work), image) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: {work}: no best-coco-caption/CIDEr '
                          'checkpoint (best_coco-caption_CIDEr_*.pth) (it '
                          'has ')
    assert err.endswith('or train with validation (without --no-validate) '
                        'to keep a best one\n')
    assert err.count('\n') == 1


def test_inferencer_returns_pcm_concepts(setup):
    model, ckpt, images, _ = setup
    plain = PCMCaptionInferencer(ckpt, device='cpu')
    shown = PCMCaptionInferencer(ckpt, device='cpu', return_concepts=True)
    path = str(images / 'a_rgb.png')
    [without] = plain(path)
    [result] = shown(path)
    assert 'concepts' not in without
    assert {k: result[k] for k in without} == without  # same caption
    view = result['concepts']
    words = CONCEPT_WORDS
    assert view['grid'] ** 2 == TINY_NUM_PATCHES
    neck = shown.model.neck
    assert neck.concept_words == words  # from the checkpoint's concept file
    assert len(view['concepts']) == neck.top_k
    assert all(c['word'] == words[c['id']] for c in view['concepts'])
    probs = [c['prob'] for c in view['concepts']]
    assert probs == sorted(probs, reverse=True)
    # The selected patches are the neck's at inference, each with a kept
    # concept's word.
    image = clip_image_tensor(load_image(path), shown.preprocess_cfg)
    with torch.no_grad():
        feats = shown.model.backbone(image[None].float())
        picture = shown.model.explain(feats)
    selected = torch.nonzero(picture.selected[0]).flatten().tolist()
    assert sorted(p['index'] for p in view['patches']) == selected
    kept = {c['word'] for c in view['concepts'] if c['kept']}
    assert all(p['concept'] in kept for p in view['patches'])
    assert all(p['row'] * view['grid'] + p['col'] == p['index']
               for p in view['patches'])


def test_a_work_dir_without_a_best_checkpoint_means_its_last(
        setup, tmp_path, monkeypatch, capsys):
    _, ckpt, images, _ = setup
    work = tmp_path / 'work'
    work.mkdir()
    last = work / 'epoch_3.pth'
    last.write_bytes(open(ckpt, 'rb').read())
    (work / 'epoch_1.pth').write_bytes(open(ckpt, 'rb').read())
    (work / 'last_checkpoint').write_text(str(last))
    image = str(images / 'a_rgb.png')
    assert PCMCaptionInferencer(str(work), device='cpu').model_file == str(
        last)
    assert _caption_tool_main(monkeypatch, str(work), image,
                              '--num-workers', '0', '--no-progress') == 0
    assert capsys.readouterr().err.splitlines()[0] == (
        f'checkpoint: {last} (the last one written in {work}, a run that '
        'kept no best-by-validation checkpoint)')
    # A best checkpoint of another metric: not silently replaced by the
    # last one.
    (work / 'best_accuracy_epoch_1.pth').write_bytes(b'')
    assert _caption_tool_main(monkeypatch, str(work), image) == 2


def test_caption_tool_show_dir_writes_a_gallery(setup, tmp_path, capsys):
    _, ckpt, images, _ = setup
    out = tmp_path / 'captions.jsonl'
    show = tmp_path / 'gallery'
    status = load_tool('caption').main(
        [ckpt, str(images), '--out', str(out), '--num-workers', '0',
         '--no-progress', '--show-dir', str(show)])
    assert status == 0
    assert f'gallery: {show / "index.html"}' in capsys.readouterr().err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 5 and all('concepts' in r for r in lines)
    import re
    page = (show / 'index.html').read_text()
    data = json.loads(re.search(r'id="gallery-data">(.*?)</script>', page,
                                re.S).group(1))
    assert [(e['id'], e['caption']) for e in data['entries']] == [
        (r['image'], r['caption']) for r in lines]
    assert all(e['concepts'] for e in data['entries'])
    assert len(list((show / 'thumbs').iterdir())) == 5


def test_a_list_file_entry_that_fails_names_its_line(setup, tmp_path):
    """A text file given as input is read as a list of image paths; an
    entry that is no file says which line of which list named it."""
    _, ckpt, images, _ = setup
    notes = tmp_path / 'notes.txt'
    notes.write_text(f'{images / "a_rgb.png"}\nthese are meeting notes\n')
    results = PCMCaptionInferencer(ckpt, device='cpu')(str(notes))
    assert 'caption' in results[0]
    assert results[1]['error'] == (
        f'no such file (line 2 of {notes}, read as a list of image paths)')
