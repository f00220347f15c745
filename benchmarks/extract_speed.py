"""CLIP feature extraction speed (images/s) from 512 px JPEG files.

Target: CLIP ViT-B/32 extraction at >= 2,000 images/s on one H100/H200,
JPEG decoding included (the end-to-end rows' steady state).

How it is measured: mmpcm's extraction path the way
``tools/data/extract_features.py`` runs it: JPEG files decoded and resized
in DataLoader workers (PIL, open_clip's eval transform), the frozen CLIP
image encoder (:class:`~mmpcm.preprocessing.extraction.CLIPFeatureExtractor`,
random weights of the real architecture: open_clip ``create_model(name,
pretrained=None)``), float16 features written into a temporary feature store
(:func:`~mmpcm.preprocessing.extraction.extract_features`). Images are
SD-like: ``--num-images`` 512x512 JPEGs (quality 95, as
``tools/data/generate_images.py`` writes them) of smooth colour fields,
shapes and mild noise, written into ``--workdir`` once and reused.

Rows per ``--model``, so the bottleneck is visible:

* decode only: a DataLoader (``--workers``, each count of the list) doing
  the extraction loader's work alone, no model:
  :func:`~mmpcm.datasets.transforms.load_image` and the extractor's
  transform;
* model only: ``encode_images`` on an already decoded batch (host to device,
  CLIP, features back to the host);
* end to end: ``extract_features`` into a temporary store, with the largest
  worker count (steady state: after the first batch; and the whole call,
  worker start-up and store merge included);
* with ``--gpu-decode``: ``extract_features`` with ``decode='device'``
  (the tool's ``--decode device``): the workers only read the files' bytes,
  the JPEGs are decoded on the device (``torchvision.io.decode_jpeg(
  device=...)``, nvJPEG on CUDA), resized and cropped there
  (:func:`~mmpcm.preprocessing.extraction.device_preprocess`), encoded and
  written to a store; and a loader that only reads the files' bytes. The
  pixel difference to the PIL path is printed with it.

Example (one GPU)::

    python -m benchmarks.extract_speed --num-images 8192 --batch-size 256 \
        --workers 8 15 --gpu-decode

Example (CPU, small)::

    python -m benchmarks.extract_speed --model vit-b32 --num-images 64 \
        --batch-size 16 --workers 1 --threads 1
"""
import argparse
import contextlib
import inspect
import os
import os.path as osp
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import torch

from mmpcm.utils.fileio import atomic_write

from benchmarks import common

IMAGE_SIZE = 512
JPEG_QUALITY = 95  # as mmpcm.preprocessing.generation writes images
TARGET_IMAGES_PER_S = {'vit-b32': 2_000}
"""Targets on one H100/H200, by ``--model``."""


