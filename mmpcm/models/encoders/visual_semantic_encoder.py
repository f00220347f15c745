"""Visual-semantic encoder: a plain transformer encoder over PCM tokens."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmpcm.registry import MODELS


@MODELS.register_module()
class VisualSemanticEncoder(BaseModule):
    """Transformer encoder over the global, visual and textual tokens.

    Args:
        num_layers (int): Encoder layers. Defaults to 3.
        model_dim (int): Token width. Defaults to 512.
        num_heads (int): Attention heads. Defaults to 8.
        ffn_dim (int): Feed-forward width. Defaults to 2048.
        dropout (float): Dropout in every layer. Defaults to 0.2.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 num_layers: int = 3,
                 model_dim: int = 512,
                 num_heads: int = 8,
                 ffn_dim: int = 2048,
                 dropout: float = 0.2,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        layer = nn.TransformerEncoderLayer(
            model_dim, num_heads, ffn_dim, dropout, batch_first=True)
        self.layers = nn.TransformerEncoder(
            layer, num_layers, enable_nested_tensor=False)

    def forward(self, tokens: torch.Tensor,
                padding_mask: torch.Tensor) -> torch.Tensor:
        """Encode tokens.

        Args:
            tokens (torch.Tensor): ``(B, T, d)`` input tokens.
            padding_mask (torch.Tensor): ``(B, T)`` bool, True to ignore.

        Returns:
            torch.Tensor: ``(B, T, d)`` encoded tokens.
        """
        return self.layers(tokens, src_key_padding_mask=padding_mask)
