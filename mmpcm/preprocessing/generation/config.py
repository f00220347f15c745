"""Generation settings: :class:`GenerationConfig` and the format constants.

The output folder these settings describe is documented in
``docs/generation_format.md``.
"""
from dataclasses import dataclass
from typing import Callable, Optional, Union

__all__ = [
    'GenerationConfig', 'check_compile_mode', 'DEFAULT_MODEL',
    'DEFAULT_COMPILE_MODE', 'META_FILE', 'IMAGES_DIR', 'RECORDS_DIR',
    'META_FORMAT', 'RECORDS_FORMAT', 'FORMAT_VERSION', 'JPEG_QUALITY',
    'IMAGE_FORMATS', 'DTYPES', 'SEED_RULE'
]

DEFAULT_MODEL = 'stable-diffusion-v1-5/stable-diffusion-v1-5'
META_FILE = 'generation_meta.json'
IMAGES_DIR = 'images'
RECORDS_DIR = 'records'
META_FORMAT = 'mmpcm-synthetic-images'
RECORDS_FORMAT = 'mmpcm-generation-records'
FORMAT_VERSION = 1
JPEG_QUALITY = 95
IMAGE_FORMATS = {'jpg': 'JPEG', 'png': 'PNG'}
DTYPES = ('auto', 'float16', 'bfloat16', 'float32')
SEED_RULE = ('sha256("mmpcm-gen:{seed}:{index}:{attempt}")[:8] as little-'
             'endian uint64 >> 1; torch.Generator("cpu").manual_seed')
DEFAULT_COMPILE_MODE = 'max-autotune-no-cudagraphs'
"""``torch.compile`` mode of ``compile_unet``: autotuned kernels, no CUDA
graphs (docs/generation_format.md, "Speed settings")."""


@dataclass(frozen=True)
class GenerationConfig:
    """How to generate.

    Args:
        model (str): diffusers pipeline folder (``save_pretrained`` output)
            or Hugging Face Hub id. Defaults to Stable Diffusion v1.5.
        scheduler (str, optional): Name of a diffusers scheduler class (e.g.
            ``'DPMSolverMultistepScheduler'``), built from the pipeline's
            scheduler config. Defaults to None (the pipeline's own).
        num_inference_steps (int): Denoising steps. Defaults to 50.
        guidance_scale (float): Classifier-free guidance. Defaults to 7.5.
        height (int): Image height in pixels. Defaults to 512.
        width (int): Image width in pixels. Defaults to 512.
        dtype (str): ``'auto'`` (float16 on CUDA, float32 on CPU),
            ``'float16'``, ``'bfloat16'`` or ``'float32'``. Defaults to
            'auto'.
        seed (int): Base seed, see :func:`item_seed`. Defaults to 0.
        max_attempts (int): Attempts per caption before it is recorded as
            failed. Defaults to 3.
        min_pixel_std (float): An image whose largest per-channel pixel std
            (0-255) is below this is degenerate and retried. Defaults to 2.0.
        image_format (str): ``'jpg'`` (quality 95) or ``'png'``.
            Defaults to 'jpg'.
        chunk_size (int): Captions per image folder and record file (the
            unit of work of a rank). Defaults to 1000.
        batch_size (int): Prompts per pipeline call. Defaults to 8.
        device (str, optional): Device; defaults to None (``cuda:LOCAL_RANK``
            when CUDA is present, else CPU).
        channels_last (bool): Put the UNet and VAE in channels_last memory
            format (speed only, see :func:`apply_speed_settings`).
            Defaults to False.
        compile_unet (bool): Compile the UNet with ``torch.compile`` (speed
            only). Defaults to False.
        compile_mode (str, optional): ``torch.compile`` mode of
            ``compile_unet``; None for torch's default. Defaults to
            :data:`DEFAULT_COMPILE_MODE` ('max-autotune-no-cudagraphs').
        compile_backend (str | Callable): ``torch.compile`` backend of
            ``compile_unet``. Defaults to 'inductor'.
        write_workers (int): Threads that encode and save a batch's images
            while the next batch is generated (its records follow on one
            more thread); 0 writes each batch before the next is
            generated. Defaults to 4.

    ``batch_size``, ``device``, the four speed settings and
    ``write_workers`` are not recorded in ``generation_meta.json``: a
    rerun may change them.
    """
    model: str = DEFAULT_MODEL
    scheduler: Optional[str] = None
    num_inference_steps: int = 50
    guidance_scale: float = 7.5
    height: int = 512
    width: int = 512
    dtype: str = 'auto'
    seed: int = 0
    max_attempts: int = 3
    min_pixel_std: float = 2.0
    image_format: str = 'jpg'
    chunk_size: int = 1000
    batch_size: int = 8
    device: Optional[str] = None
    channels_last: bool = False
    compile_unet: bool = False
    compile_mode: Optional[str] = DEFAULT_COMPILE_MODE
    compile_backend: Union[str, Callable] = 'inductor'
    write_workers: int = 4

    def __post_init__(self) -> None:
        for name in ('num_inference_steps', 'height', 'width', 'max_attempts',
                     'chunk_size', 'batch_size'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or value <= 0:
                raise ValueError(f'{name} must be a positive int, got '
                                 f'{value!r}')
        if isinstance(self.write_workers, bool) or not isinstance(
                self.write_workers, int) or self.write_workers < 0:
            raise ValueError('write_workers must be an int >= 0, got '
                             f'{self.write_workers!r}')
        if self.dtype not in DTYPES:
            raise ValueError(f'dtype must be one of {DTYPES}, got '
                             f'{self.dtype!r}')
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f'image_format must be one of '
                             f'{sorted(IMAGE_FORMATS)}, got '
                             f'{self.image_format!r}')
        if self.min_pixel_std < 0:
            raise ValueError('min_pixel_std must be >= 0, got '
                             f'{self.min_pixel_std!r}')
        if self.compile_unet:  # fail before the pipeline is loaded
            check_compile_mode(self.compile_mode)


def check_compile_mode(mode: Optional[str]) -> None:
    """Raise ValueError unless ``mode`` is None or a torch.compile mode."""
    if mode is None:
        return
    from torch._inductor import list_mode_options
    known = list(list_mode_options())
    if mode not in known:
        raise ValueError(f'unknown torch.compile mode {mode!r}; known: '
                         f'{", ".join(known)} (or None for torch\'s default)')

