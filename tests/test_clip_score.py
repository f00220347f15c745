"""PCMCLIPScore: CLIP-S and RefCLIP-S (Hessel et al., 2021) by hand."""
import json
import pickle

import open_clip
import pytest
import torch
import torch.nn.functional as F

from mmpcm.evaluation import PCMCLIPScore
from mmpcm.evaluation.metrics.clip_score import harmonic_mean
from mmpcm.models import OpenCLIPVisionBackbone, build_open_clip
from mmpcm.registry import METRICS
from mmpcm.testing import TINY_CLIP_CFG, TINY_EMBED_DIM
from mmpcm.utils.cli import error_line

CAPTIONS = {'a': 'a dog runs on the grass', 'b': 'a red car', 3: 'two cats'}


def write_ann(path, references):
    path.write_text(json.dumps(dict(
        images=[dict(id=i) for i in references],
        annotations=[dict(image_id=i, caption=c)
                     for i, caps in references.items() for c in caps])))
    return str(path)


@pytest.fixture(scope='module')
def tiny_metric_kwargs():
    torch.manual_seed(0)
    return dict(model_name=None, pretrained=None, model_cfg=TINY_CLIP_CFG,
                device='cpu')


def unit_at_cosine(direction, cosine, seed=0):
    """A unit vector with the given cosine to ``direction``."""
    direction = F.normalize(direction, dim=-1)
    other = torch.randn(direction.shape,
                        generator=torch.Generator().manual_seed(seed))
    other = F.normalize(other - (other @ direction) * direction, dim=-1)
    return cosine * direction + (1 - cosine ** 2) ** 0.5 * other


def run(metric, image_embeds, captions):
    samples = [dict(image_id=i, pred_caption=c) for i, c in captions.items()]
    metric.process(dict(inputs=dict(global_embed=image_embeds)), samples)
    return metric.evaluate(len(samples))


def test_registered_under_a_unique_name():
    assert METRICS.get('PCMCLIPScore') is PCMCLIPScore
    assert 'CLIPScore' not in METRICS.module_dict


def test_clip_s_and_refclip_s_by_hand(tmp_path, tiny_metric_kwargs):
    r"""Three images, cosines 1, 0.6 and -1 to their captions' texts.

    CLIP-S = 2.5 * max(cos, 0): 2.5, 1.5, 0 -> mean 4/3, reported x100.
    Each image has its own caption among its references, so the reference
    part max_r max(cos(c, r), 0) is 1 (identical prefixed texts), and
    RefCLIP-S = H(CLIP-S, 1) = 2 * CLIP-S / (CLIP-S + 1): 5/3.5, 3/2.5, 0.
    """
    references = {'a': ['a dog runs on the grass', 'a puppy'],
                  'b': ['a red car'], 3: ['a kitten', 'two cats']}
    metric = PCMCLIPScore(ann_file=write_ann(tmp_path / 'ann.json',
                                             references),
                          **tiny_metric_kwargs)
    texts = metric.embed_texts(list(CAPTIONS.values()))  # (3, D)
    images = torch.stack([texts[0], unit_at_cosine(texts[1], 0.6),
                          -texts[2]])
    scores = run(metric, images, CAPTIONS)
    assert scores['clip-score/CLIP-S'] == pytest.approx(
        100 * (2.5 + 1.5 + 0) / 3, abs=1e-3)
    expected_ref = (2 * 2.5 / 3.5 + 2 * 1.5 / 2.5 + 0) / 3
    assert scores['clip-score/RefCLIP-S'] == pytest.approx(
        100 * expected_ref, abs=1e-3)
    # Feature stores hold float16 embeddings: the scores barely move.
    half = run(metric, images.half(), CAPTIONS)
    assert half['clip-score/CLIP-S'] == pytest.approx(
        scores['clip-score/CLIP-S'], abs=0.5)


def test_reference_part_is_the_best_reference(tmp_path, tiny_metric_kwargs):
    """RefCLIP-S's text part is the max cosine over references, clamped."""
    references = {'a': ['a cat', 'a dog on grass', 'the sky']}
    metric = PCMCLIPScore(ann_file=write_ann(tmp_path / 'ann.json',
                                             references),
                          **tiny_metric_kwargs)
    cand = metric.embed_texts(['a dog runs'])[0]
    refs = metric.embed_texts(references['a'])
    ref_part = max(float((refs @ cand).max()), 0.0)
    image = unit_at_cosine(cand, 0.3)[None]
    scores = run(metric, image, {'a': 'a dog runs'})
    assert scores['clip-score/CLIP-S'] == pytest.approx(75.0, abs=1e-3)
    assert scores['clip-score/RefCLIP-S'] == pytest.approx(
        100 * harmonic_mean(0.75, ref_part), abs=1e-3)
    # The prefix of the authors' code is used for candidates and references.
    assert metric.text_prefix == 'A photo depicts '


