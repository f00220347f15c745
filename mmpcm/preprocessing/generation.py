"""One synthetic image per caption with a diffusers text-to-image pipeline.

PCM-Net trains on Stable Diffusion images of the training captions (one image
per caption). :func:`generate_images` makes them, resumable and sharded over
torchrun ranks; ``tools/data/generate_images.py`` is its command line.

Input: a caption file, one caption per line (UTF-8; other encodings as
:mod:`mmpcm.utils.text_io` decodes them). Item ``i`` is line ``i + 1``;
empty, non-UTF-8 and NUL-byte lines are reported (``file:line``) and skipped,
so they leave a gap in the indices and every caption's index stays its line
number minus one. A file without any caption is refused before the pipeline
is loaded.

Prompts: the text encoder takes at most ``pipe.tokenizer.model_max_length``
tokens (77 for Stable Diffusion's CLIP, start and end tokens included) and
the pipeline cuts longer captions. Each record keeps the caption's token
count (``prompt_tokens``, by the pipeline's own tokenizer, before the cut)
and whether it was cut (``prompt_truncated``; then ``prompt_used`` holds the
caption's leading words that fit whole); the run's summary counts the cut
captions (``truncated_prompts``).

Output layout::

    <out>/generation_meta.json              # image settings; checked on rerun
    <out>/images/000000/000000000.jpg       # image of caption 0 (line 1)
    <out>/images/000000/000000001.jpg       # folder = index // chunk_size
    <out>/images/000001/000001000.jpg
    <out>/records/chunk_000000.json         # per item: seed, attempts, status

Images are JPEG quality 95 (``image_format='png'`` for lossless PNG), written
atomically (temporary file + ``os.replace``). The completion marker of an item
is its entry in ``records/chunk_XXXXXX.json``, rewritten atomically after each
batch and listing only items whose image is already in place. An image file
without a record entry (a crash between the two) is regenerated on rerun;
temporary files (``.<name>.tmp-<pid>``) are never read and the next run of
the chunk removes them.

Seeds: attempt ``a`` of item ``i`` uses :func:`item_seed` ``(seed, i, a)`` (a
hash, so items do not share noise) with its own CPU ``torch.Generator``, so a
rerun reproduces an image on any device (bit-exact for the same batch
composition and hardware). An attempt flagged by the safety checker
(``nsfw_content_detected``; SD blacks the image out) or near-constant (largest
per-channel pixel std below ``min_pixel_std``, on 0-255) or with non-finite
pixels (NaN/inf in the pipeline's float output, e.g. a float16 overflow; the
check comes before the conversion to uint8) is retried with the next
attempt's seed, up to ``max_attempts``; then the item is recorded as
``failed``, with no image and a ``reason``. Every attempt (seed, result,
pixel std) is kept in the item's record. A failed item is final (a rerun
skips it) unless one of its attempts had non-finite pixels: that is a
numerical fault, not the caption's content, so a rerun tries it again.

Sharding: chunk ``c`` belongs to rank ``c % WORLD_SIZE``, so each chunk's
image folder and record file have exactly one writer, and a rerun with another
world size only hands chunks to other ranks (finished items stay finished).
Each rank uses ``cuda:LOCAL_RANK`` when CUDA is present.

Speed-only settings (:func:`apply_speed_settings`: channels_last memory
format, a compiled UNet) change the images by kernel-level rounding at most,
like the batch size and the device: they are not recorded in
``generation_meta.json`` and not checked on rerun, so a resumed run may use
other ones.
"""
import hashlib
import json
import logging
import os
import os.path as osp
import re
from dataclasses import asdict, dataclass, field
from typing import (Any, Callable, Dict, IO, Iterator, List, NamedTuple,
                    Optional, Tuple, Union)

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from mmpcm.utils.cli import InputError
from .corpus import SkippedLine, read_text_corpus
from .sharding import (PathLike, RankInfo, atomic_write, atomic_write_json,
                       device_for_rank, get_rank_info, remove_tmp_files)

logger = logging.getLogger(__name__)

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
"""``torch.compile`` mode of ``compile_unet``. Generation runs for hours, so
autotuning's longer compilation (once per rank, plus one recompilation when
the first smaller batch makes the batch size dynamic) is a small share of a
run. CUDA graphs are left out: the UNet's batch size varies (the last batch
of every chunk, retries), each size would record its own graph and memory
pool, and at batch 16 of 512 px images the UNet's kernels are long enough
that launch overhead, what CUDA graphs save, is expected to be small. Not
measured here: ``benchmarks/generate_speed.py --compile`` times this mode."""
_CHUNK_FILE_RE = re.compile(r'^chunk_(\d{6,})\.json$')
_MAX_REPORTED_LINES = 20

