"""CLIP-weighted cross-entropy (METHOD.md step 9)."""
import pytest
import torch
import torch.nn.functional as F

from mmpcm.models import CLIPWeightedCELoss


def _batch(seed=0, b=3, l=5, v=7):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, l, v, generator=gen, requires_grad=True)
    targets = torch.randint(1, v, (b, l), generator=gen)
    targets[0, 3:] = 0  # padding
    return logits, targets


def test_weight_one_without_smoothing_is_plain_ce():
    logits, targets = _batch()
    loss = CLIPWeightedCELoss(label_smoothing=0.0)(
        logits, targets, torch.tensor([1.0, 0.9, 5.0]))  # all clamp to 1
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                          ignore_index=0)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_weight_zero_pair_gives_no_gradient():
    logits, targets = _batch()
    loss = CLIPWeightedCELoss()(logits, targets,
                                torch.tensor([0.3, -0.2, 0.0]))
    loss.backward()
    assert torch.count_nonzero(logits.grad[1]) == 0
    assert torch.count_nonzero(logits.grad[2]) == 0
    assert torch.count_nonzero(logits.grad[0]) > 0


def test_weights_are_clamped_scaled_cosines():
    loss = CLIPWeightedCELoss(clip_weight_scale=4.0)
    got = loss.pair_weights(torch.tensor([-0.1, 0.0, 0.1, 0.2, 0.25, 0.4]))
    assert got.tolist() == pytest.approx([0, 0, 0.4, 0.8, 1.0, 1.0])


def test_half_weight_halves_the_loss():
    logits, targets = _batch()
    full = CLIPWeightedCELoss(clip_weight_scale=1.0)(
        logits, targets, torch.ones(3))
    half = CLIPWeightedCELoss(clip_weight_scale=1.0)(
        logits, targets, torch.full((3,), 0.5))
    assert half.item() == pytest.approx(full.item() / 2, rel=1e-6)


def test_plain_mode_ignores_scores_and_needs_none():
    logits, targets = _batch()
    plain = CLIPWeightedCELoss(use_clip_weight=False, label_smoothing=0.0)
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                          ignore_index=0)
    assert plain(logits, targets).item() == pytest.approx(ref.item())
    with pytest.raises(ValueError, match='clip_score'):
        CLIPWeightedCELoss()(logits, targets)


def test_focal_factor_scales_by_batch_mean():
    logits, targets = _batch()
    base = CLIPWeightedCELoss(use_clip_weight=False)(logits, targets)
    focal = CLIPWeightedCELoss(use_clip_weight=False, focal_gamma=2.0)(
        logits, targets)
    p = logits.softmax(-1).gather(-1, targets[..., None])[..., 0]
    factor = ((1 - p) ** 2)[targets != 0].mean()
    assert focal.item() == pytest.approx((base * factor).item(), rel=1e-6)