# --------------------------------------------------------------------------
# input images
# --------------------------------------------------------------------------
def synthetic_image(index: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """An SD-like ``(size, size, 3)`` uint8 image, seeded by ``index``.

    A smooth colour field (an upsampled 8x8 random image), 4-11 filled
    shapes and Gaussian noise of std 4: JPEG files of a size close to real
    512 px generated images (a few tens of KB at quality 95), where pure
    noise would give files several times larger and slower to decode.
    """
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(index)
    field_ = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(field_).resize((size, size), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 16, size // 2, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = [int(x0), int(y0), int(x0 + w), int(y0 + h)]
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    noisy = np.asarray(img, dtype=np.float32) + rng.normal(
        0, 4, (size, size, 3)).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _write_jpeg(job: tuple) -> None:
    """Write image ``index`` to ``path`` (atomically: reused files are
    whole)."""
    from PIL import Image
    path, index = job
    image = Image.fromarray(synthetic_image(index))
    atomic_write(path, lambda f: image.save(f, format='JPEG',
                                            quality=JPEG_QUALITY))


def prepare_images(folder: str, count: int, processes: int = 1,
                   log: Callable[[str], None] = print) -> List:
    """Write the missing JPEGs ``img_0000000.jpg`` ... and list them.

    Args:
        folder (str): Image folder (created); files already there are
            reused (image ``i`` is always the same picture).
        count (int): Images wanted.
        processes (int): Writer processes. Defaults to 1.
        log (Callable): Progress printer. Defaults to print.

    Returns:
        list[ExtractionItem]: The first ``count`` images, as
        :func:`~mmpcm.preprocessing.extraction.items_from_folder` lists
        the folder.
    """
    from mmpcm.preprocessing.extraction import items_from_folder
    os.makedirs(folder, exist_ok=True)
    todo = [(osp.join(folder, f'img_{i:07d}.jpg'), i) for i in range(count)
            if not osp.isfile(osp.join(folder, f'img_{i:07d}.jpg'))]
    if todo:
        start = time.perf_counter()
        if processes > 1 and len(todo) > 64:
            with ProcessPoolExecutor(processes) as pool:
                list(pool.map(_write_jpeg, todo, chunksize=32))
        else:
            for job in todo:
                _write_jpeg(job)
        log(f'wrote {len(todo):,} JPEGs ({IMAGE_SIZE} px, quality '
            f'{JPEG_QUALITY}) into {folder} in '
            f'{time.perf_counter() - start:.1f} s')
    return items_from_folder(folder)[:count]


def mean_file_kb(items: Sequence) -> float:
    """Mean size of the items' files in KB."""
    return sum(osp.getsize(it.path) for it in items) / 1e3 / max(len(items),
                                                                 1)


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------
def clip_spec(shape: common.ClipShape, layers: Optional[int] = None):
    """The :class:`CLIPSpec` of ``shape``'s model with random weights.

    Args:
        shape (ClipShape): ViT-B/32 or ViT-L/14 and its patch count.
        layers (int, optional): Cut both towers to this many transformer
            layers (widths, patch size and image size unchanged; for smoke
            tests). Defaults to None (the real model).
    """
    import open_clip
    from mmpcm.preprocessing.extraction import CLIPSpec
    cfg = open_clip.get_model_config(shape.model)
    vision = cfg['vision_cfg']
    grid = vision['image_size'] // vision['patch_size']
    pool = grid // int(round(shape.num_patches ** 0.5))
    if layers is None:
        return CLIPSpec(model_name=shape.model, patch_pool=pool)
    cfg = deepcopy(cfg)
    cfg['vision_cfg']['layers'] = cfg['text_cfg']['layers'] = layers
    return CLIPSpec(model_name=shape.model, model_cfg=cfg, patch_pool=pool)


def build_extractor(spec, device: torch.device, amp: bool):
    """A :class:`CLIPFeatureExtractor` (float16 autocast on CUDA if
    ``amp``)."""
    from mmpcm.preprocessing.extraction import CLIPFeatureExtractor
    return CLIPFeatureExtractor(spec, device, amp=amp)


@contextlib.contextmanager
def reuse_extractor(extractor) -> Iterator[None]:
    """Make ``extract_features`` use ``extractor`` instead of building one.

    The model is built (random init) once per ``--model``, outside the
    timings; ``extract_features`` looks ``CLIPFeatureExtractor`` up in the
    module that defines it at call time, where it is swapped for the body.
    """
    from mmpcm.preprocessing.extraction import extract_features
    module = inspect.getmodule(extract_features)
    original = module.CLIPFeatureExtractor
    module.CLIPFeatureExtractor = lambda *a, **k: extractor
    try:
        yield
    finally:
        module.CLIPFeatureExtractor = original


class CallLog:
    """Records start, end and batch size of every call of ``obj.name``.

    Args:
        obj (object): The instance whose method is logged.
        name (str): Method name.
        device (torch.device): Synchronised at the end of each call.
    """

    def __init__(self, obj: object, name: str, device: torch.device) -> None:
        self.calls: List[tuple] = []
        self._obj, self._name = obj, name
        original = getattr(obj, name)

        def logged(images, *args, **kwargs):
            start = time.perf_counter()
            out = original(images, *args, **kwargs)
            common.synchronize(device)
            self.calls.append((start, time.perf_counter(), len(images)))
            return out

        setattr(obj, name, logged)

    def restore(self) -> None:
        """Put the original method back."""
        delattr(self._obj, self._name)

    def steady_rate(self) -> float:
        """Images/s from the end of the first call to the end of the last."""
        if len(self.calls) < 2:
            return float('nan')
        seconds = self.calls[-1][1] - self.calls[0][1]
        return sum(c[2] for c in self.calls[1:]) / seconds

    def busy_seconds(self) -> float:
        return sum(end - start for start, end, _ in self.calls)


# --------------------------------------------------------------------------
# the measurements
# --------------------------------------------------------------------------
@dataclass
class ModelOutcome:
    """Every row of one CLIP model.

    Attributes:
        model (str): ``--model`` key.
        rows (list[ThroughputResult]): Decode-only rows (one per worker
            count), model only, end to end (and the GPU-decode rows).
        pixel_diff (float, optional): Mean absolute difference (0-255)
            between the device-decoded and the PIL-decoded inputs.
    """
    model: str
    rows: List[common.ThroughputResult] = field(default_factory=list)
    pixel_diff: Optional[float] = None

    def row(self, prefix: str) -> Optional[common.ThroughputResult]:
        """The first row whose name starts with ``prefix``."""
        return next((r for r in self.rows if r.name.startswith(prefix)),
                    None)


class DecodedImages(torch.utils.data.Dataset):
    """The PIL path's work per image, in DataLoader workers: mmpcm's image
    loader, then CLIP's host transform (a ``(3, S, S)`` uint8 tensor)."""

    def __init__(self, items: Sequence, transform: Callable) -> None:
        self.paths = [it.path for it in items]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from mmpcm.datasets.transforms import load_image
        return self.transform(load_image(self.paths[i]))


class FileBytes(torch.utils.data.Dataset):
    """The files' bytes only (as NumPy reads them: ``torchvision.io``'s
    tensors cannot leave a worker), packed one batch per tensor."""

    def __init__(self, items: Sequence) -> None:
        self.paths = [it.path for it in items]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.fromfile(self.paths[i], dtype=np.uint8))

    @staticmethod
    def collate(batch: List[torch.Tensor]) -> tuple:
        """``(all bytes back to back, sizes)``."""
        return torch.cat(batch), [len(b) for b in batch]


def _loader(dataset, collate: Optional[Callable], batch_size: int,
            workers: int, pin: bool):
    from torch.utils.data import DataLoader
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                      collate_fn=collate, pin_memory=pin,
                      persistent_workers=False)


