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
