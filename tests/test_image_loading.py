"""One image loader for every tool, checked inputs before a test run, and
empty inputs refused (issue 15, classes 6, 2 and the image half of 3).

Odd images (transparency, 1-bit, 16-bit, float, CMYK, EXIF-rotated,
animated) must reach the model as the same pixels whether testing from
images (ImageFolderCaptionDataset), the caption inferencer
(tools/caption.py) or feature extraction reads them, and as the right
values."""
import dataclasses
import os.path as osp
import runpy

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

import mmpcm.registry  # noqa: F401  (compat patches first)
from mmpcm.apis import PCMCaptionInferencer, caption_to_jsonl, expand_inputs
from mmpcm.apis.inferencer import _ImageInputs
from mmpcm.datasets import ImageFolderCaptionDataset
from mmpcm.datasets.clip_transforms import CLIPImageTransform, preprocess_cfg_of
from mmpcm.datasets.transforms import (BACKGROUND, ImageLoadError,
                                       check_image, load_image)
from mmpcm.text import WordVocabulary
from mmpcm.preprocessing.extraction import (CLIPSpec, ExtractionConfig,
                                            clip_image_transform,
                                            extract_features,
                                            items_from_folder,
                                            items_from_list, loading)
from mmpcm.testing.pipelines import build_tiny_open_clip, save_tiny_open_clip
from mmpcm.registry import MODELS
from mmpcm.testing import random_concepts, tiny_captioner_cfg
from mmpcm.utils.cli import InputError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
W, H = 48, 40  # stored size of the odd images (larger than CLIP's 32)
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
CAPTIONS = ['a red ball on the green grass', 'two dogs play in the snow',
            'a man rides a horse on the beach', 'a cat sleeps on a sofa']



def _tiny_captioner_cfg(folder):
    """A tiny random captioner's config (its concepts saved in folder)."""
    concepts = str(folder / 'concepts.safetensors')
    random_concepts(['ball', 'dog', 'man', 'horse', 'cat', 'sofa']).save(
        concepts)
    vocab = WordVocabulary.from_captions(CAPTIONS, min_count=1).words
    return tiny_captioner_cfg(vocab, concepts)


