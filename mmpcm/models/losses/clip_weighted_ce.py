"""CLIP-weighted cross-entropy (CXE) for noisy synthetic pairs."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmpcm.registry import MODELS


@MODELS.register_module()
class CLIPWeightedCELoss(nn.Module):
    """Token cross-entropy weighted per pair by the pair's CLIP score.

    Each pair's weight is ``c = min(1, max(0, w * s))`` with ``s`` the cosine
    of the synthetic image's and its caption's CLIP embeddings; every token
    loss of that pair is multiplied by ``c``. The mean runs over all real
    (non-pad) tokens of the batch.

    Args:
        clip_weight_scale (float): ``w``. Paper 4.0; release 2.5 (ViT-B/32)
            and 4.0 (ViT-L/14). Defaults to 2.5.
        use_clip_weight (bool): False gives plain (label-smoothed)
            cross-entropy. Defaults to True.
        label_smoothing (float): Label smoothing. Defaults to 0.1.
        focal_gamma (float, optional): If set, multiply the loss by the
            batch-mean focal factor ``mean((1 - p_target) ** gamma)`` as the
            release does (gamma 2). Defaults to None.
        ignore_index (int): Target id of padding. Defaults to 0.
        loss_weight (float): Overall scale. Defaults to 1.0.
    """

    def __init__(self,
                 clip_weight_scale: float = 2.5,
                 use_clip_weight: bool = True,
                 label_smoothing: float = 0.1,
                 focal_gamma: Optional[float] = None,
                 ignore_index: int = 0,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.clip_weight_scale = clip_weight_scale
        self.use_clip_weight = use_clip_weight
        self.label_smoothing = label_smoothing
        self.focal_gamma = focal_gamma
        self.ignore_index = ignore_index
        self.loss_weight = loss_weight

    def pair_weights(self, clip_scores: torch.Tensor) -> torch.Tensor:
        """``(B,)`` raw CLIP cosines -> ``(B,)`` weights in [0, 1]."""
        return (self.clip_weight_scale * clip_scores).clamp(0.0, 1.0)

    def forward(self,
                logits: torch.Tensor,
                targets: torch.Tensor,
                clip_scores: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Compute the loss.

        Args:
            logits (torch.Tensor): ``(B, L, V)`` next-token logits.
            targets (torch.Tensor): ``(B, L)`` target ids, ``ignore_index``
                where there is no token.
            clip_scores (torch.Tensor, optional): ``(B,)`` raw CLIP cosines
                of the pairs; needed when ``use_clip_weight``.

        Returns:
            torch.Tensor: The scalar loss.
        """
        b, l, v = logits.shape
        logits = logits.float()
        token_loss = F.cross_entropy(
            logits.reshape(b * l, v), targets.reshape(b * l),  # (B*L, V)
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction='none').view(b, l)  # (B, L)
        valid = targets != self.ignore_index  # (B, L)
        if self.use_clip_weight:
            if clip_scores is None:
                raise ValueError('CLIPWeightedCELoss needs the pairs\' CLIP '
                                 'scores (data_sample.clip_score).')
            token_loss = token_loss * self.pair_weights(
                clip_scores.to(token_loss))[:, None]  # (B, L)
        num_tokens = valid.sum().clamp(min=1)
        loss = (token_loss * valid).sum() / num_tokens
        if self.focal_gamma is not None:
            p_target = logits.softmax(-1).gather(
                -1, targets.clamp(min=0)[..., None])[..., 0]  # (B, L)
            focal = ((1 - p_target) ** self.focal_gamma)[valid].mean()
            loss = loss * focal
        return self.loss_weight * loss
