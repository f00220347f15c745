"""Helpers for torch's transformer layers."""
import math

import torch
import torch.nn as nn


def set_attention_dropout(layer: nn.Module, p: float) -> None:
    """Set the attention-probability dropout of every ``nn.MultiheadAttention``
    inside ``layer``.

    ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer`` use one
    dropout for everything; the release's BERT layers drop attention
    probabilities at their own rate (``ATTENTION_PROBS_DROPOUT_PROB``).

    Args:
        layer (nn.Module): A transformer layer (or stack).
        p (float): Dropout probability on the attention weights.
    """
    for module in layer.modules():
        if isinstance(module, nn.MultiheadAttention):
            module.dropout = p


def init_attention_as_linear(layer: nn.Module) -> None:
    """Initialise every ``nn.MultiheadAttention`` inside ``layer`` as the
    release's BERT attention is: separate ``nn.Linear`` query, key, value
    and output projections with torch's default ``nn.Linear`` init (weights
    kaiming-uniform with ``a = sqrt(5)``, biases uniform in
    ``±1 / sqrt(fan_in)``), where ``nn.MultiheadAttention`` would draw the
    packed ``in_proj`` weight Xavier-uniform and zero the biases.

    Args:
        layer (nn.Module): A transformer layer (or stack).
    """
    for module in layer.modules():
        if not isinstance(module, nn.MultiheadAttention):
            continue
        if module.in_proj_weight is None:
            raise ValueError('init_attention_as_linear needs packed in_proj '
                             'weights (kdim == vdim == embed_dim).')
        for proj in (*module.in_proj_weight.chunk(3),
                     module.out_proj.weight):
            nn.init.kaiming_uniform_(proj, a=math.sqrt(5))
        bound = 1 / math.sqrt(module.embed_dim)
        with torch.no_grad():
            if module.in_proj_bias is not None:
                module.in_proj_bias.uniform_(-bound, bound)
            if module.out_proj.bias is not None:
                module.out_proj.bias.uniform_(-bound, bound)
