"""Synthetic image generation speed (images/s) of Stable Diffusion v1.5.

Target: mmpcm's generation settings at >= 2x the images/s of diffusers'
default pipeline call, at 512 px on one GPU.

How it is measured: the Stable Diffusion v1.5 architecture is built with
random weights (offline: UNet2DConditionModel, AutoencoderKL, CLIPTextModel
and the safety checker from SD v1.5's own configs, CLIP's real BPE
tokenizer, PNDM with SD v1.5's scheduler config), and 512 px text-to-image
generation is timed two ways:

* reference: diffusers' default pipeline call, ``pipe(prompt)`` one caption
  at a time (PNDM, 50 steps, guidance 7.5, batch 1; fp16 on a GPU, fp32 on
  the CPU), each image saved as a JPEG (quality 95);
* mmpcm: :func:`~mmpcm.preprocessing.generation.generate_images` (the code
  behind ``tools/data/generate_images.py``: batches, per-caption seeds,
  JPEGs and records) with the pipeline's scheduler replaced by
  ``--scheduler`` (DPM-Solver++, ``DPMSolverMultistepScheduler``) at
  ``--steps`` 25, adding one setting per row: batch 1, ``--batch-size`` 16,
  channels_last UNet and VAE, with ``--compile`` a compiled UNet
  (``torch.compile``, mode ``--compile-mode``), and last the images saved
  on ``--write-workers`` threads while the next batch is generated (the
  rows before it write each batch before generating the next, as mmpcm
  did before it wrote in the background). channels_last and the compiled
  UNet are applied by
  :func:`~mmpcm.preprocessing.generation.apply_speed_settings`, the code
  behind the tool's ``--channels-last`` and ``--compile-unet``. The fastest
  row is mmpcm's setting; every row prints its speed-up over the reference.

Random weights give images of noise, not pictures, but the same work per
step as the real weights. ``max_attempts=1`` and ``min_pixel_std=0`` keep
``generate_images`` from retrying the noise images. Only the pipeline's
speed is measured here (why the faster sampler keeps image quality:
docs/benchmarks.md).

``--arch tiny`` runs the same rows on the tiny random pipeline of
:mod:`mmpcm.testing.pipelines` (32 px images, milliseconds per step on a CPU), for
smoke tests.

Example (one GPU)::

    python -m benchmarks.generate_speed --compile

Example (CPU, small)::

    python -m benchmarks.generate_speed --arch tiny --num-images 32 \
        --ref-num-images 4 --threads 1
"""
import argparse
import os
import os.path as osp
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, List, Optional, Sequence, Union

import torch

from mmpcm.preprocessing.generation import (DEFAULT_COMPILE_MODE,
                                            apply_speed_settings)

from benchmarks import common

TARGET_SPEEDUP = 2.0
"""mmpcm's settings over diffusers' default call, on one GPU."""

# SD v1.5's component configs (stable-diffusion-v1-5/stable-diffusion-v1-5,
# */config.json), diffusers' and transformers' defaults left out.
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4,
    down_block_types=('CrossAttnDownBlock2D', 'CrossAttnDownBlock2D',
                      'CrossAttnDownBlock2D', 'DownBlock2D'),
    up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D',
                    'CrossAttnUpBlock2D'),
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    downsample_padding=1, mid_block_scale_factor=1, act_fn='silu',
    norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768,
    attention_head_dim=8, flip_sin_to_cos=True, freq_shift=0)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4,
    down_block_types=('DownEncoderBlock2D',) * 4,
    up_block_types=('UpDecoderBlock2D',) * 4,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    act_fn='silu', norm_num_groups=32, sample_size=512)
SD15_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072,
    num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
    hidden_act='quick_gelu', projection_dim=768, layer_norm_eps=1e-5)
SD15_SAFETY_VISION = dict(  # CLIP ViT-L/14's image tower
    hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
    num_hidden_layers=24, patch_size=14, image_size=224, projection_dim=768,
    hidden_act='quick_gelu')
SD15_SCHEDULER = dict(  # scheduler/scheduler_config.json: PNDMScheduler
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
    beta_schedule='scaled_linear', set_alpha_to_one=False,
    skip_prk_steps=True, steps_offset=1, clip_sample=False,
    trained_betas=None)
SD15_SIZE = 512
SD15_PARAMS = dict(unet=859_520_964, vae=83_653_863,
                   text_encoder=123_060_480)
"""Parameter counts of SD v1.5's components (checked by the tests)."""