def test_without_references_only_clip_s(tiny_metric_kwargs):
    metric = PCMCLIPScore(**tiny_metric_kwargs, prefix='cs')
    texts = metric.embed_texts(['a red car'])
    scores = run(metric, texts, {5: 'a red car'})
    assert scores == {'cs/CLIP-S': pytest.approx(250.0, abs=1e-3)}
    metric.process(dict(inputs=dict(global_embed=texts)),
                   [dict(image_id=5, pred_caption='x')])
    assert pickle.loads(pickle.dumps(metric.results)) == metric.results
    assert set(metric.results[0]) == {'image_id', 'clip_s', 'ref_s'}


def test_images_are_embedded_like_the_backbone(tiny_metric_kwargs):
    """Image datasets: the metric embeds ``inputs['images']`` with its CLIP,
    normalised as the backbone normalises (the model's own preprocess
    config), giving the backbone's global embedding of the same pixels."""
    metric = PCMCLIPScore(**tiny_metric_kwargs)
    backbone = OpenCLIPVisionBackbone(clip=metric.clip_model)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = backbone(images).global_embed
    assert torch.equal(
        metric.batch_image_embeds(dict(inputs=dict(images=images))), ref)



def test_images_use_the_models_own_mean_and_std():
    """A CLIP whose preprocess config has other mean/std than OpenAI's: the
    metric and the backbone both normalise with them."""
    torch.manual_seed(0)
    clip = build_open_clip(model_cfg=TINY_CLIP_CFG).eval()
    open_clip.set_model_preprocess_cfg(clip, dict(
        size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    metric = PCMCLIPScore(clip=clip, device='cpu')
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = F.normalize(clip.encode_image(images / 127.5 - 1), dim=-1)
        backbone = OpenCLIPVisionBackbone(clip=clip)(images).global_embed
    ours = metric.embed_images(images)
    assert torch.equal(ours, backbone)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)

def test_bad_inputs(tmp_path, tiny_metric_kwargs):
    metric = PCMCLIPScore(**tiny_metric_kwargs)
    sample = [dict(image_id=1, pred_caption='a dog')]
    with pytest.raises(KeyError, match='global_embed'):
        metric.process(dict(inputs=dict(patch_tokens=torch.zeros(1, 4))),
                       sample)
    with pytest.raises(ValueError, match='another CLIP'):
        metric.process(
            dict(inputs=dict(global_embed=torch.ones(1, TINY_EMBED_DIM + 1))),
            sample)
    # a feature dataset's store is named first, with what to do
    metric.dataset_meta = dict(feature_store=dict(root='data/store'))
    with pytest.raises(ValueError) as err:
        metric.process(
            dict(inputs=dict(global_embed=torch.ones(1, TINY_EMBED_DIM + 1))),
            sample)
    line, user_error = error_line(err.value)
    assert user_error and line.startswith(
        f'data/store: image embeddings (1, {TINY_EMBED_DIM + 1}) and the '
        f'caption embeddings (1, {TINY_EMBED_DIM}) of')
    assert line.endswith("; set the metric's model_name and pretrained to "
                         "the CLIP of the features, or extract the features "
                         "with the metric's CLIP "
                         '(tools/data/extract_features.py)')
    metric.results = [dict(image_id=1, clip_s=1.0, ref_s=None)] * 2
    with pytest.raises(ValueError, match='more than once'):
        metric.compute_metrics(metric.results)
    with_refs = PCMCLIPScore(ann_file=write_ann(tmp_path / 'ann.json',
                                                {1: ['a dog']}),
                             **tiny_metric_kwargs)
    with pytest.raises(ValueError, match='ann.json: image ids .* no reference'):
        with_refs.process(
            dict(inputs=dict(global_embed=torch.ones(1, TINY_EMBED_DIM))),
            [dict(image_id='1', pred_caption='a dog')])
    with pytest.raises(FileNotFoundError,
                       match=f'{tmp_path / "missing.pt"}: no such CLIP '
                       'weights file'):
        PCMCLIPScore(pretrained=str(tmp_path / 'missing.pt'))
