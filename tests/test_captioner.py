"""PCMCaptioner: modes, learning, frozen CLIP and bad input."""
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from mmpcm.text import WordVocabulary
from mmpcm.models import (VocabularyMismatchError,
                          decode_vocab_tensor)
from mmpcm.registry import MODELS
from mmpcm.testing import (TINY_EMBED_DIM, TINY_NUM_PATCHES, TINY_PATCH_DIM,
                           random_concepts, tiny_captioner_cfg)

CAPTIONS = [
    'a red ball on the green grass',
    'two dogs play in the snow',
    'a man rides a horse on the beach',
    'a cat sleeps on a red sofa',
    'a plate of food on a table',
]


@pytest.fixture
def concept_file(tmp_path):
    path = str(tmp_path / 'concepts.safetensors')
    random_concepts(['ball', 'dog', 'man', 'horse', 'cat', 'sofa', 'food',
                     'table', 'snow', 'grass']).save(path)
    return path


def _features(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return dict(
        patch_tokens=torch.randn(n, TINY_NUM_PATCHES, TINY_PATCH_DIM,
                                 generator=gen).half(),
        global_embed=F.normalize(torch.randn(n, TINY_EMBED_DIM, generator=gen),
                                 dim=-1).half())


def _samples(captions, score=0.5):
    out = []
    for c in captions:
        s = DataSample()
        s.gt_caption = c
        s.clip_score = score
        out.append(s)
    return out


def _training_inputs(model, captions, score=0.5, seed=0):
    """Features with the id rows and scores a training pipeline gives."""
    inputs = _features(len(captions), seed)
    rows = model.head.vocab.encode_rows(captions, model.head.max_len)
    inputs['caption_ids'] = torch.from_numpy(rows)  # (B, max_len + 1)
    inputs['clip_score'] = torch.full((len(captions), ), score)
    return inputs


def _build(concept_file, captions=CAPTIONS, **kw):
    torch.manual_seed(0)
    vocab = WordVocabulary.from_captions(captions, min_count=1)
    return MODELS.build(tiny_captioner_cfg(vocab.words, concept_file, **kw))


def test_learns_to_reproduce_every_caption(concept_file):
    model = _build(concept_file, dropout=0.1, noise_var=0.0)
    inputs, samples = _training_inputs(model, CAPTIONS), _samples(CAPTIONS)
    frozen = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    assert not any(p is q for p in params for q in model.backbone.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    for step in range(300):
        model.train()
        loss = model(inputs, samples, mode='loss')['loss']
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24:
            model.eval()
            preds = [s.pred_caption
                     for s in model(_features(len(CAPTIONS)), mode='predict')]
            if preds == CAPTIONS:
                break
    assert preds == CAPTIONS, preds
    # Nothing in the frozen CLIP moved, and it stayed in eval mode.
    assert all(torch.equal(frozen[k], v)
               for k, v in model.backbone.state_dict().items())
    model.train()
    assert not model.backbone.visual.training


def test_modes_and_image_input(concept_file):
    model = _build(concept_file).eval()
    memory = model(_features(2), mode='tensor')
    assert memory.shape == (2, 1 + 2 * TINY_NUM_PATCHES, 32)
    images = torch.rand(2, 3, 32, 32) * 255
    out = model(dict(images=images), _samples(['x', 'y']), mode='predict')
    assert all(isinstance(s.pred_caption, str) for s in out)
    with pytest.raises(RuntimeError, match='Invalid mode'):
        model(_features(1), mode='bogus')


def test_feature_width_disagreeing_with_config(concept_file):
    model = _build(concept_file)
    bad = _training_inputs(model, ['a', 'b'])
    bad['patch_tokens'] = torch.randn(2, TINY_NUM_PATCHES, 48)
    with pytest.raises(ValueError, match=r'\(16, 48, 16\).*\(16, 32, 16\)'):
        model(bad, _samples(['a', 'b']), mode='loss')


def test_checkpoint_vocabulary_differs_from_data(concept_file):
    model = _build(concept_file)
    other = _build(concept_file, captions=CAPTIONS[:2])
    with pytest.raises(VocabularyMismatchError, match='first difference'):
        other.load_state_dict(model.state_dict())
    # Same vocabulary: loads, and the vocabulary is part of the state.
    same = _build(concept_file)
    same.load_state_dict(model.state_dict())
    assert decode_vocab_tensor(
        model.state_dict()['head.vocab_bytes']) == model.head.vocab.words


def test_backbone_neck_width_mismatch(concept_file):
    cfg = tiny_captioner_cfg(['<pad>', '<bos>', '<eos>', '<unk>', 'a'],
                             concept_file, patch_dim=768)
    with pytest.raises(ValueError, match='patch_dim=32.*768'):
        MODELS.build(cfg)