__all__ = [
    'CaptionItem', 'SkippedLine', 'CaptionFile', 'read_caption_file',
    'GenerationConfig', 'Attempt', 'ItemRecord', 'GenerationSummary',
    'PipelineImage', 'PromptTokens', 'item_seed', 'pixel_std',
    'resolve_model_source', 'load_pipeline', 'prompt_tokens',
    'run_pipeline', 'save_image', 'generate_images',
    'read_generation_meta', 'load_generation_records', 'image_relpath',
    'apply_speed_settings', 'DEFAULT_MODEL', 'DEFAULT_COMPILE_MODE'
]


# --------------------------------------------------------------------------
# caption file
# --------------------------------------------------------------------------
class CaptionItem(NamedTuple):
    """One caption; ``index`` is its 0-based line number in the file."""
    index: int
    caption: str


@dataclass
class CaptionFile:
    """A caption file read by :func:`read_caption_file`.

    Args:
        path (str): The file.
        items (list[CaptionItem]): Usable captions, in line order.
        skipped (list[SkippedLine]): Empty and non-UTF-8 lines.
        num_lines (int): Lines in the file.
        sha256 (str): Hex sha256 of the file's bytes.
    """
    path: str
    items: List[CaptionItem]
    skipped: List[SkippedLine]
    num_lines: int
    sha256: str
    _lookup: Dict[int, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._lookup = dict(self.items)

    def caption_at(self, index: int) -> Optional[str]:
        """The caption of line ``index + 1`` (None for a skipped line)."""
        return self._lookup.get(index)


def read_caption_file(path: PathLike) -> CaptionFile:
    """Read a caption corpus: one caption per line.

    Bad lines do not stop it: empty lines, lines that are not UTF-8 and
    lines with a NUL byte are skipped and listed with their line numbers
    (and logged). Lines are read and cleaned as every corpus is
    (:func:`~mmpcm.preprocessing.corpus.read_text_corpus`); this adds line
    indices and the file's hash.

    Args:
        path (str | PathLike): The caption file.

    Returns:
        CaptionFile: Usable captions, indexed by 0-based line number.

    Raises:
        FileNotFoundError: If the file does not exist.
        InputError: If the file has no caption at all (empty, only blank or
            unreadable lines), or is not text in a supported encoding.
    """
    corpus = read_text_corpus(path)
    path = os.fspath(path)
    if not corpus.captions:
        raise InputError(
            path, f'no captions in it ({corpus.num_lines} line(s): '
            f'{corpus.num_empty} empty, {corpus.num_invalid} unreadable)',
            'give a text file with one caption per line')
    with open(path, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    items = [CaptionItem(n - 1, c)
             for n, c in zip(corpus.line_numbers, corpus.captions)]
    _report_skipped(corpus.skipped, corpus.num_lines)
    return CaptionFile(path, items, corpus.skipped, corpus.num_lines, digest)


def _report_skipped(skipped: List[SkippedLine], num_lines: int) -> None:
    if not skipped:
        return
    shown = '\n'.join(f'  {s}' for s in skipped[:_MAX_REPORTED_LINES])
    more = len(skipped) - _MAX_REPORTED_LINES
    tail = f'\n  ... and {more} more' if more > 0 else ''
    logger.warning(f'skipped {len(skipped)} of {num_lines} caption lines:\n'
                   f'{shown}{tail}')


# --------------------------------------------------------------------------
# settings and records
# --------------------------------------------------------------------------
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

    ``batch_size``, ``device`` and the four speed settings are not recorded
    in ``generation_meta.json``: a rerun may change them.
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

    def __post_init__(self) -> None:
        for name in ('num_inference_steps', 'height', 'width', 'max_attempts',
                     'chunk_size', 'batch_size'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or value <= 0:
                raise ValueError(f'{name} must be a positive int, got '
                                 f'{value!r}')
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
            _check_compile_mode(self.compile_mode)


class Attempt(NamedTuple):
    """One try at an item: its seed, outcome and pixel std.

    ``result`` is ``'ok'``, ``'nsfw'`` (flagged by the safety checker),
    ``'degenerate'`` (near-constant image) or ``'nonfinite'`` (NaN or inf
    pixels in the pipeline's output).
    """
    seed: int
    result: str
    pixel_std: float


@dataclass
class ItemRecord:
    """What was generated for one caption.

    Args:
        index (int): Caption index (0-based line number).
        caption (str): The caption (prompt).
        status (str): ``'ok'`` or ``'failed'``.
        file (str, optional): Image path relative to the output folder;
            None when failed.
        seed (int, optional): Seed of the kept image; None when failed.
        attempts (list[Attempt]): Every attempt, in order.
        reason (str, optional): Why the item failed (every attempt's
            rejection, counted); None when ok.
        prompt_tokens (int, optional): Tokens of the caption by the
            pipeline's tokenizer, start and end tokens included, before
            any cut; None when the pipeline has no tokenizer (or the record
            predates the field).
        prompt_truncated (bool): The caption had more tokens than the text
            encoder takes (``tokenizer.model_max_length``) and was cut: the
            image shows ``prompt_used``, not the whole caption.
        prompt_used (str, optional): When cut, the caption's leading words
            whose tokens all fit (the encoder may also have seen the first
            tokens of the next word); None otherwise.
    """
    index: int
    caption: str
    status: str
    file: Optional[str]
    seed: Optional[int]
    attempts: List[Attempt] = field(default_factory=list)
    reason: Optional[str] = None
    prompt_tokens: Optional[int] = None
    prompt_truncated: bool = False
    prompt_used: Optional[str] = None

    @property
    def retry_on_rerun(self) -> bool:
        """Whether a rerun tries this item again: it failed, and at least
        one attempt had non-finite pixels (a numerical fault)."""
        return self.status == 'failed' and any(
            a.result == 'nonfinite' for a in self.attempts)

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data['attempts'] = [a._asdict() for a in self.attempts]
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> 'ItemRecord':
        attempts = [Attempt(**a) for a in data['attempts']]
        return cls(**{**data, 'attempts': attempts})


@dataclass
class GenerationSummary:
    """What one rank did in one run.

    Args:
        assigned (int): Captions of this rank's chunks.
        already_done (int): Of those, finished by an earlier run.
        generated (int): Images written in this run.
        regenerated (int): Of those, items that needed more than one attempt.
        failed (list[int]): Indices recorded as failed in this run.
        skipped_lines (list[SkippedLine]): Unusable caption-file lines.
        truncated_prompts (int): Captions of this run (ok or failed) longer
            than the text encoder's context, cut (flagged
            ``prompt_truncated`` in their records).
        retry_on_rerun (list[int]): Of ``failed``, the indices a rerun
            tries again (non-finite pixels).
    """
    assigned: int = 0
    already_done: int = 0
    generated: int = 0
    regenerated: int = 0
    failed: List[int] = field(default_factory=list)
    skipped_lines: List[SkippedLine] = field(default_factory=list)
    truncated_prompts: int = 0
    retry_on_rerun: List[int] = field(default_factory=list)


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


def image_relpath(index: int, chunk_size: int, image_format: str) -> str:
    """``images/<chunk:06d>/<index:09d>.<ext>`` (relative to the output)."""
    return osp.join(IMAGES_DIR, f'{index // chunk_size:06d}',
                    f'{index:09d}.{image_format}')


def _chunk_file(out_dir: str, chunk: int) -> str:
    return osp.join(out_dir, RECORDS_DIR, f'chunk_{chunk:06d}.json')


# --------------------------------------------------------------------------
# pipeline
# --------------------------------------------------------------------------
def _looks_like_path(model: str) -> bool:
    """Whether ``model`` is meant as a local path rather than a hub id."""
    return (osp.isabs(model) or model.startswith(('.', '~'))
            or model.count('/') != 1 or model.endswith('/')
            or (os.sep != '/' and os.sep in model))


def resolve_model_source(model: str) -> Tuple[str, bool]:
    """Check a model argument before any work is done.

    Args:
        model (str): diffusers pipeline folder or Hugging Face Hub id
            (``owner/name``).

    Returns:
        tuple[str, bool]: The absolute folder (or the hub id) and whether it
        is a local folder.

    Raises:
        FileNotFoundError: If ``model`` is a path (absolute, relative with
            ``./``, or not of the form ``owner/name``) that does not exist,
            or a folder without ``model_index.json``.
    """
    path = osp.abspath(osp.expanduser(model))
    if osp.isdir(path):
        if not osp.isfile(osp.join(path, 'model_index.json')):
            raise FileNotFoundError(
                f'model folder {path} has no model_index.json: expected a '
                'diffusers pipeline folder (as written by save_pretrained)')
        return path, True
    if _looks_like_path(model):
        raise FileNotFoundError(
            f'model folder {path} does not exist (given as {model!r}); '
            'expected a diffusers pipeline folder with model_index.json, or '
            'a Hugging Face Hub id like '
            f'{DEFAULT_MODEL!r}')
    return model, False


def _resolve_dtype(dtype: str, device: torch.device) -> str:
    if dtype == 'auto':
        return 'float16' if device.type == 'cuda' else 'float32'
    return dtype


def _scheduler_class(name: str) -> type:
    """The diffusers scheduler class called ``name``."""
    import diffusers  # heavy: only generation needs it
    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type)
            and issubclass(cls, diffusers.SchedulerMixin)):
        known = sorted(n for n in dir(diffusers) if n.endswith('Scheduler'))
        raise ValueError(f'unknown diffusers scheduler {name!r}; known: '
                         f'{", ".join(known)}')
    return cls


def load_pipeline(model: str,
                  dtype: str = 'float32',
                  device: str = 'cpu',
                  scheduler: Optional[str] = None,
                  channels_last: bool = False,
                  compile_unet: bool = False,
                  compile_mode: Optional[str] = DEFAULT_COMPILE_MODE,
                  compile_backend: Union[str, Callable] = 'inductor') -> Any:
    """Load a text-to-image pipeline (``DiffusionPipeline.from_pretrained``).

    Args:
        model (str): Local pipeline folder or hub id
            (:func:`resolve_model_source` checks it first).
        dtype (str): ``'float16'``, ``'bfloat16'`` or ``'float32'``.
            Defaults to 'float32'.
        device (str | torch.device): Defaults to 'cpu'.
        scheduler (str, optional): Replace the scheduler by this diffusers
            scheduler class, built from the pipeline's scheduler config.
            Defaults to None.
        channels_last (bool): Put the UNet and VAE in channels_last memory
            format (:func:`apply_speed_settings`). Defaults to False.
        compile_unet (bool): Compile the UNet with ``torch.compile``
            (:func:`apply_speed_settings`). Defaults to False.
        compile_mode (str, optional): ``torch.compile`` mode; None for
            torch's default. Defaults to :data:`DEFAULT_COMPILE_MODE`.
        compile_backend (str | Callable): ``torch.compile`` backend.
            Defaults to 'inductor'.

    Returns:
        diffusers.DiffusionPipeline: The pipeline, on ``device``, with its
        progress bar off and the speed settings applied.

    Raises:
        FileNotFoundError: If the model folder is missing, or a hub id
            cannot be loaded (offline and not cached).
        ValueError: If ``channels_last`` or ``compile_unet`` is asked of a
            pipeline without a UNet, or ``compile_mode`` is unknown.
    """
    from diffusers import DiffusionPipeline  # heavy: only generation needs it
    if compile_unet:  # fail before loading
        _check_compile_mode(compile_mode)
    source, is_local = resolve_model_source(model)
    scheduler_cls = _scheduler_class(scheduler) if scheduler else None
    try:
        pipe = DiffusionPipeline.from_pretrained(
            source, dtype=getattr(torch, dtype))
    except OSError as err:
        if is_local:
            raise
        raise FileNotFoundError(
            f'{model!r} is not a local folder ({osp.abspath(model)} does not '
            'exist) and could not be loaded as a Hugging Face Hub id '
            f'(offline and not cached?): {err}') from err
    if scheduler_cls is not None:
        pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    return apply_speed_settings(pipe, channels_last, compile_unet,
                                compile_mode, compile_backend)


def _check_compile_mode(mode: Optional[str]) -> None:
    """Raise ValueError unless ``mode`` is None or a torch.compile mode."""
    if mode is None:
        return
    from torch._inductor import list_mode_options
    known = list(list_mode_options())
    if mode not in known:
        raise ValueError(f'unknown torch.compile mode {mode!r}; known: '
                         f'{", ".join(known)} (or None for torch\'s default)')


def _is_compiled(module: torch.nn.Module) -> bool:
    """Whether ``module`` is compiled in place or a ``torch.compile``
    wrapper."""
    from diffusers.utils.torch_utils import is_compiled_module
    return (getattr(module, '_compiled_call_impl', None) is not None
            or is_compiled_module(module))


def apply_speed_settings(
        pipe: Any,
        channels_last: bool = False,
        compile_unet: bool = False,
        compile_mode: Optional[str] = DEFAULT_COMPILE_MODE,
        compile_backend: Union[str, Callable] = 'inductor') -> Any:
    """Apply the speed-only settings to a UNet pipeline, in place.

    The single implementation behind :func:`load_pipeline`,
    ``tools/data/generate_images.py --channels-last --compile-unet`` and the
    rows of ``benchmarks/generate_speed.py``. Both settings keep the
    arithmetic (another memory layout, fused kernels), so images change by
    rounding at most; they are not recorded in ``generation_meta.json``.
    A setting that is False is left as the pipeline has it (nothing is
    undone), and an already compiled UNet is not compiled again, so
    applying settings twice is harmless.

    Args:
        pipe (DiffusionPipeline): A pipeline with a ``unet`` module (e.g.
            ``StableDiffusionPipeline``); its ``vae``, if any, is included
            in ``channels_last``.
        channels_last (bool): ``module.to(memory_format=torch.
            channels_last)`` on the UNet and the VAE: their 4-D (conv)
            weights become NHWC. Defaults to False.
        compile_unet (bool): Compile the UNet in place
            (``pipe.unet.compile(...)``, i.e. ``torch.compile`` of its
            call; ``pipe.unet`` stays a ``UNet2DConditionModel``, so
            ``pipe.to`` and its config work as before). Compilation happens
            at the first call and again for a new batch size. Defaults to
            False.
        compile_mode (str, optional): ``torch.compile`` mode; None for
            torch's default. Defaults to :data:`DEFAULT_COMPILE_MODE`
            ('max-autotune-no-cudagraphs').
        compile_backend (str | Callable): ``torch.compile`` backend
            (``'eager'`` only traces: for tests). Defaults to 'inductor'.

    Returns:
        DiffusionPipeline: ``pipe``.

    Raises:
        ValueError: If a setting is asked of a pipeline whose ``unet`` is
            missing or not a ``torch.nn.Module``, or ``compile_mode`` is
            unknown.
    """
    if not (channels_last or compile_unet):
        return pipe
    unet = getattr(pipe, 'unet', None)
    if not isinstance(unet, torch.nn.Module):
        asked = ' and '.join(n for n, on in (('channels_last', channels_last),
                                             ('compile_unet', compile_unet))
                             if on)
        found = ('no `unet` attribute' if not hasattr(pipe, 'unet') else
                 f'`unet` = {type(unet).__name__}')
        raise ValueError(
            f'{asked} asked of {type(pipe).__name__}, which has {found}: '
            'expected a UNet-based diffusers pipeline (such as '
            'StableDiffusionPipeline) whose `unet` is a torch.nn.Module')
    if compile_unet:
        _check_compile_mode(compile_mode)
    if channels_last:
        unet.to(memory_format=torch.channels_last)
        vae = getattr(pipe, 'vae', None)
        if isinstance(vae, torch.nn.Module):
            vae.to(memory_format=torch.channels_last)
    if compile_unet and not _is_compiled(unet):
        unet.compile(mode=compile_mode, backend=compile_backend)
    return pipe


def _describe_speed(config: GenerationConfig) -> str:
    """The speed settings of ``config`` for the log."""
    parts = ['channels_last'] if config.channels_last else []
    if config.compile_unet:
        backend = getattr(config.compile_backend, '__name__',
                          config.compile_backend)
        parts.append(f'compiled UNet (mode {config.compile_mode}, backend '
                     f'{backend})')
    return ', '.join(parts) or 'none'


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


class PromptTokens(NamedTuple):
    """A caption's length for the pipeline's text encoder.

    Attributes:
        tokens (int, optional): Tokens, start and end included, before any
            cut; None when the pipeline has no tokenizer.
        truncated (bool): More than the encoder takes: the pipeline cuts it.
        used (str, optional): When truncated, the leading words that fit
            whole; else None.
    """
    tokens: Optional[int]
    truncated: bool = False
    used: Optional[str] = None


def _token_limit(pipe: Any) -> Optional[int]:
    """``pipe.tokenizer.model_max_length`` (None without a sane one)."""
    limit = getattr(getattr(pipe, 'tokenizer', None), 'model_max_length',
                    None)
    # transformers' "no limit" is a huge int (VERY_LARGE_INTEGER)
    return limit if isinstance(limit, int) and 0 < limit < 1 << 20 else None


def prompt_tokens(pipe: Any, prompts: List[str]) -> List[PromptTokens]:
    """Token count of each prompt by the pipeline's own tokenizer, and the
    cut the pipeline makes at ``tokenizer.model_max_length``.

    Diffusers' text-to-image pipelines tokenize with ``truncation=True,
    max_length=tokenizer.model_max_length`` (77 for Stable Diffusion's
    CLIP, start and end tokens included) and warn on the log only.

    Args:
        pipe (DiffusionPipeline): The pipeline (its ``tokenizer``).
        prompts (list[str]): The captions.

    Returns:
        list[PromptTokens]: One per prompt; all ``tokens=None`` when the
        pipeline has no tokenizer with a length limit.
    """
    limit = _token_limit(pipe)
    if limit is None:
        return [PromptTokens(None) for _ in prompts]
    tokenizer = pipe.tokenizer

    def count(texts: List[str]) -> List[int]:
        ids = tokenizer(texts, truncation=False, verbose=False).input_ids
        return [len(i) for i in ids]

    lengths = []
    for prompt, n in zip(prompts, count(list(prompts)), strict=True):
        if n <= limit:
            lengths.append(PromptTokens(n))
            continue
        # Most leading words that fit: each word's tokens add up (CLIP's
        # BPE never merges across whitespace), so the count grows with k.
        words = prompt.split()
        lo, hi = 0, len(words) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count([' '.join(words[:mid])])[0] <= limit:
                lo = mid
            else:
                hi = mid - 1
        lengths.append(PromptTokens(n, True, ' '.join(words[:lo])))
    return lengths


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


def save_image(path: str, image: np.ndarray, image_format: str) -> None:
    """Write an ``(H, W, 3)`` uint8 image atomically (JPEG q95 or PNG)."""
    pil = Image.fromarray(image, mode='RGB')
    fmt = IMAGE_FORMATS[image_format]
    options = dict(quality=JPEG_QUALITY) if fmt == 'JPEG' else {}

    def write(f: IO[bytes]) -> None:
        pil.save(f, format=fmt, **options)

    atomic_write(path, write)


# --------------------------------------------------------------------------
# meta
# --------------------------------------------------------------------------
def _json_normalise(value: Any) -> Any:
    """Round-trip through JSON so recorded and current values compare."""
    return json.loads(json.dumps(value, default=str))


def _base_settings(config: GenerationConfig, model: str, dtype: str,
                   captions: CaptionFile) -> Dict[str, Any]:
    """Settings known before the pipeline is loaded."""
    return dict(
        model=model,
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        height=config.height,
        width=config.width,
        dtype=dtype,
        seed=config.seed,
        seed_rule=SEED_RULE,
        max_attempts=config.max_attempts,
        min_pixel_std=config.min_pixel_std,
        image_format=config.image_format,
        jpeg_quality=JPEG_QUALITY if config.image_format == 'jpg' else None,
        chunk_size=config.chunk_size,
        captions_sha256=captions.sha256,
        captions_num_lines=captions.num_lines)


def _pipeline_settings(pipe: Any) -> Dict[str, Any]:
    """Settings read from the loaded pipeline."""
    scheduler_config = {
        k: v
        for k, v in dict(pipe.scheduler.config).items()
        if not k.startswith('_')
    }
    return dict(
        pipeline_class=type(pipe).__name__,
        scheduler=type(pipe.scheduler).__name__,
        scheduler_config=scheduler_config)


def _versions() -> Dict[str, str]:
    import diffusers  # heavy: only generation needs it
    import transformers
    return dict(diffusers=diffusers.__version__, torch=torch.__version__,
                transformers=transformers.__version__)


def read_generation_meta(out_dir: PathLike) -> Dict[str, Any]:
    """Read ``<out>/generation_meta.json``.

    Raises:
        FileNotFoundError: If it does not exist.
        ValueError: If it is not a generation meta file.
    """
    path = osp.join(os.fspath(out_dir), META_FILE)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} not found: expected the output folder of '
            'tools/data/generate_images.py')
    with open(path, encoding='utf-8') as f:
        try:
            meta = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f'{path}: not valid JSON ({err})') from None
    if not isinstance(meta, dict) or meta.get('format') != META_FORMAT:
        raise ValueError(f'{path}: not a {META_FORMAT!r} meta file')
    return meta