# --------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------
def build_sd15_pipeline(tokenizer_dir: str, safety_checker: bool = True,
                        seed: int = 0,
                        device: Union[str, torch.device] = 'cpu') -> Any:
    """SD v1.5's pipeline, every component random.

    Args:
        tokenizer_dir (str): Where CLIP's tokenizer files are written.
        safety_checker (bool): Include SD v1.5's safety checker (CLIP
            ViT-L/14 image tower + its image processor), which the real
            pipeline runs on every image. Defaults to True.
        seed (int): Seed of the random weights. Defaults to 0.
        device (str | torch.device): Where the weights are initialised
            (seconds on a GPU instead of a minute on the CPU; ``'meta'``
            builds no weights at all). The scheduler stays on the CPU.
            Defaults to 'cpu'.

    Returns:
        diffusers.StableDiffusionPipeline: fp32, PNDM scheduler.
    """
    from diffusers import (AutoencoderKL, PNDMScheduler,
                           StableDiffusionPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    from mmpcm.testing.pipelines import write_clip_tokenizer
    tokenizer = write_clip_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    with torch.device(device):
        text_encoder = CLIPTextModel(CLIPTextConfig(
            **SD15_TEXT, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id))
        unet = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(**SD15_VAE)
        checker, processor = (_safety_checker() if safety_checker else
                              (None, None))
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
        safety_checker=checker, feature_extractor=processor,
        requires_safety_checker=safety_checker)


def _safety_checker() -> tuple:
    from diffusers.pipelines.stable_diffusion.safety_checker import \
        StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor
    config = CLIPConfig(text_config={}, vision_config=SD15_SAFETY_VISION,
                        projection_dim=768)
    return StableDiffusionSafetyChecker(config), CLIPImageProcessor()


def build_pipeline(arch: str, workdir: str, device: torch.device,
                   safety_checker: bool) -> Any:
    """The ``--arch`` pipeline on ``device`` (fp32, PNDM, no progress bar).

    ``tiny`` is :func:`~mmpcm.testing.pipelines.
    build_tiny_sd_pipeline` with SD v1.5's PNDM scheduler instead of its
    DDIM, so both architectures start from diffusers' default sampler.
    """
    from diffusers import PNDMScheduler
    tokenizer_dir = osp.join(workdir, 'clip_tokenizer')
    if arch == 'tiny':
        from mmpcm.testing.pipelines import build_tiny_sd_pipeline
        pipe = build_tiny_sd_pipeline(tokenizer_dir)
        pipe.scheduler = PNDMScheduler.from_config(SD15_SCHEDULER)
    else:
        pipe = build_sd15_pipeline(tokenizer_dir, safety_checker,
                                   device=device)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def image_size(pipe: Any) -> int:
    """The pipeline's default image side (512 for SD v1.5)."""
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def component_params(pipe: Any) -> dict:
    """Parameter count of each model of the pipeline."""
    return {name: sum(p.numel() for p in getattr(pipe, name).parameters())
            for name in ('unet', 'vae', 'text_encoder', 'safety_checker')
            if getattr(pipe, name, None) is not None}


# --------------------------------------------------------------------------
# settings of a row
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class GenSettings:
    """One measured configuration.

    Attributes:
        scheduler (str): diffusers scheduler class.
        steps (int): Denoising steps.
        batch_size (int): Captions per pipeline call.
        dtype (str): ``float16``, ``bfloat16`` or ``float32``.
        channels_last (bool): UNet and VAE in channels_last memory format.
        compile (bool): The UNet compiled (``torch.compile``).
        write_workers (int): Threads saving images while the next batch is
            generated (``GenerationConfig.write_workers``); 0 writes each
            batch before the next.
        reference (bool): diffusers' default call instead of
            ``generate_images``.
    """
    scheduler: str
    steps: int
    batch_size: int
    dtype: str
    channels_last: bool = False
    compile: bool = False
    write_workers: int = 0
    reference: bool = False

    @property
    def name(self) -> str:
        if self.reference:
            return 'reference: diffusers default call'
        parts = [f'mmpcm: {_short(self.scheduler)} {self.steps} steps, '
                 f'batch {self.batch_size}']
        if self.channels_last:
            parts.append('channels_last')
        if self.compile:
            parts.append('compiled UNet')
        if self.write_workers:
            parts.append(f'background writing ({self.write_workers} '
                         'threads)')
        return ' + '.join(parts)


def _short(scheduler: str) -> str:
    return {'DPMSolverMultistepScheduler': 'DPM-Solver++',
            'PNDMScheduler': 'PNDM'}.get(scheduler, scheduler)


def _resolve_dtype(dtype: str, device: torch.device) -> str:
    """``auto``: float16 on CUDA, float32 on the CPU (mmpcm's rule)."""
    if dtype == 'auto':
        return 'float16' if device.type == 'cuda' else 'float32'
    return dtype


