"""The frozen open_clip backbone gives the features METHOD.md names."""
import open_clip
import pytest
import torch
import torch.nn.functional as F

from mmpcm.models import OpenCLIPVisionBackbone, build_open_clip
from mmpcm.testing import TINY_CLIP_CFG


@pytest.fixture(scope='module')
def clip():
    torch.manual_seed(0)
    return build_open_clip(model_cfg=TINY_CLIP_CFG).eval()


def _images(n=2, size=32):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) * 255


def test_global_embedding_is_clips_normalised_image_embedding(clip):
    bb = OpenCLIPVisionBackbone(clip=clip)
    images = _images()
    feats = bb(images)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = F.normalize(clip.encode_image((images / 255 - mean) / std), dim=-1)
    assert torch.allclose(feats.global_embed, ref, atol=1e-5)
    assert feats.patch_tokens.shape == (2, 16, 32)


def test_patch_tokens_are_before_ln_post(clip):
    bb = OpenCLIPVisionBackbone(clip=clip)
    images = _images()
    clip.visual.output_tokens = True
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        _, after_ln = clip.visual((images / 255 - mean) / std)
        ours = bb(images).patch_tokens
    clip.visual.output_tokens = False
    # open_clip's tokens are after ln_post; ours become them through ln_post.
    assert not torch.allclose(ours, after_ln, atol=1e-3)
    assert torch.allclose(clip.visual.ln_post(ours), after_ln, atol=1e-5)
    joint = bb.to_joint_space(ours)
    assert torch.allclose(joint, F.normalize(after_ln @ clip.visual.proj, dim=-1),
                          atol=1e-5)


def test_patch_pooling_2x2(clip):
    bb = OpenCLIPVisionBackbone(clip=clip, patch_pool=2)
    assert bb.num_patches == 4
    full = OpenCLIPVisionBackbone(clip=clip)(_images()).patch_tokens  # (2, 16, 32)
    grid = full.view(2, 4, 4, 32)
    ref = grid.view(2, 2, 2, 2, 2, 32).mean(dim=(2, 4)).reshape(2, 4, 32)
    assert torch.allclose(bb(_images()).patch_tokens, ref, atol=1e-5)


def test_frozen_no_grads_and_eval_kept(clip):
    bb = OpenCLIPVisionBackbone(clip=clip)
    bb.train()
    assert not bb.visual.training
    assert all(not m.training for m in bb.visual.modules())
    assert not any(p.requires_grad for p in bb.parameters())
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    opt_params = [p for p in bb.parameters() if p.requires_grad]
    assert opt_params == []
    out = bb(_images()).patch_tokens
    assert not out.requires_grad
    assert all(torch.equal(before[k], v) for k, v in bb.state_dict().items())


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pt'):
        OpenCLIPVisionBackbone(model_name='ViT-B-32',
                               pretrained=str(tmp_path / 'nope.pt'))


def test_loads_a_local_open_clip_checkpoint(tmp_path, clip):
    path = tmp_path / 'tiny_clip.pt'
    torch.save(clip.state_dict(), path)
    bb = OpenCLIPVisionBackbone(model_name=None, model_cfg=TINY_CLIP_CFG,
                                pretrained=str(path))
    assert torch.equal(bb.visual.proj, clip.visual.proj)


def _private_path_features(bb, images):
    """The features as open_clip's private ``_embeds`` / ``_pool`` give
    them: the reference ``forward_intermediates`` must match bit for bit."""
    visual = bb.visual
    x = ((images.float() - bb.mean) / bb.std).to(visual.conv1.weight.dtype)
    x = visual.transformer(visual._embeds(x))  # (B, 1 + G*G, W)
    pooled, _ = visual._pool(x)  # (B, W)
    return (bb.pool_patches(x[:, 1:]),
            F.normalize(pooled @ visual.proj, dim=-1))


@pytest.mark.parametrize('patch_pool', [1, 2])
def test_forward_intermediates_equals_the_private_path(clip, patch_pool):
    bb = OpenCLIPVisionBackbone(clip=clip, patch_pool=patch_pool)
    images = _images(3)
    with torch.no_grad():
        feats = bb(images)
        patches, global_embed = _private_path_features(bb, images)
    assert torch.equal(feats.patch_tokens, patches)
    assert torch.equal(feats.global_embed, global_embed)
    assert feats.patch_tokens.shape == (3, bb.num_patches, bb.patch_dim)
    assert (bb.num_patches, bb.patch_dim, bb.embed_dim) == (
        16 // patch_pool**2, 32, 16)


def test_mean_std_come_from_the_models_preprocess_cfg(clip):
    """OpenAI's values for a model without a preprocess config (exactly
    the constants the backbone used to hard-code); a model's own values
    otherwise."""
    bb = OpenCLIPVisionBackbone(clip=clip)
    openai_mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(
        1, 3, 1, 1) * 255
    openai_std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(
        1, 3, 1, 1) * 255
    assert torch.equal(bb.mean, openai_mean)
    assert torch.equal(bb.std, openai_std)
    assert bb.preprocess_cfg.size == (32, 32)

    torch.manual_seed(0)
    other = build_open_clip(model_cfg=TINY_CLIP_CFG).eval()
    open_clip.set_model_preprocess_cfg(other, dict(
        size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))
    bb = OpenCLIPVisionBackbone(clip=other)
    assert bb.preprocess_cfg.mean == (0.5, 0.5, 0.5)
    assert torch.equal(bb.mean, torch.full((1, 3, 1, 1), 127.5))
    assert torch.equal(bb.std, torch.full((1, 3, 1, 1), 63.75))
    images = _images()
    with torch.no_grad():
        ref = F.normalize(other.encode_image((images / 255 - 0.5) / 0.25),
                          dim=-1)
    assert torch.allclose(bb(images).global_embed, ref, atol=1e-5)