def time_batches(batches: Iterator, warmup: int,
                 count: Callable[[object], int],
                 step: Callable[[object], None] = lambda b: None) -> tuple:
    """Run ``step`` on every batch; time all but the first ``warmup``.

    Returns:
        tuple: ``(timed batches, items in them, seconds)``.
    """
    iters = items = 0
    start = time.perf_counter()
    for i, batch in enumerate(batches):
        step(batch)
        if i + 1 == warmup:  # the clock starts once warm-up is over
            start = time.perf_counter()
        elif i + 1 > warmup:
            iters, items = iters + 1, items + count(batch)
    return iters, items, time.perf_counter() - start


def decode_only(items: Sequence, transform: Callable, args, workers: int,
                device: torch.device) -> common.ThroughputResult:
    """The extraction loader's work alone: PIL decode + resize + crop."""
    loader = _loader(DecodedImages(items, transform), None, args.batch_size,
                     workers, device.type == 'cuda')
    iters, n, seconds = time_batches(iter(loader), args.warmup_batches, len)
    return common.ThroughputResult(
        f'decode only, {workers} workers', common.describe_device(
            torch.device('cpu')), args.batch_size, iters, seconds, n,
        'PIL decode, open_clip resize + crop (DataLoader, no model)')


def model_only(extractor, args, device: torch.device
               ) -> common.ThroughputResult:
    """``encode_images`` on one decoded batch, ``--model-iters`` times."""
    size = extractor.backbone.image_size
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch_size, 3, size, size),
                           dtype=torch.uint8, generator=gen)
    if device.type == 'cuda':
        images = images.pin_memory()
    batches = [images] * (args.warmup_batches + args.model_iters)
    iters, n, seconds = time_batches(iter(batches), args.warmup_batches,
                                     len, extractor.encode_images)
    return common.ThroughputResult(
        'model only', common.describe_device(device), args.batch_size, iters,
        seconds, n, f'encode_images: to device, CLIP, features to host; '
        f'{_amp_name(args)}')


