"""Release files: checkpoint -> safetensors + JSON, loaded without pickle."""
import pickle

import pytest
import torch
from mmengine.config import Config
from safetensors import safe_open

from mmpcm.apis import (PCMCaptionInferencer, ReleaseFormatError,
                        build_captioner, is_release_file, load_model_source,
                        publish_release, read_release_info)
from mmpcm.apis.release import model_cfg_from_text
from mmpcm.text import WordVocabulary
from mmpcm.registry import MODELS
from mmpcm.testing import (TINY_CLIP_CFG, TINY_NUM_PATCHES, random_concepts,
                           tiny_captioner_cfg)

CAPTIONS = ['a red ball on the green grass', 'two dogs play in the snow',
            'a cat sleeps on a sofa']
CONCEPT_WORDS = ['ball', 'dog', 'cat', 'sofa', 'grass']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A tiny captioner saved like a training checkpoint (config inside)."""
    root = tmp_path_factory.mktemp('release')
    concepts = str(root / 'concepts.safetensors')
    random_concepts(CONCEPT_WORDS).save(concepts)
    cfg = tiny_captioner_cfg(
        WordVocabulary.from_captions(CAPTIONS, min_count=1).words, concepts)
    torch.manual_seed(0)
    model = MODELS.build(cfg).eval()
    ckpt = str(root / 'epoch_12.pth')
    torch.save(dict(meta=dict(cfg=Config(dict(model=cfg)).pretty_text),
                    state_dict=model.state_dict(),
                    optimizer=dict(state={})), ckpt)
    return model, ckpt, root


def images(n=3):
    gen = torch.Generator().manual_seed(3)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                         generator=gen)


def captions(model):
    with torch.no_grad():
        out = model.predict(dict(images=images()))
    return [(s.pred_caption, s.pred_score) for s in out]


@pytest.fixture
def no_pickle(monkeypatch):
    """Every unpickling route raises."""

    def refuse(*args, **kwargs):
        raise AssertionError('something tried to unpickle')

    class NoUnpickler:

        def __init__(self, *args, **kwargs):
            refuse()

    monkeypatch.setattr(pickle, 'Unpickler', NoUnpickler)
    monkeypatch.setattr(pickle, 'load', refuse)
    monkeypatch.setattr(pickle, 'loads', refuse)
    monkeypatch.setattr(torch, 'load', refuse)


@pytest.fixture(scope='module')
def release(trained):
    _, ckpt, root = trained
    path = str(root / 'pcm_tiny.safetensors')
    return path, publish_release(ckpt, path)


def test_release_info(trained, release):
    model, _, root = trained
    _, info = release
    assert info.vocab == model.head.vocab.words
    assert info.concepts == CONCEPT_WORDS
    assert info.clip['model_cfg'] == TINY_CLIP_CFG
    assert info.clip['num_patches'] == TINY_NUM_PATCHES
    assert info.clip['image_size'] == 32
    assert info.model['head']['vocab'] is None
    assert info.model['neck']['concepts'] is None
    assert str(root) not in info.to_json()  # no machine paths


def test_round_trip_without_pickle(trained, release, no_pickle):
    model, ckpt, _ = trained
    path, info = release
    loaded = build_captioner(path, device='cpu')
    assert captions(loaded) == captions(model)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    inferencer = PCMCaptionInferencer(path, device='cpu')
    assert inferencer.model.head.vocab.words == info.vocab
    # The patches are live: the checkpoint route would have to unpickle.
    with pytest.raises(AssertionError, match='unpickle'):
        load_model_source(ckpt)


def test_release_is_plain_safetensors(release):
    path, _ = release
    with safe_open(path, framework='pt') as file:
        meta = file.metadata()
        keys = set(file.keys())
    assert meta['format'] == 'mmpcm-release'
    assert {'head.vocab_bytes', 'neck.concept_embeds',
            'backbone.visual.conv1.weight'} <= keys
    assert read_release_info(path).vocab


def test_detection_by_extension_and_content(trained, release, tmp_path):
    _, ckpt, root = trained
    path, _ = release
    renamed = tmp_path / 'model.bin'
    with open(path, 'rb') as file:
        renamed.write_bytes(file.read())
    assert is_release_file(path) and is_release_file(str(renamed))
    assert not is_release_file(ckpt)
    assert load_model_source(str(renamed)).kind == 'release'
    assert load_model_source(ckpt).kind == 'checkpoint'
    # A safetensors file that is not a release (the concept file).
    with pytest.raises(ReleaseFormatError, match='not an mmpcm release'):
        read_release_info(str(root / 'concepts.safetensors'))
    garbage = tmp_path / 'garbage.safetensors'
    garbage.write_bytes(b'\x00' * 32)
    with pytest.raises(ReleaseFormatError, match='not a safetensors'):
        read_release_info(str(garbage))


def test_explicit_config_and_unknown_concepts(trained, tmp_path):
    model, ckpt, root = trained
    cfg = tiny_captioner_cfg(model.head.vocab.words,
                             str(root / 'elsewhere.safetensors'))
    info = publish_release(ckpt, str(tmp_path / 'r.safetensors'),
                           config=dict(model=cfg))
    assert info.concepts is None  # the concept file is not at hand


def test_config_text_parsed_as_literals_only():
    assert model_cfg_from_text(
        "model = dict(type='X', a=(1, -2), b=[dict(c=None)], d={'e': 1.5})",
        'text') == dict(type='X', a=(1, -2), b=[dict(c=None)], d={'e': 1.5})
    for text in ("model = dict(a=open('f'))", 'model = dict(**x)',
                 'model = x'):
        with pytest.raises(ValueError):
            model_cfg_from_text(text, 'text')
    with pytest.raises(ValueError, match='no "model'):
        model_cfg_from_text('work_dir = "x"', 'text')
