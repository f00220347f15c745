"""Helpers for torch's transformer layers."""
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