def end_to_end(items: Sequence, spec, extractor, args, workers: int,
               device: torch.device,
               decode: str = 'cpu') -> common.ThroughputResult:
    """``extract_features`` of every item into a temporary store.

    Args:
        items (Sequence[ExtractionItem]): The JPEGs.
        spec (CLIPSpec): The model (for the store's settings).
        extractor (CLIPFeatureExtractor): The model, built once.
        args (argparse.Namespace): The command line.
        workers (int): DataLoader workers.
        device (torch.device): Where CLIP runs.
        decode (str): ``ExtractionConfig.decode``: ``'cpu'`` (PIL in the
            workers) or ``'device'``. Defaults to 'cpu'.

    Returns:
        ThroughputResult: The row.
    """
    from mmpcm.preprocessing.extraction import (ExtractionConfig,
                                                extract_features)
    from mmpcm.preprocessing.sharding import RankInfo
    config = ExtractionConfig(batch_size=args.batch_size, num_workers=workers,
                              device=str(device), amp=args.amp is not None,
                              decode=decode)
    out = tempfile.mkdtemp(prefix='extract_', dir=args.workdir)
    log = CallLog(extractor, 'encode_images', device)
    try:
        with reuse_extractor(extractor):
            start = time.perf_counter()
            summary = extract_features(items, out, spec, config,
                                       source='benchmark',
                                       rank_info=RankInfo(), progress=False)
            seconds = time.perf_counter() - start
    finally:
        log.restore()
        shutil.rmtree(out, ignore_errors=True)
    assert summary.extracted == len(items), summary
    if decode == 'cpu':
        name = f'end to end: extract_features, {workers} workers'
        note = 'store written'
    else:
        decoder = 'nvJPEG' if device.type == 'cuda' else 'torchvision'
        name = (f'end to end: {decoder} decode on {device.type} '
                f'(extract_features --decode device), {workers} workers')
        note = 'decode + resize on the device, store written'
    return common.ThroughputResult(
        name, common.describe_device(device), args.batch_size,
        max(len(log.calls) - 1, 0), seconds, len(items),
        f'{note}; steady state after the first batch; {_amp_name(args)}',
        extra=dict(steady_per_second=log.steady_rate(),
                   whole_call_per_second=len(items) / seconds,
                   model_share=log.busy_seconds() / seconds))


# --------------------------------------------------------------------------
# decoding on the device
# --------------------------------------------------------------------------
def device_size(extractor) -> int:
    """CLIP's input side, if the device path copies this model's transform.

    Raises:
        SystemExit: If it does not (see
            :func:`~mmpcm.preprocessing.extraction.device_transform_size`).
    """
    from mmpcm.preprocessing.extraction import device_transform_size
    try:
        return device_transform_size(extractor.transform)
    except ValueError as err:
        raise SystemExit(f'--gpu-decode: {err}') from None


def pixel_difference(items: Sequence, extractor, device: torch.device,
                     count: int = 32) -> float:
    """Mean |device path - PIL path| (0-255) over the first ``count`` images.

    Args:
        items (Sequence[ExtractionItem]): The JPEGs.
        extractor (CLIPFeatureExtractor): Its PIL transform is the
            reference.
        device (torch.device): Where to decode and resize.
        count (int): Images compared. Defaults to 32.

    Returns:
        float: The mean absolute difference of the uint8 inputs.
    """
    from mmpcm.preprocessing.extraction import device_preprocess
    few = list(items[:count])
    pil = torch.stack([DecodedImages(few, extractor.transform)[i]
                       for i in range(len(few))])  # (B, 3, S, S)
    data = [torch.from_numpy(np.fromfile(it.path, dtype=np.uint8))
            for it in few]  # B x (num_bytes, )
    dev = device_preprocess(data, device_size(extractor),
                            device)  # (B, 3, S, S)
    return (dev.cpu().float() - pil.float()).abs().mean().item()


