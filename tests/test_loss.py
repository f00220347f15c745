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
    loss = CLIPWeightedCELoss(label_smoothing=0.0, focal_gamma=None)(
        logits, targets, torch.tensor([1.0, 0.9, 5.0]))  # all clamp to 1
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                          ignore_index=0)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_weight_zero_pair_gives_no_gradient_without_focal():
    logits, targets = _batch()
    loss = CLIPWeightedCELoss(focal_gamma=None)(
        logits, targets, torch.tensor([0.3, -0.2, 0.0]))
    loss.backward()
    assert torch.count_nonzero(logits.grad[1]) == 0
    assert torch.count_nonzero(logits.grad[2]) == 0
    assert torch.count_nonzero(logits.grad[0]) > 0


def test_focal_factor_reaches_zero_weight_pairs():
    """The release's batch focal factor carries gradient into every valid
    token, weighted or not."""
    logits, targets = _batch()
    CLIPWeightedCELoss()(logits, targets,
                         torch.tensor([0.3, -0.2, 0.0])).backward()
    assert torch.count_nonzero(logits.grad[1]) > 0


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
    plain = CLIPWeightedCELoss(use_clip_weight=False, label_smoothing=0.0,
                               focal_gamma=None)
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                          ignore_index=0)
    assert plain(logits, targets).item() == pytest.approx(ref.item())
    with pytest.raises(ValueError, match='clip_score'):
        CLIPWeightedCELoss()(logits, targets)


def test_focal_factor_scales_by_batch_mean():
    logits, targets = _batch()
    base = CLIPWeightedCELoss(use_clip_weight=False, focal_gamma=None)(
        logits, targets)
    focal = CLIPWeightedCELoss(use_clip_weight=False, focal_gamma=2.0)(
        logits, targets)
    p = logits.softmax(-1).gather(-1, targets[..., None])[..., 0]
    factor = ((1 - p) ** 2)[targets != 0].mean()
    assert focal.item() == pytest.approx((base * factor).item(), rel=1e-6)


def _release_definition(logits, targets, cosines, alpha, eps=0.1, gamma=2.0):
    """The release's WeightedLabelSmoothing, restated from its definition:
    KL against 1-eps / eps/(V-1), weight clamp(alpha*cos), then the mean
    over every (valid, valid) pair of token loss x focal weight."""
    b, l, v = logits.shape
    logp = logits.reshape(-1, v).log_softmax(-1)
    tgt = targets.reshape(-1)
    mask = tgt >= 0
    tgt = tgt.clamp(min=0)
    q = torch.full_like(logp, eps / (v - 1))
    q.scatter_(1, tgt[:, None], 1 - eps)
    tok = (q * (q.log() - logp)).sum(1)
    tok = tok * (alpha * cosines).clamp(0, 1).repeat_interleave(l)
    focal = (1 - logp.exp().gather(1, tgt[:, None])) ** gamma  # (N, 1)
    pairs = tok[None, :] * focal  # (N, N): [j, i] = focal_j * tok_i
    pair_mask = mask[None, :] & mask[:, None]
    return pairs[pair_mask].mean()


def test_default_loss_is_the_release_definition():
    logits, targets = _batch(b=4, l=6, v=9)
    cos = torch.tensor([0.2, 0.3, 0.5, -0.1])
    ours = CLIPWeightedCELoss(clip_weight_scale=2.5)(logits, targets, cos)
    release_targets = targets.clone()
    release_targets[targets == 0] = -1  # the release ignores -1
    ref = _release_definition(logits, release_targets, cos, alpha=2.5)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    # the gradient flows through the focal factor, as in the release
    g_ours, = torch.autograd.grad(ours, logits)
    g_ref, = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-7)


def test_uniform_form_is_torch_label_smoothing():
    logits, targets = _batch()
    ours = CLIPWeightedCELoss(use_clip_weight=False, smoothing='uniform',
                              focal_gamma=None)(logits, targets)
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                          ignore_index=0, label_smoothing=0.1)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    with pytest.raises(ValueError, match='smoothing'):
        CLIPWeightedCELoss(smoothing='kl')


def test_never_emitted_columns_are_not_classes():
    """-inf columns (<pad>, <bos>) change nothing: the loss equals the loss
    over the remaining columns alone."""
    logits, targets = _batch(b=2, l=4, v=8)
    targets = targets.clamp(min=2)  # real words only
    targets[0, 2:] = 0  # padding
    masked = logits.detach().clone()
    masked[..., :2] = float('-inf')
    loss = CLIPWeightedCELoss(use_clip_weight=False)
    got = loss(masked, targets)
    kept_targets = torch.where(targets == 0, 0, targets - 1)  # pad -> 0
    kept = torch.cat([torch.zeros_like(masked[..., :1]), masked[..., 2:]], -1)
    # column 0 of `kept` stands for padding (ignored); give it -inf too
    kept[..., 0] = float('-inf')
    ref = loss(kept, kept_targets)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
