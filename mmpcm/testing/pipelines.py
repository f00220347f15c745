"""Tiny random-weight Stable Diffusion and CLIP models for tests/benchmarks.

Nothing is downloaded. Each model is built from a small config exactly as the
real one would be, saved to a folder, and loaded back by the tools through
the same calls real weights take (``DiffusionPipeline.from_pretrained``,
open_clip's ``load_checkpoint``):

* :func:`save_tiny_sd_pipeline`: a ``StableDiffusionPipeline`` (UNet 8/16
  channels, 2-block VAE, 1-layer CLIP text model, DDIM) that makes a 32x32
  image in a few milliseconds per step on CPU. Its tokenizer is a real CLIP
  BPE tokenizer (:func:`write_clip_tokenizer`), built from open_clip's
  bundled BPE file: it tokenizes like open_clip's ``SimpleTokenizer``.
* :func:`save_tiny_open_clip`: :data:`mmpcm.testing.TINY_CLIP_CFG` as a
  model-config JSON plus a safetensors weight file.
"""
import gzip
import json
import os
import os.path as osp
from typing import NamedTuple

import open_clip
import torch
from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionPipeline,
                       UNet2DConditionModel)
from open_clip.tokenizer import bytes_to_unicode, default_bpe
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from mmpcm.utils.compat import save_safetensors
from mmpcm.utils.fileio import PathLike
from .models import TINY_CLIP_CFG

TINY_SD_SIZE = 32
"""Image side of the tiny pipeline (latents 16x16, VAE downsamples 2x)."""

_CONTEXT_LENGTH = 77
_NUM_MERGES = 49152 - 256 - 2  # CLIP's BPE: 48894 merges, 49408 tokens

__all__ = [
    'TINY_SD_SIZE', 'write_clip_tokenizer', 'build_tiny_sd_pipeline',
    'save_tiny_sd_pipeline', 'TinyCLIPFiles', 'build_tiny_open_clip',
    'save_tiny_open_clip'
]


def write_clip_tokenizer(folder: PathLike) -> CLIPTokenizer:
    """Write CLIP's BPE tokenizer files and load them with transformers.

    ``vocab.json`` and ``merges.txt`` are derived from open_clip's bundled
    BPE file the way CLIP builds its vocabulary (256 byte tokens, the same
    with ``</w>``, one token per merge, then ``<|startoftext|>`` and
    ``<|endoftext|>``: 49408 tokens).

    Args:
        folder (str | PathLike): Where to write the files (created).

    Returns:
        transformers.CLIPTokenizer: Loaded from ``folder`` (context 77).
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    with gzip.open(default_bpe()) as f:
        lines = f.read().decode('utf-8').split('\n')
    merges = lines[1:_NUM_MERGES + 1]  # line 0 is a version header
    byte_tokens = list(bytes_to_unicode().values())
    vocab = byte_tokens + [t + '</w>' for t in byte_tokens]
    vocab += [''.join(m.split()) for m in merges]
    vocab += ['<|startoftext|>', '<|endoftext|>']
    with open(osp.join(folder, 'vocab.json'), 'w', encoding='utf-8') as f:
        json.dump({token: i for i, token in enumerate(vocab)}, f)
    with open(osp.join(folder, 'merges.txt'), 'w', encoding='utf-8') as f:
        f.write('#version: 0.2\n' + '\n'.join(merges) + '\n')
    with open(osp.join(folder, 'tokenizer_config.json'), 'w') as f:
        json.dump(dict(model_max_length=_CONTEXT_LENGTH), f)
    return CLIPTokenizer.from_pretrained(folder)


def build_tiny_sd_pipeline(tokenizer_dir: PathLike,
                           seed: int = 0) -> StableDiffusionPipeline:
    """A random-weight ``StableDiffusionPipeline`` making 32x32 images.

    Args:
        tokenizer_dir (str | PathLike): Folder for the tokenizer files
            (:func:`write_clip_tokenizer`).
        seed (int): Seed of the random weights. Defaults to 0.

    Returns:
        diffusers.StableDiffusionPipeline: No safety checker.
    """
    tokenizer = write_clip_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=TINY_SD_SIZE // 2, in_channels=4, out_channels=4,
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D'),
        up_block_types=('CrossAttnUpBlock2D', 'UpBlock2D'),
        cross_attention_dim=16, attention_head_dim=2)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        block_out_channels=(8, 16), norm_num_groups=4,
        down_block_types=('DownEncoderBlock2D', 'DownEncoderBlock2D'),
        up_block_types=('UpDecoderBlock2D', 'UpDecoderBlock2D'),
        sample_size=TINY_SD_SIZE)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
        num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=_CONTEXT_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear',
        clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def save_tiny_sd_pipeline(folder: PathLike, seed: int = 0) -> str:
    """Build :func:`build_tiny_sd_pipeline` and ``save_pretrained`` it.

    Args:
        folder (str | PathLike): The pipeline folder (``model_index.json``,
            ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
            ``scheduler/``).
        seed (int): Seed of the random weights. Defaults to 0.

    Returns:
        str: ``folder``, for ``DiffusionPipeline.from_pretrained``.
    """
    folder = os.fspath(folder)
    pipe = build_tiny_sd_pipeline(osp.join(folder, 'tokenizer'), seed)
    pipe.save_pretrained(folder)
    return folder


class TinyCLIPFiles(NamedTuple):
    """A saved tiny open_clip model: config JSON and weight file."""
    model_cfg: str
    weights: str


def build_tiny_open_clip(seed: int = 0) -> torch.nn.Module:
    """open_clip ``CLIP`` of :data:`mmpcm.testing.TINY_CLIP_CFG`, random."""
    torch.manual_seed(seed)
    return open_clip.model.CLIP(**TINY_CLIP_CFG).eval()


def save_tiny_open_clip(folder: PathLike, seed: int = 0) -> TinyCLIPFiles:
    """Save a tiny open_clip model as ``model_cfg.json`` + safetensors.

    Args:
        folder (str | PathLike): Output folder (created).
        seed (int): Seed of the random weights. Defaults to 0.

    Returns:
        TinyCLIPFiles: Paths of the config and the weights, for
        ``tools/data/extract_features.py --model-cfg ... --pretrained ...``.
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    files = TinyCLIPFiles(osp.join(folder, 'model_cfg.json'),
                          osp.join(folder, 'tiny_clip.safetensors'))
    with open(files.model_cfg, 'w') as f:
        json.dump(TINY_CLIP_CFG, f, indent=1)
    state = {k: v.contiguous() for k, v in
             build_tiny_open_clip(seed).state_dict().items()}
    save_safetensors(state, files.weights)
    return files