def _check_settings(path: str, recorded: Dict[str, Any],
                    current: Dict[str, Any]) -> None:
    """Raise if any current setting differs from the recorded one."""
    current = _json_normalise(current)
    diff = [(k, recorded.get(k), v) for k, v in current.items()
            if recorded.get(k) != v]
    if diff:
        lines = '\n'.join(f'  {k}: recorded {a!r}, now {b!r}'
                          for k, a, b in diff)
        raise ValueError(
            f'{path}: this folder was generated with other settings:\n{lines}'
            '\nUse a new output folder (or the recorded settings to resume); '
            'mixing settings in one data set is refused.')


def _write_or_check_meta(out_dir: str, settings: Dict[str, Any],
                         captions_file: str) -> None:
    """Record the settings, or check them against an earlier run's."""
    path = osp.join(out_dir, META_FILE)
    versions = _versions()
    if osp.isfile(path):
        meta = read_generation_meta(out_dir)
        _check_settings(path, meta['settings'], settings)
        if meta.get('versions') != versions:
            logger.warning(f'{path}: recorded versions {meta.get("versions")}'
                           f' differ from the running ones {versions}')
        return
    atomic_write_json(path, dict(
        format=META_FORMAT, version=FORMAT_VERSION,
        settings=_json_normalise(settings), captions_file=captions_file,
        versions=versions))


