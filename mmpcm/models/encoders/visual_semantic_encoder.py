"""Visual-semantic encoder: post-LN transformer layers and the global-token
rebuild of the authors' release."""
from typing import List, Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmpcm.models.utils.transformer import (init_attention_as_linear,
                                             set_attention_dropout)
from mmpcm.registry import MODELS


@MODELS.register_module()
class VisualSemanticEncoder(BaseModule):
    """Transformer encoder over the global, visual and textual tokens.

    Post-LN layers (as the release's ``BertLayer``): self-attention with
    dropout ``attn_dropout`` on the attention probabilities, ``dropout`` on
    the attention output, after the FFN's activation and on its output,
    LayerNorm with ``layer_norm_eps`` after each residual.

    With ``global_rebuild`` the output's token 0 is rebuilt as the release's
    ``GTransformerEncoder`` does
    (``xmodaler/modeling/encoder/gtransformer_encoder.py``): token 0 at the
    input and after each of the ``L`` layers, concatenated
    (``(B, (L + 1) d)``), then ``Linear((L + 1) d -> d)`` and ``LayerNorm``
    (eps 1e-5, torch's default, as in the release), replaces token 0 of the
    output the decoder attends to.

    Args:
        num_layers (int): Encoder layers. Defaults to 3.
        model_dim (int): Token width. Defaults to 512.
        num_heads (int): Attention heads. Defaults to 8.
        ffn_dim (int): Feed-forward width. Defaults to 2048.
        dropout (float): Hidden and FFN dropout (release
            ``HIDDEN_DROPOUT_PROB``, ``INTERMEDIATE_DROP``,
            ``FFN_DROPOUT_PROB``). Defaults to 0.2.
        attn_dropout (float, optional): Dropout on the attention
            probabilities (release ``ATTENTION_PROBS_DROPOUT_PROB``). None
            uses ``dropout``. Defaults to 0.3.
        layer_norm_eps (float): LayerNorm epsilon of the layers (release
            1e-12). Defaults to 1e-12.
        global_rebuild (bool): Rebuild token 0 after the stack. Defaults
            to True.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 num_layers: int = 3,
                 model_dim: int = 512,
                 num_heads: int = 8,
                 ffn_dim: int = 2048,
                 dropout: float = 0.2,
                 attn_dropout: Optional[float] = 0.3,
                 layer_norm_eps: float = 1e-12,
                 global_rebuild: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(
                model_dim, num_heads, ffn_dim, dropout, batch_first=True,
                layer_norm_eps=layer_norm_eps) for _ in range(num_layers)
        ])
        if attn_dropout is not None:
            set_attention_dropout(self.layers, attn_dropout)
        init_attention_as_linear(self.layers)
        self.global_rebuild = None
        if global_rebuild:
            self.global_rebuild = nn.Sequential(
                nn.Linear(model_dim * (num_layers + 1), model_dim),
                nn.LayerNorm(model_dim))

    def forward_intermediates(self, tokens: torch.Tensor,
                              padding_mask: torch.Tensor
                              ) -> List[torch.Tensor]:
        """The input and every layer's output.

        Args:
            tokens (torch.Tensor): ``(B, T, d)`` input tokens.
            padding_mask (torch.Tensor): ``(B, T)`` bool, True to ignore.

        Returns:
            list[torch.Tensor]: ``L + 1`` tensors of shape ``(B, T, d)``.
        """
        states = [tokens]
        x = tokens
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=padding_mask)  # (B, T, d)
            states.append(x)
        return states

    def forward(self, tokens: torch.Tensor,
                padding_mask: torch.Tensor) -> torch.Tensor:
        """Encode tokens.

        Args:
            tokens (torch.Tensor): ``(B, T, d)`` input tokens, the global
                token first.
            padding_mask (torch.Tensor): ``(B, T)`` bool, True to ignore.

        Returns:
            torch.Tensor: ``(B, T, d)`` encoded tokens.
        """
        states = self.forward_intermediates(tokens, padding_mask)
        out = states[-1]
        if self.global_rebuild is None:
            return out
        firsts = torch.cat([s[:, 0] for s in states], dim=-1)  # (B, (L+1)d)
        rebuilt = self.global_rebuild(firsts)  # (B, d)
        return torch.cat([rebuilt[:, None], out[:, 1:]], dim=1)  # (B, T, d)