def _halves(left, right, mode='RGB'):
    """An image whose left half is ``left`` and right half ``right``."""
    image = Image.new(mode, (W, H), left)
    image.paste(right, (W // 2, 0, W, H))
    return image


def _rgba(folder):
    # right half fully transparent, hiding green
    _halves(RED + (255, ), GREEN + (0, ), 'RGBA').save(folder / 'rgba.png')


def _la(folder):
    _halves((100, 255), (30, 0), 'LA').save(folder / 'la.png')


def _palette(folder):
    image = Image.new('P', (W, H), 0)
    image.putpalette(list(RED + GREEN + BLUE) + [0] * (253 * 3))
    image.paste(1, (W // 2, 0, W, H))  # index 1 (green) is transparent
    image.save(folder / 'palette.png', transparency=1)


def _one_bit(folder):
    checks = (np.indices((H, W)).sum(0) // 4) % 2 == 0  # 4 px squares
    Image.fromarray(checks).convert('1').save(folder / 'one_bit.png')


def _gray16(folder):
    values = np.full((H, W), 32768, np.uint16)
    values[:, W // 2:] = 65535
    Image.fromarray(values).save(folder / 'gray16.png')  # mode I;16


def _float(folder):
    values = np.full((H, W), 0.5, np.float32)
    values[:, W // 2:] = 1.0
    Image.fromarray(values).save(folder / 'float.tif')  # mode F


def _cmyk(folder):
    # cyan: C=255; PIL converts CMYK to RGB as (255 - C, 255 - M, 255 - Y)
    Image.new('CMYK', (W, H), (255, 0, 0, 0)).save(folder / 'cmyk.jpg',
                                                    quality=95)


def _exif_rotated(folder):
    # Stored 48x40 with a red top-left corner; Orientation 6: shown
    # rotated 90 degrees clockwise, so 40x48 with the red corner top-right.
    image = Image.new('RGB', (W, H), BLUE)
    image.paste(RED, (0, 0, 16, 16))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(folder / 'exif_rot.jpg', quality=95, exif=exif.tobytes())


def _animated(folder):
    frames = [Image.new('RGB', (W, H), c) for c in (RED, BLUE)]
    frames[0].save(folder / 'animated.gif', save_all=True,
                   append_images=frames[1:], duration=100, loop=0)


ODD_IMAGES = {
    'rgba.png': _rgba, 'la.png': _la, 'palette.png': _palette,
    'one_bit.png': _one_bit, 'gray16.png': _gray16, 'float.tif': _float,
    'cmyk.jpg': _cmyk, 'exif_rot.jpg': _exif_rotated,
    'animated.gif': _animated}


def _pixel(image, x, y):
    return tuple(int(v) for v in np.asarray(image)[y, x])


def _expect_rgba(image):
    assert _pixel(image, 0, 0) == RED
    assert _pixel(image, W - 1, 0) == BACKGROUND  # not the hidden green


def _expect_la(image):
    assert _pixel(image, 0, 0) == (100, 100, 100)
    assert _pixel(image, W - 1, 0) == BACKGROUND


def _expect_palette(image):
    assert _pixel(image, 0, 0) == RED
    assert _pixel(image, W - 1, 0) == BACKGROUND


def _expect_one_bit(image):
    assert _pixel(image, 0, 0) == (255, 255, 255)
    assert _pixel(image, 4, 0) == (0, 0, 0)


def _expect_gray16(image):
    assert _pixel(image, 0, 0) == (128, 128, 128)  # 32768 / 257, not clipped
    assert _pixel(image, W - 1, 0) == (255, 255, 255)


def _expect_float(image):
    assert _pixel(image, 0, 0) == (128, 128, 128)  # 0.5 of [0, 1]
    assert _pixel(image, W - 1, 0) == (255, 255, 255)


def _expect_cmyk(image):
    np.testing.assert_allclose(_pixel(image, W // 2, H // 2), (0, 255, 255),
                               atol=3)


def _expect_exif_rotated(image):
    assert image.size == (H, W)  # width and height swapped
    np.testing.assert_allclose(_pixel(image, H - 1, 0), RED, atol=8)
    np.testing.assert_allclose(_pixel(image, 0, 0), BLUE, atol=8)


def _expect_animated(image):
    assert _pixel(image, 0, 0) == RED  # the first frame


EXPECTED = {
    'rgba.png': _expect_rgba, 'la.png': _expect_la,
    'palette.png': _expect_palette, 'one_bit.png': _expect_one_bit,
    'gray16.png': _expect_gray16, 'float.tif': _expect_float,
    'cmyk.jpg': _expect_cmyk, 'exif_rot.jpg': _expect_exif_rotated,
    'animated.gif': _expect_animated}


@pytest.fixture(scope='module')
def odd_images(tmp_path_factory):
    """Every odd image in one folder, and CLIP's input side (the tiny
    CLIP's: what every path resizes to)."""
    folder = tmp_path_factory.mktemp('odd')
    for make in ODD_IMAGES.values():
        make(folder)
    return folder, build_tiny_open_clip().visual.image_size[0]


@pytest.fixture(scope='module')
def model_inputs(odd_images):
    """``{file name: (3, S, S) uint8}`` as each path feeds the model:
    testing from images, the caption inferencer, feature extraction."""
    folder, size = odd_images
    dataset = ImageFolderCaptionDataset(data_prefix=dict(img_path=str(folder)),
                                        image_size=size)
    testing = {osp.basename(item['data_samples'].img_path):
               item['inputs']['images'] for item in dataset}
    items = expand_inputs(str(folder))
    inferencer = {osp.basename(items[i].name): tensor
                  for i, tensor, _ in _ImageInputs(
                      items, CLIPImageTransform(size))}
    found = items_from_folder(folder)
    loaded = loading._ImageDataset(
        found, range(len(found)), clip_image_transform(build_tiny_open_clip()))
    extracting = {osp.basename(found[i].path): loaded[i]['image']
                  for i in range(len(found))}
    return testing, inferencer, extracting


@pytest.mark.parametrize('name', sorted(ODD_IMAGES))
def test_every_path_feeds_the_model_the_same_right_pixels(
        odd_images, model_inputs, name):
    folder, size = odd_images
    path = folder / name
    image = load_image(path)
    assert image.mode == 'RGB'
    EXPECTED[name](image)  # the right values, before resizing
    testing, inferencer, extracting = model_inputs
    assert testing[name].shape == (3, size, size)
    assert testing[name].dtype == torch.uint8
    torch.testing.assert_close(inferencer[name], testing[name], atol=0,
                               rtol=0)
    torch.testing.assert_close(extracting[name], testing[name], atol=0,
                               rtol=0)
    check_image(path)  # the pre-run check accepts every odd image
    if name.endswith('.jpg'):
        # --decode device would not rotate or take CMYK: these go via PIL
        assert loading._device_jpeg_bytes(str(path)) is None


def test_testing_from_images_takes_the_models_preprocess_cfg(
        odd_images, model_inputs):
    """The dataset's ``preprocess_cfg`` (a model's own open_clip config)
    gives the ``image_size`` path's pixels for the OpenAI-style config; a
    ``squash`` config resizes to S x S without cropping, as open_clip
    does."""
    folder, size = odd_images
    model_cfg = dataclasses.asdict(preprocess_cfg_of(build_tiny_open_clip()))
    squash = dict(model_cfg, resize_mode='squash')
    testing = model_inputs[0]
    for cfg in (model_cfg, squash):
        dataset = ImageFolderCaptionDataset(
            data_prefix=dict(img_path=str(folder)), preprocess_cfg=cfg)
        for item in dataset:
            path = item['data_samples'].img_path
            image = item['inputs']['images']  # (3, S, S) uint8
            if cfg is model_cfg:
                ref = testing[osp.basename(path)]
            else:
                ref = pil_to_tensor(load_image(path).resize(
                    (size, size), Image.BICUBIC))
            assert torch.equal(image, ref)


def test_in_memory_images_are_converted_before_resizing(odd_images):
    """An opened PIL image given to the inferencer (any mode) reaches the
    model as its file does."""
    folder, size = odd_images
    items = expand_inputs([Image.open(folder / 'rgba.png'),
                           str(folder / 'rgba.png')])
    (_, memory, _), (_, from_file, _) = _ImageInputs(items, CLIPImageTransform(size))
    torch.testing.assert_close(memory, from_file, atol=0, rtol=0)


# --------------------------------------------------------------------------
# class 2: every bad file of a test set, at once, before the model runs
# --------------------------------------------------------------------------
@pytest.fixture
def mixed_list(tmp_path):
    """A list file: one good image, one truncated JPEG, one missing path."""
    folder = tmp_path / 'images'
    folder.mkdir()
    Image.new('RGB', (W, H), RED).save(folder / 'good.jpg', quality=90)
    data = (folder / 'good.jpg').read_bytes()
    (folder / 'cut.jpg').write_bytes(data[:len(data) // 2])
    listed = tmp_path / 'test.txt'
    listed.write_text('images/good.jpg\nimages/cut.jpg\nimages/gone.jpg\n')
    return listed, folder


def test_check_image_reasons(mixed_list, tmp_path):
    _, folder = mixed_list
    check_image(folder / 'good.jpg')
    Image.new('RGB', (W, H), RED).save(tmp_path / 'good.png')
    data = (tmp_path / 'good.png').read_bytes()
    (tmp_path / 'cut.png').write_bytes(data[:len(data) - 30])  # into IDAT
    (tmp_path / 'notes.png').write_text('not an image')
    for name, reason in [(folder / 'cut.jpg', 'truncated or corrupt'),
                         (folder / 'gone.jpg', 'no such file'),
                         (tmp_path / 'cut.png', 'truncated or corrupt'),
                         (tmp_path / 'notes.png', 'not an image file'),
                         (folder, 'a folder')]:
        with pytest.raises(ImageLoadError, match=reason):
            check_image(name)
        with pytest.raises(ImageLoadError, match=reason):  # the same words
            load_image(name)


def test_bad_images_are_all_reported_before_the_checkpoint_is_loaded(
        mixed_list, tmp_path):
    """tools/test.py's runner builds the test set before it loads the
    checkpoint: a checkpoint that does not exist is never reached."""
    listed, folder = mixed_list
    runner = Runner(
        model=_tiny_captioner_cfg(tmp_path),
        work_dir=str(tmp_path / 'work'),
        test_dataloader=dict(
            dataset=dict(type='ImageFolderCaptionDataset',
                         ann_file=str(listed), image_size=32),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2, num_workers=0, collate_fn=dict(type='pcm_collate')),
        test_cfg=dict(),
        test_evaluator=dict(type='PCMCaptionMetric',
                            ann_file=str(tmp_path / 'refs.json')),
        load_from=str(tmp_path / 'no_such_checkpoint.pth'),
        default_scope='mmpretrain')
    with pytest.raises(InputError) as info:
        runner.test()
    error = info.value
    assert error.path == str(listed)
    assert error.problem.startswith('2 of 3 images cannot be read: ')
    assert f'{folder / "cut.jpg"} (truncated or corrupt image' in str(error)
    assert f'{folder / "gone.jpg"} (no such file)' in str(error)
    assert 'good.jpg' not in str(error)
    assert '\n' not in str(error)


def test_bad_images_in_a_folder(mixed_list):
    _, folder = mixed_list
    with pytest.raises(InputError, match=r'1 of 2 images cannot be read: '
                       r'.*cut\.jpg \(truncated or corrupt') as info:
        ImageFolderCaptionDataset(data_prefix=dict(img_path=str(folder)))
    assert info.value.path == str(folder)
    # unchecked, the same file fails only when it is read
    dataset = ImageFolderCaptionDataset(
        data_prefix=dict(img_path=str(folder)), check_images=False)
    with pytest.raises(ImageLoadError, match='truncated'):
        dataset[0]


# --------------------------------------------------------------------------
# class 3: no images is an error, not a success
# --------------------------------------------------------------------------
def test_no_images_is_an_error_everywhere(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    blank = tmp_path / 'blank.txt'
    blank.write_text('\n\n')
    with pytest.raises(InputError, match='no images found') as info:
        ImageFolderCaptionDataset(data_prefix=dict(img_path=str(empty)))
    assert info.value.path == str(empty)

    # captioning: before any file is written to
    inferencer = PCMCaptionInferencer(
        MODELS.build(_tiny_captioner_cfg(tmp_path)), device='cpu')
    for inputs in ([str(empty)], [str(empty), str(blank)]):
        out, errors = (tmp_path / 'out.jsonl').open('w'), \
            (tmp_path / 'err.txt').open('w')
        with out, errors, pytest.raises(InputError,
                                        match='no images found') as info:
            caption_to_jsonl(inferencer, inputs, out, errors, progress=False)
        assert info.value.path == ', '.join(inputs)
        assert (tmp_path / 'out.jsonl').read_text() == ''

    # extraction: nothing written, so no finished store of 0 items
    clip = save_tiny_open_clip(tmp_path / 'clip')
    spec = CLIPSpec(model_name=None, pretrained=clip.weights,
                    model_cfg=clip.model_cfg)
    for items, source in [(items_from_folder(empty), str(empty)),
                          (items_from_list(blank), str(blank))]:
        out_dir = tmp_path / 'store'
        with pytest.raises(InputError, match='no images to extract') as info:
            extract_features(items, out_dir, spec,
                             ExtractionConfig(num_workers=0), source=source,
                             progress=False)
        assert info.value.path == source
        assert not out_dir.exists()


def test_caption_tool_fails_when_no_image_was_captioned(tmp_path, capsys):
    """No file at all: one error line (exit 2); only unreadable files:
    exit 1, not 0."""
    cfg = _tiny_captioner_cfg(tmp_path)
    ckpt = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(meta=dict(cfg=Config(dict(model=cfg)).pretty_text),
                    state_dict=MODELS.build(cfg).state_dict()), ckpt)
    empty = tmp_path / 'empty'
    empty.mkdir()
    unreadable = tmp_path / 'unreadable'
    unreadable.mkdir()
    (unreadable / 'notes.txt').write_text('not an image')
    (unreadable / 'cut.png').write_bytes(b'\x89PNG\r\n\x1a\n')
    main = runpy.run_path(osp.join(ROOT, 'tools', 'caption.py'))['main']
    options = ['--num-workers', '0', '--no-progress']

    assert main([ckpt, str(empty), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: {empty}: no images found')
    assert len(err.splitlines()) == 1

    out = tmp_path / 'captions.jsonl'
    assert main([ckpt, str(unreadable), '--out', str(out), *options]) == 1
    assert 'captioned 0 images, 2 skipped' in capsys.readouterr().err
    assert out.read_text() == ''
