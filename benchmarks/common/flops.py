"""PCM-Net's arithmetic: floating-point operations of training and decoding."""
from dataclasses import dataclass
from typing import Dict

import torch


@dataclass(frozen=True)
class ModelDims:
    """The sizes that set PCM-Net's compute.

    Attributes:
        width (int): Model width ``d``.
        ffn (int): Feed-forward width.
        enc_layers (int): Encoder layers.
        dec_layers (int): Decoder layers.
        vocab (int): Word vocabulary size (output layer).
        num_patches (int): CLIP patch tokens per image.
        patch_dim (int): Width of a patch token.
        embed_dim (int): Width of CLIP's joint space.
    """
    width: int
    ffn: int
    enc_layers: int
    dec_layers: int
    vocab: int
    num_patches: int
    patch_dim: int
    embed_dim: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> 'ModelDims':
        """Read the sizes off a built ``PCMCaptioner``."""
        head, neck = model.head, model.neck
        layer = head.decoder.layers[0]
        return cls(head.word_embed.embedding_dim, layer.linear1.out_features,
                   len(model.encoder.layers), len(head.decoder.layers),
                   len(head.vocab), neck.num_patches, neck.patch_dim,
                   neck.embed_dim)

    def encoder_macs(self, tokens: int) -> int:
        """Multiply-accumulates of the encoder over ``tokens`` positions."""
        d, f = self.width, self.ffn
        return self.enc_layers * (tokens * (4 * d * d + 2 * d * f) +
                                  2 * tokens * tokens * d)

    def neck_macs(self) -> int:
        """Multiply-accumulates of the neck's projections of one image."""
        n, d = self.num_patches, self.width
        return n * self.patch_dim * (self.embed_dim + d) + (
            n + 1) * self.embed_dim * d

    def train_flops_per_pair(self, caption_tokens: int) -> float:
        """Training FLOPs of one pair (backward counted as 2x forward).

        Args:
            caption_tokens (int): Decoder positions (the head's
                ``max_len``).
        """
        d, f, L = self.width, self.ffn, caption_tokens
        mem = 1 + self.num_patches  # global + (mixed) patches
        dec = self.dec_layers * (
            L * (6 * d * d + 2 * d * f)  # self-attn, cross Q/out, FFN
            + mem * 2 * d * d  # cross-attention K/V of the memory
            + 2 * L * (L + mem) * d)  # attention scores and sums
        fwd = self.neck_macs() + self.encoder_macs(mem) + dec + (
            L * d * self.vocab)
        return 3 * 2 * fwd

    def decode_flops_per_row(self, steps: int,
                             cached: bool) -> Dict[str, float]:
        """FLOPs of one beam row's decoding, by part.

        Args:
            steps (int): Decoder calls (``max_len`` when no sentence ends).
            cached (bool): False: the whole prefix recomputed every step,
                memory K/V re-projected every step. True: a KV cache,
                memory K/V projected once. Both project only the new
                position to the vocabulary.

        Returns:
            dict: FLOPs of ``self-attention``, ``cross-attention K/V``,
            ``cross-attention Q/out``, ``FFN``, ``output projection`` and
            ``total``.
        """
        d, f, layers = self.width, self.ffn, self.dec_layers
        mem = 1 + 2 * self.num_patches  # inference appends textual tokens
        positions = steps if cached else steps * (steps + 1) // 2
        kv_projections = 1 if cached else steps
        macs = {
            'self-attention': layers * positions * 4 * d * d,
            'cross-attention K/V': layers * kv_projections * mem * 2 * d * d,
            'cross-attention Q/out': layers * positions * 2 * d * d,
            'FFN': layers * positions * 2 * d * f,
            'output projection': steps * d * self.vocab,
        }
        flops = {k: 2.0 * v for k, v in macs.items()}
        flops['total'] = sum(flops.values())
        return flops