# --------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------
def _read_chunk_records(path: str, chunk: int) -> Dict[int, ItemRecord]:
    """Read one chunk's record file (an empty dict when there is none)."""
    if not osp.isfile(path):
        return {}
    with open(path, encoding='utf-8') as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f'{path}: not valid JSON ({err})') from None
    if data.get('format') != RECORDS_FORMAT or data.get('chunk') != chunk:
        raise ValueError(f'{path}: not the {RECORDS_FORMAT!r} file of chunk '
                         f'{chunk}')
    records = [ItemRecord.from_dict(item) for item in data['items']]
    return {r.index: r for r in records}


def _write_chunk_records(path: str, chunk: int,
                         records: Dict[int, ItemRecord]) -> None:
    items = [records[i].to_dict() for i in sorted(records)]
    atomic_write_json(path, dict(format=RECORDS_FORMAT,
                                 version=FORMAT_VERSION, chunk=chunk,
                                 items=items))


def load_generation_records(out_dir: PathLike) -> Dict[int, ItemRecord]:
    """Every finished item of a generation output folder, by caption index.

    Args:
        out_dir (str | PathLike): The output folder of :func:`generate_images`.

    Returns:
        dict[int, ItemRecord]: Items with status ``'ok'`` or ``'failed'``.

    Raises:
        FileNotFoundError: If the folder has no generation meta.
        ValueError: If a record file is damaged.
    """
    out_dir = os.fspath(out_dir)
    read_generation_meta(out_dir)
    folder = osp.join(out_dir, RECORDS_DIR)
    records: Dict[int, ItemRecord] = {}
    names = sorted(os.listdir(folder)) if osp.isdir(folder) else []
    for name in names:
        match = _CHUNK_FILE_RE.match(name)
        if match:
            records.update(
                _read_chunk_records(osp.join(folder, name),
                                    int(match.group(1))))
    return records