def row_settings(args: argparse.Namespace,
                 device: torch.device) -> List[GenSettings]:
    """The reference, then mmpcm's settings added one at a time."""
    dtype = _resolve_dtype(args.dtype, device)
    ref = GenSettings('PNDMScheduler', 50, 1,
                      _resolve_dtype(args.ref_dtype, device), reference=True)
    base = GenSettings(args.scheduler, args.steps, 1, dtype)
    rows = [ref, base, replace(base, batch_size=args.batch_size)]
    if args.channels_last:
        rows.append(replace(rows[-1], channels_last=True))
    if args.compile:
        rows.append(replace(rows[-1], compile=True))
    if args.write_workers:
        rows.append(replace(rows[-1], write_workers=args.write_workers))
    return rows


def configure(pipe: Any, settings: GenSettings, scheduler_config: dict,
              args: argparse.Namespace) -> None:
    """Put ``pipe`` in the state ``settings`` asks for (in place).

    channels_last and the compiled UNet go through the tool's own
    ``apply_speed_settings``, which only adds settings: this works because
    :func:`row_settings` never drops one from a row to the next.
    """
    import diffusers
    dtype = getattr(torch, settings.dtype)
    if pipe.unet.dtype != dtype:  # diffusers warns on every cast
        pipe.to(dtype=dtype)
    pipe.scheduler = getattr(diffusers, settings.scheduler).from_config(
        scheduler_config)
    apply_speed_settings(pipe, channels_last=settings.channels_last,
                         compile_unet=settings.compile,
                         compile_mode=args.compile_mode,
                         compile_backend=args.compile_backend)


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------
def write_captions(path: str, count: int, seed: int) -> List[str]:
    """A caption file of ``count`` random captions (8-40 words)."""
    captions = common.random_captions(common.make_word_list(2000), count,
                                      seed=seed)
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(captions) + '\n')
    return captions


def time_reference(pipe: Any, captions: Sequence[str], warmup: int,
                   out_dir: str, device: torch.device) -> float:
    """Seconds of ``pipe(caption)`` + JPEG save for the captions after
    the first ``warmup``."""
    start = time.perf_counter()
    for i, caption in enumerate(captions):
        if i == warmup:
            common.synchronize(device)
            start = time.perf_counter()
        image = pipe(caption).images[0]
        image.save(osp.join(out_dir, f'{i:06d}.jpg'), quality=95)
    common.synchronize(device)
    return time.perf_counter() - start


def time_generate(pipe: Any, settings: GenSettings, captions_file: str,
                  out_dir: str, size: int, device: torch.device) -> float:
    """Seconds of ``generate_images`` over the caption file."""
    from mmpcm.preprocessing.generation import (GenerationConfig,
                                                generate_images)
    from mmpcm.preprocessing.sharding import RankInfo
    config = GenerationConfig(
        model='random-weights benchmark pipeline',
        scheduler=settings.scheduler, num_inference_steps=settings.steps,
        height=size, width=size, dtype=settings.dtype, max_attempts=1,
        min_pixel_std=0.0, batch_size=settings.batch_size,
        chunk_size=100_000, device=str(device),
        write_workers=settings.write_workers)
    common.synchronize(device)
    start = time.perf_counter()
    summary = generate_images(captions_file, out_dir, config,
                              rank_info=RankInfo(), progress=False,
                              pipeline=pipe)
    common.synchronize(device)
    seconds = time.perf_counter() - start
    done = summary.generated + len(summary.failed)
    assert done == summary.assigned, summary
    return seconds