def read_only(items: Sequence, args,
              workers: int) -> common.ThroughputResult:
    """The reads of ``--decode device``'s loader alone: workers read the
    files' bytes, nothing is decoded (its JPEG header check is not
    included)."""
    loader = _loader(FileBytes(items), FileBytes.collate, args.batch_size,
                     workers, False)
    iters, n, seconds = time_batches(iter(loader), args.warmup_batches,
                                     lambda b: len(b[1]))
    return common.ThroughputResult(
        f'read files only, {workers} workers',
        common.describe_device(torch.device('cpu')), args.batch_size, iters,
        seconds, n, 'file bytes (the --decode device loader\'s reads, no '
        'decode)')


# --------------------------------------------------------------------------
# one model
# --------------------------------------------------------------------------
def _amp_name(args) -> str:
    return f'{args.amp} autocast' if args.amp else 'fp32'


def run_model(key: str, items: Sequence, args,
              device: torch.device) -> ModelOutcome:
    """Every row of one CLIP model."""
    shape = common.CLIP_SHAPES[key]
    spec = clip_spec(shape, args.layers)
    start = time.perf_counter()
    extractor = build_extractor(spec, device, args.amp is not None)
    print(f'{key}: {shape.model} built (random weights) in '
          f'{time.perf_counter() - start:.1f} s')
    outcome = ModelOutcome(key)

    def add(row: common.ThroughputResult) -> None:
        # printed as measured: a run stopped later keeps its figures
        outcome.rows.append(row)
        rate = row.extra.get('steady_per_second', row.per_second)
        print(f'  {row.name}: {rate:,.1f} images/s')

    for workers in args.workers:
        add(decode_only(items, extractor.transform, args, workers, device))
    add(model_only(extractor, args, device))
    add(end_to_end(items, spec, extractor, args, max(args.workers), device))
    if args.gpu_decode:
        outcome.pixel_diff = pixel_difference(items, extractor, device)
        add(read_only(items, args, max(args.workers)))
        add(end_to_end(items, spec, extractor, args, max(args.workers),
                       device, decode='device'))
    return outcome


def bottleneck(outcome: ModelOutcome, workers: int) -> str:
    """Which of decoding and the model limits the PIL path."""
    decode = outcome.row(f'decode only, {workers} workers')
    model = outcome.row('model only')
    e2e = outcome.row('end to end: extract_features')
    slower = 'decoding' if decode.per_second < model.per_second else 'model'
    return (f'{outcome.model}: decode only {decode.per_second:,.1f}, model '
            f'only {model.per_second:,.1f}, end to end (steady) '
            f'{e2e.extra["steady_per_second"]:,.1f} images/s; the '
            f'{slower} is the bottleneck; model busy '
            f'{100 * e2e.extra["model_share"]:.0f}% of the end-to-end call')


def target_line(outcome: ModelOutcome, device: torch.device) -> str:
    """This model's target, met or not (GPU only)."""
    target = TARGET_IMAGES_PER_S.get(outcome.model)
    if target is None:
        return ''
    best = max(r.extra.get('steady_per_second', r.per_second)
               for r in outcome.rows if r.name.startswith('end to end'))
    if device.type != 'cuda':
        return (f'{outcome.model}: target >= {target:,} images/s on one '
                f'H100/H200 (not measurable on {device.type})')
    verdict = 'met' if best >= target else 'NOT met'
    return (f'{outcome.model}: target >= {target:,} images/s: {verdict} '
            f'(best end-to-end steady state {best:,.1f})')