# --------------------------------------------------------------------------
# generation loop
# --------------------------------------------------------------------------
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


def _generate_batch(
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


def _batches(items: List[CaptionItem], size: int) -> Iterator[List[
        CaptionItem]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _ChunkWriter:
    """Writes one chunk's images and keeps its record file up to date."""

    def __init__(self, out_dir: str, chunk: int,
                 config: GenerationConfig) -> None:
        self.out_dir, self.chunk, self.config = out_dir, chunk, config
        self.records_path = _chunk_file(out_dir, chunk)
        self.records = _read_chunk_records(self.records_path, chunk)
        os.makedirs(osp.dirname(self.records_path), exist_ok=True)
        self.image_dir = osp.join(out_dir, IMAGES_DIR, f'{chunk:06d}')
        os.makedirs(self.image_dir, exist_ok=True)
        removed = remove_tmp_files(self.image_dir)
        if removed:
            logger.info(f'removed {removed} unfinished temporary file(s) in '
                        f'{self.image_dir}')

    def add(self, results: List[Tuple[ItemRecord,
                                      Optional[np.ndarray]]]) -> None:
        """Save the images, then list the batch in the record file."""
        for record, image in results:
            if image is not None:
                record.file = image_relpath(record.index,
                                            self.config.chunk_size,
                                            self.config.image_format)
                save_image(osp.join(self.out_dir, record.file), image,
                           self.config.image_format)
        for record, _ in results:
            self.records[record.index] = record
        _write_chunk_records(self.records_path, self.chunk, self.records)


def _rank_items(captions: CaptionFile, chunk_size: int,
                info: RankInfo) -> List[CaptionItem]:
    """Captions of the chunks this rank owns (``chunk % world == rank``)."""
    return [
        it for it in captions.items
        if (it.index // chunk_size) % info.world_size == info.rank
    ]


def _done_indices(out_dir: str, items: List[CaptionItem],
                  chunk_size: int) -> set:
    """Indices with a final record (ok, or failed for its content)."""
    chunks = sorted({it.index // chunk_size for it in items})
    done = set()
    for chunk in chunks:
        records = _read_chunk_records(_chunk_file(out_dir, chunk), chunk)
        done.update(i for i, r in records.items() if not r.retry_on_rerun)
    return done


def generate_images(captions_file: PathLike,
                    out_dir: PathLike,
                    config: GenerationConfig = GenerationConfig(),
                    rank_info: Optional[RankInfo] = None,
                    progress: bool = True,
                    pipeline: Optional[Any] = None) -> GenerationSummary:
    """Generate one image per caption (this rank's share), resumably.

    Args:
        captions_file (str | PathLike): One caption per line.
        out_dir (str | PathLike): Output folder (layout in the module doc).
        config (GenerationConfig): Model and sampling settings. Defaults to
            ``GenerationConfig()`` (SD v1.5, 50 steps, guidance 7.5, 512 px).
        rank_info (RankInfo, optional): Defaults to the torchrun environment
            (:func:`~mmpcm.preprocessing.sharding.get_rank_info`).
        progress (bool): Show a tqdm progress bar. Defaults to True.
        pipeline (Any, optional): An already built text-to-image pipeline
            with diffusers' call interface, used instead of loading
            ``config.model`` (which then only names it in the metadata).
            The speed settings of ``config`` are applied to it in place
            (:func:`apply_speed_settings`; nothing when they are off).
            Defaults to None.

    Returns:
        GenerationSummary: Counts of this rank's run, the cut prompts
        included (``truncated_prompts``; also logged).

    Raises:
        FileNotFoundError: If the model folder or caption file is missing
            (before anything is written).
        InputError: If the caption file has no caption, or is not text
            (before the pipeline is loaded and anything is written).
        ValueError: If ``out_dir`` holds images generated with other
            settings or another caption file (speed settings, batch size
            and device may differ), or a speed setting is asked of a
            pipeline without a UNet.
    """
    out_dir = os.fspath(out_dir)
    model = (config.model if pipeline is not None else
             resolve_model_source(config.model)[0])
    captions = read_caption_file(captions_file)
    info = rank_info or get_rank_info()
    device = device_for_rank(info, config.device)
    dtype = _resolve_dtype(config.dtype, device)
    settings = _base_settings(config, model, dtype, captions)
    if osp.isfile(osp.join(out_dir, META_FILE)):  # fail before loading
        _check_settings(osp.join(out_dir, META_FILE),
                        read_generation_meta(out_dir)['settings'], settings)
    items = _rank_items(captions, config.chunk_size, info)
    done = _done_indices(out_dir, items, config.chunk_size)
    pending = [it for it in items if it.index not in done]
    summary = GenerationSummary(assigned=len(items),
                                already_done=len(items) - len(pending),
                                skipped_lines=captions.skipped)
    speed = dict(channels_last=config.channels_last,
                 compile_unet=config.compile_unet,
                 compile_mode=config.compile_mode,
                 compile_backend=config.compile_backend)
    if pipeline is not None:
        pipe = apply_speed_settings(pipeline, **speed)
    else:
        pipe = load_pipeline(model, dtype, device, config.scheduler, **speed)
    os.makedirs(out_dir, exist_ok=True)
    _write_or_check_meta(out_dir, {**settings, **_pipeline_settings(pipe)},
                         os.fspath(captions_file))
    logger.info(f'rank {info.rank}/{info.world_size} on {device}: '
                f'{len(items)} captions, {summary.already_done} already done, '
                f'{len(pending)} to generate; speed settings: '
                f'{_describe_speed(config)}')
    _run(pipe, pending, out_dir, config, summary,
         tqdm(total=len(pending), unit='img', disable=not progress,
              desc=f'generate [rank {info.rank}/{info.world_size}]'))
    if summary.truncated_prompts:
        logger.warning(
            f'{summary.truncated_prompts} caption(s) were longer than the '
            f'text encoder\'s context ({_token_limit(pipe)} tokens) and were '
            'truncated: their images show only the leading words (flagged '
            'prompt_truncated in their records, with prompt_tokens and '
            'prompt_used)')
    if summary.retry_on_rerun:
        logger.warning(
            f'{len(summary.retry_on_rerun)} caption(s) gave non-finite pixels '
            '(NaN/inf) in every attempt and were recorded as failed; a rerun '
            'tries them again (if float16 overflows, generate into a new '
            'folder with --dtype float32 or bfloat16)')
    return summary


def _run(pipe: Any, pending: List[CaptionItem], out_dir: str,
         config: GenerationConfig, summary: GenerationSummary,
         bar: tqdm) -> None:
    """Generate ``pending`` chunk by chunk, updating ``summary``."""
    by_chunk: Dict[int, List[CaptionItem]] = {}
    for item in pending:
        by_chunk.setdefault(item.index // config.chunk_size, []).append(item)
    with bar:
        for chunk, chunk_items in by_chunk.items():
            writer = _ChunkWriter(out_dir, chunk, config)
            for batch in _batches(chunk_items, config.batch_size):
                results = _generate_batch(pipe, batch, config)
                writer.add(results)
                _count(results, summary)
                bar.update(len(batch))
                bar.set_postfix(retried=summary.regenerated,
                                failed=len(summary.failed))


def _count(results: List[Tuple[ItemRecord, Optional[np.ndarray]]],
           summary: GenerationSummary) -> None:
    for record, _ in results:
        summary.truncated_prompts += record.prompt_truncated
        if record.status == 'failed':
            summary.failed.append(record.index)
            if record.retry_on_rerun:
                summary.retry_on_rerun.append(record.index)
            logger.warning(
                f'caption {record.index} (line {record.index + 1}) failed, '
                f'{record.reason}: {record.caption!r}')
            continue
        summary.generated += 1
        summary.regenerated += len(record.attempts) > 1