def run_row(pipe: Any, settings: GenSettings, scheduler_config: dict,
            args: argparse.Namespace, size: int,
            device: torch.device) -> common.ThroughputResult:
    """Warm up, then time one row."""
    configure(pipe, settings, scheduler_config, args)
    work = tempfile.mkdtemp(prefix='generate_', dir=args.workdir)
    try:
        if settings.reference:
            count = args.ref_num_images
            captions = write_captions(osp.join(work, 'c.txt'),
                                      args.warmup + count, seed=1)
            seconds = time_reference(pipe, captions, args.warmup, work,
                                     device)
            note = 'pipe(caption).images[0].save(jpg): PNDM, 50 steps'
        else:
            batch = settings.batch_size
            count = -(-args.num_images // batch) * batch  # whole batches
            if args.warmup:
                warm = osp.join(work, 'warm.txt')
                write_captions(warm, args.warmup * batch, seed=2)
                time_generate(pipe, settings, warm, osp.join(work, 'w'),
                              size, device)
            timed = osp.join(work, 'timed.txt')
            write_captions(timed, count, seed=3)
            seconds = time_generate(pipe, settings, timed,
                                    osp.join(work, 't'), size, device)
            note = 'generate_images (JPEG q95 + records)'
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return common.ThroughputResult(
        settings.name, common.describe_device(device), settings.batch_size,
        -(-count // settings.batch_size), seconds, count, note,
        extra=dict(asdict(settings)))


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def fastest(rows: Sequence[common.ThroughputResult]
            ) -> common.ThroughputResult:
    """mmpcm's setting: the fastest row after the reference (an option
    that measures slower on a device is not part of it there)."""
    return max(rows[1:] or rows, key=lambda r: r.per_second)


def report(rows: Sequence[common.ThroughputResult], size: int) -> str:
    """The results table and the speed-up of mmpcm's setting."""
    ref = rows[0]
    headers = ['run', 'device', 'dtype', 'steps', 'batch', 'images/s',
               's/image', 'x reference',
               f'hours for {common.COCO_PAIRS:,} images', 'note']
    table = [[r.name, r.device, r.extra['dtype'], r.extra['steps'],
              r.batch_size, r.per_second, 1 / r.per_second,
              f'{r.per_second / ref.per_second:.2f}x',
              common.COCO_PAIRS / r.per_second / 3600, r.note] for r in rows]
    best = fastest(rows)
    speedup = best.per_second / ref.per_second
    verdict = 'met' if speedup >= TARGET_SPEEDUP else 'not met'
    on = (' (a GPU target, measured on a CPU)'
          if best.device.startswith('CPU') else '')
    return '\n'.join([
        common.format_table(headers, table), '',
        f'mmpcm settings ({best.name}) / reference: {speedup:.2f}x ({size} '
        f'px images); target >= {TARGET_SPEEDUP:.0f}x: {verdict}{on}'])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', choices=['sd15', 'tiny'], default='sd15',
                   help='sd15: SD v1.5, 512 px; tiny: 32 px smoke-test '
                   'pipeline')
    p.add_argument('--device', help='cuda or cpu (default: cuda if present)')
    p.add_argument('--num-images', type=int, default=32,
                   help='timed images of each mmpcm row (rounded up to '
                   'whole batches)')
    p.add_argument('--ref-num-images', type=int, default=4,
                   help='timed images of the reference')
    p.add_argument('--warmup', type=int, default=1,
                   help='untimed batches (images, for the reference) first')
    p.add_argument('--scheduler', default='DPMSolverMultistepScheduler')
    p.add_argument('--steps', type=int, default=25)
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--dtype', default='auto',
                   choices=['auto', 'float16', 'bfloat16', 'float32'],
                   help='mmpcm rows (auto: float16 on CUDA, float32 on CPU)')
    p.add_argument('--ref-dtype', default='auto',
                   choices=['auto', 'float16', 'bfloat16', 'float32'],
                   help='reference (auto: float16 on CUDA, float32 on CPU)')
    p.add_argument('--channels-last', action=argparse.BooleanOptionalAction,
                   default=True, help='add the channels_last row')
    p.add_argument('--compile', action='store_true',
                   help='add the compiled-UNet row')
    p.add_argument('--compile-mode', default=DEFAULT_COMPILE_MODE,
                   help='torch.compile mode (default: the generation '
                   f'tool\'s, {DEFAULT_COMPILE_MODE})')
    p.add_argument('--compile-backend', default='inductor')
    p.add_argument('--write-workers', type=int, default=4,
                   help='last row: images saved on this many threads while '
                   'the next batch is generated (0: no such row; the rows '
                   'before it write each batch before the next)')
    p.add_argument('--safety-checker', action=argparse.BooleanOptionalAction,
                   default=True, help='sd15: include SD v1.5\'s safety '
                   'checker (the real pipeline runs it on every image)')
    p.add_argument('--threads', type=int,
                   help='torch threads of the main process')
    p.add_argument('--workdir', default='work_dirs/benchmarks')
    p.add_argument('--json', help='also write the results here')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    device = common.start_benchmark(args.device, args.threads)
    os.makedirs(args.workdir, exist_ok=True)
    start = time.perf_counter()
    pipe = build_pipeline(args.arch, args.workdir, device,
                          args.safety_checker)
    scheduler_config = dict(pipe.scheduler.config)
    size = image_size(pipe)
    params = component_params(pipe)
    print(f'{args.arch}: random pipeline built in '
          f'{time.perf_counter() - start:.1f} s; parameters: '
          + ', '.join(f'{k} {v / 1e6:.1f} M' for k, v in params.items()))
    rows = []
    for settings in row_settings(args, device):
        rows.append(run_row(pipe, settings, scheduler_config, args, size,
                            device))
        print(f'{rows[-1].name}: {rows[-1].per_second:.3f} images/s')
    print()
    print(f'# Image generation, {args.arch} ({size} px, guidance 7.5, '
          f'random weights); {common.describe_software()}; at the end: '
          f'{common.describe_load()}')
    print(report(rows, size))
    best = fastest(rows)
    common.write_json(args.json, dict(
        args=vars(args), image_size=size, params=params,
        rows=[r.to_dict() for r in rows],
        speedup=best.per_second / rows[0].per_second,
        mmpcm_setting=best.name))


if __name__ == '__main__':
    main()
