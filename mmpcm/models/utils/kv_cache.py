"""Incremental (key/value-cached) decoding with ``nn.TransformerDecoder``.

:class:`CachedDecoder` runs the decoder's weights one position at a time,
equal to the full re-run in eval mode up to rounding (inference only). How:
``docs/method.md``, "Decoding with a key/value cache".
"""
from typing import List, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerCache(NamedTuple):
    """Cached keys and values of one decoder layer.

    Attributes:
        self_k (torch.Tensor): ``(B', H, L_max, dh)`` self-attention keys of
            the positions decoded so far (the rest is unused).
        self_v (torch.Tensor): ``(B', H, L_max, dh)`` values, likewise.
        mem_k (torch.Tensor): ``(B, H, T, dh)`` memory keys, one copy per
            image (not per beam).
        mem_v (torch.Tensor): ``(B, H, T, dh)`` memory values.
    """
    self_k: torch.Tensor
    self_v: torch.Tensor
    mem_k: torch.Tensor
    mem_v: torch.Tensor


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, L, d)`` -> ``(B, H, L, d / H)``."""
    b, length, d = x.shape
    return x.view(b, length, num_heads, d // num_heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, L, dh)`` -> ``(B, L, H * dh)``."""
    b, h, length, dh = x.shape
    return x.transpose(1, 2).reshape(b, length, h * dh)


def _in_projections(attn: nn.MultiheadAttention):
    """(W_q, W_k, W_v) and (b_q, b_k, b_v) of a packed attention module."""
    if not attn._qkv_same_embed_dim or attn.in_proj_weight is None:
        raise ValueError('CachedDecoder needs attention layers with packed '
                         'in_proj weights (kdim == vdim == embed_dim).')
    weights = attn.in_proj_weight.chunk(3)
    biases = (attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None
              else (None, None, None))
    return weights, biases


class CachedDecoder:
    """Step-by-step decoding over an ``nn.TransformerDecoder``'s weights.

    Args:
        decoder (nn.TransformerDecoder): The decoder (``batch_first=True``
            layers, post- or pre-norm, packed attention projections).
        memory (torch.Tensor): ``(B, T, d)`` encoder output, one row per
            image.
        memory_padding (torch.Tensor): ``(B, T)`` bool, True to ignore.
        beams (int): Rows per image in every step's input (beam size, or 1
            for greedy search); rows are image-major. Defaults to 1.
        max_len (int): Most positions decoded. Defaults to 32.
    """

    def __init__(self,
                 decoder: nn.TransformerDecoder,
                 memory: torch.Tensor,
                 memory_padding: torch.Tensor,
                 beams: int = 1,
                 max_len: int = 32) -> None:
        self.layers = list(decoder.layers)
        self.final_norm: Optional[nn.Module] = decoder.norm
        first = self.layers[0]
        if not first.self_attn.batch_first:
            raise ValueError('CachedDecoder needs batch_first=True layers.')
        self.num_heads = first.self_attn.num_heads
        self.beams = beams
        self.position = 0
        b, _, d = memory.shape
        rows = b * beams
        dh = d // self.num_heads
        # True where a query may attend, as scaled_dot_product_attention
        # reads a bool mask.
        self.mem_mask = (~memory_padding)[:, None, None, :]  # (B, 1, 1, T)
        self.caches: List[LayerCache] = []
        # Each layer's cross-attention query projection (weight, bias).
        self.cross_q: List[tuple] = []
        for layer in self.layers:
            (w_q, w_k, w_v), (b_q, b_k, b_v) = _in_projections(
                layer.multihead_attn)
            self.cross_q.append((w_q, b_q))
            empty = memory.new_zeros(rows, self.num_heads, max_len, dh)
            self.caches.append(LayerCache(
                self_k=empty,
                self_v=empty.clone(),
                mem_k=_split_heads(F.linear(memory, w_k, b_k),
                                   self.num_heads),  # (B, H, T, dh)
                mem_v=_split_heads(F.linear(memory, w_v, b_v),
                                   self.num_heads)))  # (B, H, T, dh)

    # ------------------------------------------------------------ beams
    def reorder(self, rows: torch.Tensor) -> None:
        """Keep the self-attention caches of ``rows`` (beam search's picks).

        Args:
            rows (torch.Tensor): ``(B',)`` source row of every new row; rows
                stay within their image, so memory caches need no change.
        """
        self.caches = [c._replace(self_k=c.self_k.index_select(0, rows),
                                  self_v=c.self_v.index_select(0, rows))
                       for c in self.caches]

    # ------------------------------------------------------------ steps
    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Decode one position.

        Args:
            x (torch.Tensor): ``(B', 1, d)`` embedded input of the new
                position (word embedding + position encoding).

        Returns:
            torch.Tensor: ``(B', 1, d)`` decoder output at that position.
        """
        for i, layer in enumerate(self.layers):
            x = self._layer_step(i, layer, x)
        self.position += 1
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x

    def _layer_step(self, i: int, layer: nn.TransformerDecoderLayer,
                    x: torch.Tensor) -> torch.Tensor:
        if layer.norm_first:
            x = x + self._self_attention(i, layer, layer.norm1(x))
            x = x + self._cross_attention(i, layer, layer.norm2(x))
            return x + self._feed_forward(layer, layer.norm3(x))
        x = layer.norm1(x + self._self_attention(i, layer, x))
        x = layer.norm2(x + self._cross_attention(i, layer, x))
        return layer.norm3(x + self._feed_forward(layer, x))

    def _self_attention(self, i: int, layer: nn.TransformerDecoderLayer,
                        x: torch.Tensor) -> torch.Tensor:
        attn = layer.self_attn
        q, k, v = F.linear(x, attn.in_proj_weight,
                           attn.in_proj_bias).chunk(3, dim=-1)  # 3 x (B', 1, d)
        cache, t = self.caches[i], self.position
        cache.self_k[:, :, t] = _split_heads(k, self.num_heads)[:, :, 0]
        cache.self_v[:, :, t] = _split_heads(v, self.num_heads)[:, :, 0]
        out = F.scaled_dot_product_attention(
            _split_heads(q, self.num_heads),  # (B', H, 1, dh)
            cache.self_k[:, :, :t + 1],  # (B', H, t+1, dh)
            cache.self_v[:, :, :t + 1])  # (B', H, 1, dh)
        return attn.out_proj(_merge_heads(out))  # (B', 1, d)

    def _cross_attention(self, i: int, layer: nn.TransformerDecoderLayer,
                         x: torch.Tensor) -> torch.Tensor:
        attn = layer.multihead_attn
        w_q, b_q = self.cross_q[i]
        rows, _, d = x.shape
        b = rows // self.beams
        # The K beams of an image query its memory as K positions.
        q = F.linear(x, w_q, b_q).view(b, self.beams, d)  # (B, K, d)
        cache = self.caches[i]
        out = F.scaled_dot_product_attention(
            _split_heads(q, self.num_heads),  # (B, H, K, dh)
            cache.mem_k, cache.mem_v,  # (B, H, T, dh)
            attn_mask=self.mem_mask)  # (B, H, K, dh)
        out = _merge_heads(out).reshape(rows, 1, d)  # (B', 1, d)
        return attn.out_proj(out)

    def _feed_forward(self, layer: nn.TransformerDecoderLayer,
                      x: torch.Tensor) -> torch.Tensor:
        return layer.linear2(layer.activation(layer.linear1(x)))  # (B', 1, d)
