"""Seeds, one pipeline call, and a batch generated with retries.

Seeding and the retry rules: ``docs/generation_format.md``.
"""
import hashlib
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from .captions import CaptionItem
from .config import GenerationConfig
from .prompts import prompt_tokens
from .records import Attempt, ItemRecord

__all__ = [
    'item_seed', 'pixel_std', 'PipelineImage', 'run_pipeline',
    'generate_batch'
]


def item_seed(base_seed: int, index: int, attempt: int) -> int:
    """Seed of attempt ``attempt`` of caption ``index`` (63-bit).

    A hash of all three numbers: independent of rank, world size and batch,
    and different for every item and attempt.
    """
    key = f'mmpcm-gen:{base_seed}:{index}:{attempt}'.encode()
    digest = hashlib.sha256(key).digest()
    return int.from_bytes(digest[:8], 'little') >> 1


def pixel_std(image: np.ndarray) -> float:
    """Largest per-channel std of an ``(H, W, 3)`` uint8 image (0-255)."""
    flat = image.reshape(-1, image.shape[-1]).astype(np.float32)  # (HW, 3)
    return float(flat.std(axis=0).max())


class PipelineImage(NamedTuple):
    """One pipeline output: ``(H, W, 3)`` uint8 image, its NSFW flag and
    whether every pixel of the float output was finite (True for a PIL
    output, already 8-bit)."""
    image: np.ndarray
    nsfw: bool
    finite: bool = True


def _to_uint8(image: Any) -> Tuple[np.ndarray, bool]:
    """A pipeline image (float [0, 1] array or PIL) as ``(H, W, 3)`` uint8,
    and whether all its values were finite before the conversion (which
    would turn NaN into an arbitrary byte and inf into 0 or 255)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert('RGB')), True
    if isinstance(image, torch.Tensor):  # output_type='pt': (3, H, W)
        image = image.detach().float().cpu().permute(1, 2, 0).numpy()
    array = np.asarray(image, dtype=np.float32)
    finite = bool(np.isfinite(array).all())
    array = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(array, 0, 1) * 255).round().astype(np.uint8), finite


def run_pipeline(pipe: Any, prompts: List[str], seeds: List[int],
                 config: GenerationConfig) -> List[PipelineImage]:
    """One pipeline call: an image per prompt, each from its own seed.

    Args:
        pipe (DiffusionPipeline): A text-to-image pipeline.
        prompts (list[str]): The captions.
        seeds (list[int]): One seed per prompt (CPU generators).
        config (GenerationConfig): Steps, guidance and size.

    Returns:
        list[PipelineImage]: One per prompt, in order; ``finite`` is False
        for an image with NaN or inf in the float output.
    """
    generators = [torch.Generator('cpu').manual_seed(s) for s in seeds]
    output = pipe(
        prompt=list(prompts),
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        height=config.height,
        width=config.width,
        generator=generators,
        output_type='np')
    flags = getattr(output, 'nsfw_content_detected', None)
    flags = [False] * len(prompts) if flags is None else list(flags)
    images = []
    for image, flag in zip(output.images, flags, strict=True):
        pixels, finite = _to_uint8(image)
        images.append(PipelineImage(pixels, bool(flag), finite))
    return images


def _classify(image: PipelineImage, config: GenerationConfig) -> Attempt:
    """Judge one output (seed filled in by the caller)."""
    std = round(pixel_std(image.image), 3)
    if not image.finite:
        return Attempt(0, 'nonfinite', std)
    if image.nsfw:
        return Attempt(0, 'nsfw', std)
    if std < config.min_pixel_std:
        return Attempt(0, 'degenerate', std)
    return Attempt(0, 'ok', std)


def generate_batch(
        pipe: Any, items: List[CaptionItem], config: GenerationConfig
) -> List[Tuple[ItemRecord, Optional[np.ndarray]]]:
    """Generate a batch, retrying rejected items with their next seed.

    Returns:
        list[tuple[ItemRecord, np.ndarray | None]]: Per item (in order), the
        record (``file`` not yet set) and the kept image (None if failed).
    """
    lengths = prompt_tokens(pipe, [it.caption for it in items])
    attempts: Dict[int, List[Attempt]] = {it.index: [] for it in items}
    kept: Dict[int, Tuple[np.ndarray, int]] = {}
    todo = list(items)
    for attempt in range(config.max_attempts):
        if not todo:
            break
        seeds = [item_seed(config.seed, it.index, attempt) for it in todo]
        outputs = run_pipeline(pipe, [it.caption for it in todo], seeds,
                               config)
        retry = []
        for item, seed, output in zip(todo, seeds, outputs, strict=True):
            verdict = _classify(output, config)._replace(seed=seed)
            attempts[item.index].append(verdict)
            if verdict.result == 'ok':
                kept[item.index] = (output.image, seed)
            else:
                retry.append(item)
        todo = retry
    results = []
    for item, length in zip(items, lengths, strict=True):
        image, seed = kept.get(item.index, (None, None))
        status = 'failed' if image is None else 'ok'
        reason = (_failure_reason(attempts[item.index])
                  if image is None else None)
        results.append((ItemRecord(
            item.index, item.caption, status, None, seed,
            attempts[item.index], reason=reason,
            prompt_tokens=length.tokens, prompt_truncated=length.truncated,
            prompt_used=length.used), image))
    return results


_REJECTIONS = {
    'nonfinite': 'non-finite pixels (NaN/inf; a rerun tries again)',
    'nsfw': 'flagged by the safety checker',
    'degenerate': 'near-constant image',
}


def _failure_reason(attempts: List[Attempt]) -> str:
    """``'3 attempts rejected: 2 x non-finite pixels ..., 1 x ...'``."""
    counts: Dict[str, int] = {}
    for attempt in attempts:
        counts[attempt.result] = counts.get(attempt.result, 0) + 1
    parts = ', '.join(f'{n} x {_REJECTIONS.get(result, result)}'
                      for result, n in counts.items())
    return f'{len(attempts)} attempt(s) rejected: {parts}'