def report(outcomes: Sequence[ModelOutcome], args,
           device: torch.device) -> str:
    """The results table, then bottleneck and target lines."""
    headers = ['model', 'run', 'device', 'batch', 'images/s',
               'whole call images/s', 'ms/batch', 'note']
    rows = []
    for o in outcomes:
        for r in o.rows:
            rate = r.extra.get('steady_per_second', r.per_second)
            rows.append([o.model, r.name, r.device, r.batch_size, rate,
                         r.extra.get('whole_call_per_second', float('nan')),
                         1000 * r.batch_size / rate, r.note])
    lines = [common.format_table(headers, rows)]
    for o in outcomes:
        lines.append(bottleneck(o, max(args.workers)))
        if o.pixel_diff is not None:
            lines.append(f'{o.model}: device decode + resize vs PIL: mean '
                         f'|difference| {o.pixel_diff:.2f} (0-255 scale)')
        lines.append(target_line(o, device))
    return '\n'.join(line for line in lines if line)


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------
def _default_workers() -> int:
    return max(common.usable_cores() - 1, 1)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', nargs='+', choices=sorted(common.CLIP_SHAPES),
                   default=['vit-b32', 'vit-l14'])
    p.add_argument('--num-images', type=int, default=4096,
                   help='512 px JPEGs to extract (written once into '
                   '--workdir, then reused)')
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--workers', type=int, nargs='+',
                   help='DataLoader workers; decode-only is timed for each, '
                   'end to end with the largest (default: cores - 1)')
    p.add_argument('--device', help='cuda or cpu (default: cuda if present)')
    p.add_argument('--amp', choices=['fp16', 'none'],
                   help='float16 autocast, as mmpcm extracts on CUDA '
                   '(default: fp16 on CUDA, none on the CPU)')
    p.add_argument('--gpu-decode', action='store_true',
                   help='also extract with the JPEGs decoded on the device '
                   '(extract_features --decode device: '
                   'torchvision.io.decode_jpeg, nvJPEG on CUDA)')
    p.add_argument('--warmup-batches', type=int, default=2,
                   help='untimed batches of each row')
    p.add_argument('--model-iters', type=int, default=20,
                   help='timed batches of the model-only row')
    p.add_argument('--layers', type=int,
                   help='cut both CLIP towers to this many layers (smoke '
                   'tests only; default: the real depth)')
    p.add_argument('--threads', type=int,
                   help='torch threads of the main process')
    p.add_argument('--workdir', default='work_dirs/benchmarks')
    p.add_argument('--json', help='also write the results here')
    args = p.parse_args(argv)
    args.workers = args.workers or [_default_workers()]
    if args.num_images < args.batch_size * (args.warmup_batches + 1):
        p.error('--num-images must exceed --warmup-batches + 1 batches')
    return args


def _resolve_amp(args, device: torch.device) -> None:
    """``args.amp``: ``'fp16'`` or None once the device is known."""
    if args.amp is None:
        args.amp = 'fp16' if device.type == 'cuda' else 'none'
    if args.amp != 'none' and device.type != 'cuda':
        raise SystemExit('--amp fp16 needs CUDA (mmpcm autocasts on CUDA '
                         'only)')
    args.amp = None if args.amp == 'none' else args.amp


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    device = common.start_benchmark(args.device, args.threads)
    _resolve_amp(args, device)
    os.makedirs(args.workdir, exist_ok=True)
    items = prepare_images(osp.join(args.workdir, f'jpeg{IMAGE_SIZE}'),
                           args.num_images, max(args.workers))
    outcomes = [run_model(key, items, args, device) for key in args.model]
    print()
    print(f'# CLIP feature extraction, {len(items):,} JPEGs of {IMAGE_SIZE} '
          f'px (quality {JPEG_QUALITY}, {mean_file_kb(items):.0f} KB on '
          f'average), random weights; {common.describe_software()}; at the '
          f'end: {common.describe_load()}')
    print(report(outcomes, args, device))
    common.write_json(args.json, dict(
        args=vars(args), mean_file_kb=mean_file_kb(items),
        models=[dict(model=o.model, pixel_diff=o.pixel_diff,
                     rows=[r.to_dict() for r in o.rows]) for o in outcomes]))


if __name__ == '__main__':
    main()
