"""CLIP-weighted cross-entropy (CXE) for noisy synthetic pairs."""
import math
from typing import Optional

import torch
import torch.nn as nn

from mmpcm.registry import MODELS

SMOOTHING_FORMS = ('release', 'uniform')


@MODELS.register_module()
class CLIPWeightedCELoss(nn.Module):
    """Token cross-entropy weighted per pair by the pair's CLIP score.

    As the release's ``WeightedLabelSmoothing``
    (``xmodaler/losses/weighted_label_smoothing.py``) computes it, by
    default:

    * each pair's weight is ``c = min(1, max(0, w * s))``, ``s`` the cosine
      of the synthetic image's and its caption's CLIP embeddings (the
      release stores ``2.5 * s`` and divides first; mmpcm stores ``s``);
    * the token loss is ``KL(q || p)`` with the label-smoothed target ``q``:
      ``1 - eps`` on the target word and ``eps / (V - 1)`` on every other
      word (``smoothing='release'``); ``smoothing='uniform'`` gives torch's
      ``cross_entropy(label_smoothing=eps)`` form instead;
    * the loss is the mean of ``c * token_loss`` over the real (non-pad)
      tokens of the batch, times the batch-mean focal factor
      ``mean((1 - p_target) ** gamma)`` over the same tokens, with the
      gradient flowing through both (release ``GAMMA=2``,
      ``GAMMA_TYPE='batch'``, on in every release config).

    Columns whose logit is ``-inf`` (words the head never emits:
    ``<pad>``, ``<bos>``) are not classes: they get no smoothing mass and
    ``V`` counts only the others.

    Args:
        clip_weight_scale (float): ``w``. Paper 4.0; release 2.5 (ViT-B/32)
            and 4.0 (ViT-L/14). Defaults to 2.5.
        use_clip_weight (bool): False gives unweighted (label-smoothed)
            cross-entropy. Defaults to True.
        label_smoothing (float): ``eps``. Defaults to 0.1.
        smoothing (str): ``'release'`` (KL against ``1 - eps`` /
            ``eps / (V - 1)``) or ``'uniform'`` (torch's form).
            Defaults to ``'release'``.
        focal_gamma (float, optional): ``gamma`` of the batch-mean focal
            factor; None or 0 turns it off. Defaults to 2.0.
        ignore_index (int): Target id of padding. Defaults to 0.
        loss_weight (float): Overall scale. Defaults to 1.0.
    """

    def __init__(self,
                 clip_weight_scale: float = 2.5,
                 use_clip_weight: bool = True,
                 label_smoothing: float = 0.1,
                 smoothing: str = 'release',
                 focal_gamma: Optional[float] = 2.0,
                 ignore_index: int = 0,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if smoothing not in SMOOTHING_FORMS:
            raise ValueError(f'smoothing must be one of {SMOOTHING_FORMS}, '
                             f'got {smoothing!r}.')
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError('label_smoothing must be in [0, 1), got '
                             f'{label_smoothing}.')
        self.clip_weight_scale = clip_weight_scale
        self.use_clip_weight = use_clip_weight
        self.label_smoothing = label_smoothing
        self.smoothing = smoothing
        self.focal_gamma = focal_gamma
        self.ignore_index = ignore_index
        self.loss_weight = loss_weight

    def pair_weights(self, clip_scores: torch.Tensor) -> torch.Tensor:
        """``(B,)`` raw CLIP cosines -> ``(B,)`` weights in [0, 1]."""
        return (self.clip_weight_scale * clip_scores).clamp(0.0, 1.0)

    def token_losses(self, log_probs: torch.Tensor, targets: torch.Tensor,
                     num_classes: torch.Tensor) -> torch.Tensor:
        """Label-smoothed loss of every position.

        Args:
            log_probs (torch.Tensor): ``(B, L, V)`` log-probabilities,
                ``-inf`` on columns that are not classes.
            targets (torch.Tensor): ``(B, L)`` target ids (any valid id at
                ignored positions).
            num_classes (torch.Tensor): ``(B, L)`` classes per position.

        Returns:
            torch.Tensor: ``(B, L)`` losses.
        """
        eps = self.label_smoothing
        target_lp = log_probs.gather(-1, targets[..., None])[..., 0]  # (B, L)
        if eps == 0:
            return -target_lp
        finite = torch.isfinite(log_probs)
        sum_lp = log_probs.masked_fill(~finite, 0.0).sum(-1)  # (B, L)
        if self.smoothing == 'uniform':
            return -(1 - eps) * target_lp - eps / num_classes * sum_lp
        other = eps / (num_classes - 1)  # (B, L)
        entropy = (1 - eps) * math.log(1 - eps) + eps * torch.log(other)
        return entropy - (1 - eps) * target_lp - other * (sum_lp - target_lp)

    def forward(self,
                logits: torch.Tensor,
                targets: torch.Tensor,
                clip_scores: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Compute the loss.

        Args:
            logits (torch.Tensor): ``(B, L, V)`` next-token logits, ``-inf``
                where a word is never emitted.
            targets (torch.Tensor): ``(B, L)`` target ids, ``ignore_index``
                where there is no token.
            clip_scores (torch.Tensor, optional): ``(B,)`` raw CLIP cosines
                of the pairs; needed when ``use_clip_weight``.

        Returns:
            torch.Tensor: The scalar loss.
        """
        logits = logits.float()
        valid = targets != self.ignore_index  # (B, L)
        safe_targets = targets.masked_fill(~valid, 0)
        log_probs = logits.log_softmax(-1)  # (B, L, V)
        num_classes = torch.isfinite(logits).sum(-1)  # (B, L)
        token_loss = self.token_losses(log_probs, safe_targets, num_classes)
        if self.use_clip_weight:
            if clip_scores is None:
                raise ValueError('CLIPWeightedCELoss needs the pairs\' CLIP '
                                 'scores (data_sample.clip_score).')
            token_loss = token_loss * self.pair_weights(
                clip_scores.to(token_loss))[:, None]  # (B, L)
        num_tokens = valid.sum().clamp(min=1)
        token_loss = token_loss.masked_fill(~valid, 0.0)
        loss = token_loss.sum() / num_tokens
        if self.focal_gamma:
            p_target = log_probs.gather(-1, safe_targets[..., None])[..., 0].exp()
            focal = ((1 - p_target) ** self.focal_gamma).masked_fill(~valid, 0.0)
            loss = loss * (focal.sum() / num_tokens)
        return self.loss_weight * loss
