"""Release-shaped X-modaler state dicts for the conversion tests: every key
name and shape of the authors' PCM-Net models (TransformerEncoderDecoder with
VisualGridClipTagLREmbedding, GTransformerEncoder, TransformerDecoder,
BasePredictor), random values. Test scaffolding only."""
import math
from typing import Dict, List, Tuple

import torch


def _linear(prefix: str, out_dim: int, in_dim: int) -> Dict[str, Tuple]:
    return {f'{prefix}.weight': (out_dim, in_dim), f'{prefix}.bias': (out_dim,)}


def _norm(prefix: str, dim: int) -> Dict[str, Tuple]:
    return {f'{prefix}.weight': (dim,), f'{prefix}.bias': (dim,)}


def _bert_attention(prefix: str, d: int) -> Dict[str, Tuple]:
    shapes = {}
    for name in ('query', 'key', 'value'):
        shapes.update(_linear(f'{prefix}.self.{name}', d, d))
    shapes.update(_linear(f'{prefix}.output.dense', d, d))
    shapes.update(_norm(f'{prefix}.output.LayerNorm', d))
    return shapes


def release_shapes(patch_dim: int = 768, embed_dim: int = 512,
                   num_patches: int = 49, d: int = 512, ffn: int = 2048,
                   enc_layers: int = 3, dec_layers: int = 3,
                   vocab_size: int = 10200) -> Dict[str, Tuple]:
    """Key -> shape of a release model (defaults: COCO ViT-B/32)."""
    s = {
        'token_embed.embeddings.weight': (vocab_size, d),
        **_norm('token_embed.embeddings_norm', d),
        'token_embed.embeddings_pos.pe': (1, 5000, d),
        'visual_embed.embeddings_pos': (1, num_patches + 1, d),
        'visual_embed.proj': (patch_dim, embed_dim),
        **_linear('visual_embed.embeddings', d, patch_dim),
        **_linear('visual_embed.g_embeddings', d, embed_dim),
        **_norm('visual_embed.embeddings_norm', d),
        **_linear('visual_embed.t_embeddings', d, embed_dim),
        'visual_embed.embeddings_token_type.weight': (2, d),
        **_norm('visual_embed.ln_post', patch_dim),
        **_linear('encoder.gvfeat_embed.0', d, d * (enc_layers + 1)),
        **_norm('encoder.gvfeat_embed.1', d),
        **_linear('predictor.logits', vocab_size, d),
    }
    for i in range(enc_layers):
        p = f'encoder.layers.{i}'
        s.update(_bert_attention(f'{p}.attention', d))
        s.update(_linear(f'{p}.intermediate.dense', ffn, d))
        s.update(_linear(f'{p}.output.dense', d, ffn))
        s.update(_norm(f'{p}.output.LayerNorm', d))
    for i in range(dec_layers):
        p = f'decoder.g_layers.{i}'
        s.update(_bert_attention(f'{p}.self_attn', d))
        s.update(_bert_attention(f'{p}.x_att', d))
        s.update(_linear(f'{p}.intermediate.dense', ffn, d))
        s.update(_linear(f'{p}.output.dense', d, ffn))
        s.update(_norm(f'{p}.output.LayerNorm', d))
    return s


def sinusoid_pe(length: int, d: int) -> torch.Tensor:
    """X-modaler's SinusoidEncoding table (max_len 5000: base 10000)."""
    pos = torch.arange(length).float()[:, None]
    div = torch.exp(torch.arange(0, d, 2).float() * -(math.log(10000.0) / d))
    pe = torch.zeros(length, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe[None]


def release_state(seed: int = 0, **sizes) -> Dict[str, torch.Tensor]:
    """A release-shaped state dict with random values (LayerNorm weights
    near 1, the position table X-modaler's)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in release_shapes(**sizes).items():
        t = torch.randn(*shape, generator=gen) * 0.05
        if 'LayerNorm.weight' in key or 'norm.weight' in key or (
                key.endswith(('ln_post.weight', 'gvfeat_embed.1.weight'))):
            t = 1 + t
        state[key] = t
    pe = state['token_embed.embeddings_pos.pe']
    state['token_embed.embeddings_pos.pe'] = sinusoid_pe(pe.shape[1],
                                                          pe.shape[2])
    return state


def write_release_files(folder, state: Dict[str, torch.Tensor],
                        words: List[str], concept_dim: int,
                        num_concepts: int = 12, seed: int = 0):
    """Write a release model's three files; returns their paths."""
    import pickle
    gen = torch.Generator().manual_seed(seed)
    ckpt = folder / 'model.pth'
    torch.save({'model': state, 'iteration': 100}, ckpt)
    vocab = folder / 'vocabulary.txt'
    vocab.write_text('\n'.join(words) + '\n', encoding='utf-8')
    concepts = folder / 'concepts.pickle'
    table = torch.nn.functional.normalize(
        torch.randn(num_concepts, concept_dim, generator=gen), dim=-1)
    with open(concepts, 'wb') as f:
        pickle.dump(([f'c{i}' for i in range(num_concepts)], table), f)
    return str(ckpt), str(vocab), str(concepts)
