"""Helpers shared by the mmpcm benchmark scripts.

Timing, result rows and table printing, a description of the machine, and the
random inputs the benchmarks run on: feature stores of the real CLIP shapes,
a word vocabulary of the real COCO size, captions and a concept file. Nothing
is downloaded; every input is random, so figures say how fast, never how
well.

The scripts import this module as ``common`` (they put their own folder on
``sys.path``); it is not part of the installed package.
"""
import json
import os
import os.path as osp
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

DATE = '2026-11-26'
"""Date stamped on the recorded figures (docs/benchmarks.md)."""

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


# --------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipShape:
    """The feature shapes one CLIP model gives PCM-Net.

    Attributes:
        key (str): Command-line name (``vit-b32``, ``vit-l14``).
        model (str): open_clip model name.
        num_patches (int): Patch tokens per image (after pooling).
        patch_dim (int): Width of a patch token.
        embed_dim (int): Width of CLIP's joint space.
        config (str): The paper-recipe config of this CLIP, from the repo
            root.
    """
    key: str
    model: str
    num_patches: int
    patch_dim: int
    embed_dim: int
    config: str

    @property
    def bytes_per_item(self) -> int:
        """float16 bytes of one item in a feature store."""
        return 2 * (self.num_patches * self.patch_dim + self.embed_dim)


CLIP_SHAPES: Dict[str, ClipShape] = {
    'vit-b32': ClipShape('vit-b32', 'ViT-B-32', 49, 768, 512,
                         'configs/pcm/pcm_coco.py'),
    'vit-l14': ClipShape('vit-l14', 'ViT-L-14', 64, 1024, 768,
                         'configs/pcm/pcm_coco_vit-l14.py'),
}

COCO_PAIRS = 542_401
"""SynthImgCap-COCO: one synthetic image per Karpathy-train caption."""
COCO_TEST_IMAGES = 5_000
"""MSCOCO Karpathy test split."""
COCO_VOCAB_SIZE = 10_200
"""PCM-Net's COCO word vocabulary (special tokens included)."""
NUM_CONCEPTS = 446
"""Concepts shipped by the release for COCO."""


# --------------------------------------------------------------------------
# machine and timing
# --------------------------------------------------------------------------
def resolve_device(name: Optional[str]) -> torch.device:
    """``'cuda'`` when available unless a device is named."""
    if name:
        return torch.device(name)
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def hide_cuda_if_cpu(name: Optional[str]) -> None:
    """Make CUDA invisible when ``--device cpu`` is asked for.

    The mmengine Runner always puts the model on the GPU when it sees one,
    so a CPU measurement on a GPU machine hides the GPU instead. Must run
    before the first CUDA call of the process.
    """
    if name is not None and torch.device(name).type == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or ``platform``)."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: torch.device) -> str:
    """A one-line description of the device a figure was measured on.

    Args:
        device (torch.device): The benchmark's device.

    Returns:
        str: e.g. ``'NVIDIA H100 80GB HBM3'`` or ``'CPU: AMD EPYC, 2 cores'``
        (cores as this process may use them).
    """
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    cores = len(os.sched_getaffinity(0)) if hasattr(
        os, 'sched_getaffinity') else os.cpu_count()
    return f'CPU: {cpu_model()}, {cores} cores'


def describe_software() -> str:
    """Versions and thread count that matter for the figures."""
    import mmengine
    parts = [f'torch {torch.__version__}', f'mmengine {mmengine.__version__}',
             f'python {platform.python_version()}',
             f'{torch.get_num_threads()} torch thread(s)']
    if torch.cuda.is_available():
        parts.append(f'CUDA {torch.version.cuda}')
    return ', '.join(parts)


def describe_load() -> str:
    """The machine's load average: other processes skew CPU figures."""
    if not hasattr(os, 'getloadavg'):
        return 'load average unknown'
    one, five, _ = os.getloadavg()
    return f'load average {one:.1f} (1 min), {five:.1f} (5 min)'


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times are complete."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class Stopwatch:
    """Accumulates wall-clock time of repeated sections.

    Args:
        device (torch.device, optional): Synchronised before each reading
            when it is a GPU. Defaults to None (no synchronisation).
    """

    def __init__(self, device: Optional[torch.device] = None) -> None:
        self.device = device
        self.seconds = 0.0
        self.calls = 0
        self.enabled = True

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0

    @contextmanager
    def section(self) -> Iterator[None]:
        """Time the body (when enabled)."""
        if not self.enabled:
            yield
            return
        if self.device is not None:
            synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device is not None:
                synchronize(self.device)
            self.seconds += time.perf_counter() - start
            self.calls += 1


def wrap_timed(obj: object, name: str, watch: Stopwatch) -> Callable:
    """Time every call of ``obj.name`` with ``watch`` (instance attribute).

    Only the benchmark's own objects are patched; the class is untouched.

    Returns:
        Callable: The original bound method, to restore it.
    """
    original = getattr(obj, name)

    def timed(*args, **kwargs):
        with watch.section():
            return original(*args, **kwargs)

    setattr(obj, name, timed)
    return original


def compile_modules(model: torch.nn.Module, names: Sequence[str],
                    **options) -> None:
    """``nn.Module.compile`` the named submodules in place.

    In place, so parameter names (and checkpoints) stay as they are. Used
    instead of compiling the whole train step: the caption head tokenizes
    Python strings, which dynamo would guard on (a recompilation for every
    batch of new captions).

    Args:
        model (nn.Module): The captioner.
        names (Sequence[str]): Dotted submodule names, e.g. ``'encoder'``.
        **options: ``torch.compile`` options.
    """
    for name in names:
        model.get_submodule(name).compile(**options)


def uncompile_modules(model: torch.nn.Module, names: Sequence[str]) -> None:
    """Undo :func:`compile_modules`."""
    for name in names:
        model.get_submodule(name)._compiled_call_impl = None


# --------------------------------------------------------------------------
# host dispatch and kernel launches (torch.profiler)
# --------------------------------------------------------------------------
@dataclass
class TraceSummary:
    """Per-iteration counts of a window recorded by :class:`StepTracer`.

    At a small batch a training step is bound by the host: every ATen
    operator is a trip through Python and the dispatcher, and on a GPU a
    kernel launch. These counts say how many trips a step makes and how
    much of its time the GPU is busy.

    Attributes:
        iters (int): Recorded iterations.
        wall_ms (float): Wall-clock ms per iteration, the profiler's own
            overhead included (slower than the timed rows).
        aten_ops (float): ATen operators per iteration called from Python
            or autograd (top-level: those called inside another ATen
            operator are not counted again).
        launches (float): Kernel launches the host issued per iteration
            (CUDA runtime and driver launch calls; one CUDA graph replay
            counts once). 0 on the CPU.
        device_kernels (float): Kernels, copies and fills the GPU ran per
            iteration. 0 on the CPU.
        device_ms (float): Their summed duration per iteration.
    """
    iters: int
    wall_ms: float
    aten_ops: float
    launches: float
    device_kernels: float
    device_ms: float

    @property
    def device_busy(self) -> float:
        """Share of the wall-clock time the GPU spent running kernels."""
        return self.device_ms / self.wall_ms if self.wall_ms > 0 else 0.0

    def to_dict(self) -> dict:
        return dict(asdict(self), device_busy=self.device_busy)


def summarize_trace(events: Sequence, iters: int,
                    seconds: float) -> TraceSummary:
    """Count a profiler's events (``torch.profiler.profile.events()``).

    Args:
        events (Sequence[FunctionEvent]): The recorded events, with their
            ``cpu_parent`` links.
        iters (int): Iterations they span.
        seconds (float): Wall-clock seconds of the window.

    Returns:
        TraceSummary: Per-iteration counts.
    """
    from torch.autograd import DeviceType
    ops = launches = kernels = 0
    device_us = 0.0
    for event in events:
        if event.device_type == DeviceType.CUDA:
            kernels += 1
            device_us += event.time_range.elapsed_us()
        elif event.name.startswith('aten::'):
            parent = event.cpu_parent
            ops += parent is None or not parent.name.startswith('aten::')
        elif event.name.startswith('cu') and 'Launch' in event.name:
            # cudaLaunchKernel(ExC), cuLaunchKernel(Ex), cudaGraphLaunch
            launches += 1
    n = max(iters, 1)
    return TraceSummary(iters, 1000 * seconds / n, ops / n, launches / n,
                        kernels / n, device_us / 1000 / n)


class StepTracer:
    """Records a window of iterations with ``torch.profiler``.

    Call :meth:`start` at the end of the iteration before the window and
    :meth:`stop` at the end of its last iteration.

    Args:
        device (torch.device): CUDA activity is recorded too on a GPU; the
            device is synchronised at both ends.
        trace_file (str, optional): Also write a Chrome trace here
            (``chrome://tracing`` or Perfetto). Defaults to None.
    """

    def __init__(self, device: torch.device,
                 trace_file: Optional[str] = None) -> None:
        self.device = device
        self.trace_file = trace_file
        self._profiler = None
        self._start = 0.0

    def start(self) -> None:
        from torch.profiler import ProfilerActivity, profile
        activities = [ProfilerActivity.CPU]
        if self.device.type == 'cuda':
            activities.append(ProfilerActivity.CUDA)
        synchronize(self.device)
        self._profiler = profile(activities=activities)
        self._profiler.__enter__()
        self._start = time.perf_counter()

    def stop(self, iters: int) -> TraceSummary:
        """End the window of ``iters`` iterations and count it."""
        if self._profiler is None:
            raise RuntimeError('StepTracer.stop() before start()')
        synchronize(self.device)
        seconds = time.perf_counter() - self._start
        self._profiler.__exit__(None, None, None)
        profiler, self._profiler = self._profiler, None
        if self.trace_file:
            os.makedirs(osp.dirname(osp.abspath(self.trace_file)),
                        exist_ok=True)
            profiler.export_chrome_trace(self.trace_file)
        return summarize_trace(profiler.events(), iters, seconds)


# --------------------------------------------------------------------------
# arithmetic: multiply-accumulates of the model
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelDims:
    """The sizes that set PCM-Net's compute."""
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

    def _encoder_macs(self, tokens: int) -> int:
        d, f = self.width, self.ffn
        return self.enc_layers * (tokens * (4 * d * d + 2 * d * f) +
                                  2 * tokens * tokens * d)

    def _neck_macs(self) -> int:
        n, d = self.num_patches, self.width
        return n * self.patch_dim * (self.embed_dim + d) + (
            n + 1) * self.embed_dim * d

    def train_flops_per_pair(self, caption_tokens: int) -> float:
        """Training FLOPs of one pair (backward counted as 2x forward).

        Args:
            caption_tokens (int): Decoder positions (words + 1).
        """
        d, f, L = self.width, self.ffn, caption_tokens
        mem = 1 + self.num_patches  # global + (mixed) patches
        dec = self.dec_layers * (
            L * (6 * d * d + 2 * d * f)  # self-attn, cross Q/out, FFN
            + mem * 2 * d * d  # cross-attention K/V of the memory
            + 2 * L * (L + mem) * d)  # attention scores and sums
        fwd = self._neck_macs() + self._encoder_macs(mem) + dec + (
            L * d * self.vocab)
        return 3 * 2 * fwd

    def decode_flops_per_row(self, steps: int,
                             cached: bool) -> Dict[str, float]:
        """FLOPs of one beam row's decoding, by part.

        Args:
            steps (int): Decoder calls (``max_len`` when no sentence ends).
            cached (bool): False: this code (the whole prefix recomputed
                every step, memory K/V re-projected every step). True: a KV
                cache, memory K/V projected once. Both project only the new
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


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------
@dataclass
class ThroughputResult:
    """One measured row.

    Attributes:
        name (str): What was measured (recipe, precision...).
        device (str): :func:`describe_device` of where it ran.
        batch_size (int): Items per iteration.
        iters (int): Timed iterations (after warm-up).
        seconds (float): Wall-clock seconds of the timed iterations.
        items (int): Items processed in them.
        note (str): Anything needed to read the row.
        extra (dict): Further figures (e.g. seconds per epoch).
    """
    name: str
    device: str
    batch_size: int
    iters: int
    seconds: float
    items: int
    note: str = ''
    extra: Dict[str, float] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float('nan')

    @property
    def ms_per_iter(self) -> float:
        return 1000 * self.seconds / max(self.iters, 1)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in (
            'name', 'device', 'batch_size', 'iters', 'seconds', 'items',
            'note', 'extra')}
        out.update(per_second=self.per_second, ms_per_iter=self.ms_per_iter)
        return out


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: List[str]) -> str:
        padded = (c.ljust(w) for c, w in zip(row, widths, strict=True))
        return '| ' + ' | '.join(padded) + ' |'

    sep = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
    return '\n'.join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def _cell(value) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return '-'
        return f'{value:,.1f}' if abs(value) >= 10 else f'{value:.3g}'
    if isinstance(value, int):
        return f'{value:,}'
    return str(value)


def write_json(path: Optional[str], payload: dict) -> None:
    """Write the results as JSON when a path is given."""
    if not path:
        return
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(payload, f, indent=2)
        f.write('\n')


# --------------------------------------------------------------------------
# random inputs of the real shapes
# --------------------------------------------------------------------------
_CONSONANTS = 'bcdfghjklmnprstvwz'
_VOWELS = 'aeiou'


def make_word_list(size: int) -> List[str]:
    """``size`` distinct lower-case pseudo-words (``'ba'``, ``'beko'``...).

    Args:
        size (int): Number of words.

    Returns:
        list[str]: Short words first (1, 2, then 3 syllables), so that the
        frequent words of :func:`random_captions` are the short ones.
    """
    syll = [c + v for c in _CONSONANTS for v in _VOWELS]  # 90 syllables
    words: List[str] = []
    for n in (1, 2, 3):
        for i in range(len(syll) ** n):
            parts, rest = [], i
            for _ in range(n):
                parts.append(syll[rest % len(syll)])
                rest //= len(syll)
            words.append(''.join(parts))
            if len(words) == size:
                return words
    raise ValueError(f'at most {len(words)} pseudo-words, asked for {size}')


def write_vocabulary(path: str, size: int = COCO_VOCAB_SIZE) -> List[str]:
    """Write a word vocabulary of ``size`` tokens (4 special + words).

    A vocabulary of the real size keeps the decoder's output layer and the
    loss at their real cost; captions use its words.

    Returns:
        list[str]: The plain words (special tokens excluded).
    """
    from mmpcm.text.vocab import SPECIAL_TOKENS, WordVocabulary
    words = make_word_list(size - len(SPECIAL_TOKENS))
    WordVocabulary(list(SPECIAL_TOKENS) + words).save(path)
    return words


CAPTION_MIN_WORDS = 8
CAPTION_MEAN_WORDS = 10.5
"""Random captions: at least 8 words, 10.5 on average (COCO's mean), with
a geometric tail (about 2% over 19 words), so that a large batch, like
COCO's, usually holds a caption cut at ``max_len``."""


def random_captions(words: Sequence[str], count: int, seed: int = 0,
                    min_words: int = CAPTION_MIN_WORDS,
                    mean_words: float = CAPTION_MEAN_WORDS,
                    max_words: int = 40) -> List[str]:
    """Random captions, word ranks Zipf-distributed.

    Args:
        words (Sequence[str]): Word list, most frequent first.
        count (int): Number of captions.
        seed (int): Random seed. Defaults to 0.
        min_words (int): Shortest caption. Defaults to 8.
        mean_words (float): Mean length. Defaults to 10.5.
        max_words (int): Longest caption. Defaults to 40.

    Returns:
        list[str]: Captions like ``'Ba beko ... zu.'`` (capitalised, with a
        full stop, as corpus captions are).
    """
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, len(words) + 1, dtype=np.float64)
    probs = 1.0 / ranks
    probs /= probs.sum()
    tail = rng.geometric(1.0 / (mean_words - min_words + 1), size=count)
    lengths = np.minimum(min_words - 1 + tail, max_words)
    ids = rng.choice(len(words), size=int(lengths.sum()), p=probs)
    table = np.asarray(words, dtype=object)[ids]
    out, pos = [], 0
    for n in lengths.tolist():
        out.append(' '.join(table[pos:pos + n]).capitalize() + '.')
        pos += n
    return out


def write_concepts(path: str, shape: ClipShape, count: int = NUM_CONCEPTS,
                   seed: int = 0) -> None:
    """Write a concept file of ``count`` random unit embeddings."""
    from mmpcm.models.utils.concepts import ConceptVocabulary
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(count, shape.embed_dim, generator=gen)
    ConceptVocabulary([f'concept{i}' for i in range(count)], emb,
                      shape.model).save(path)


def _unit_rows(array: np.ndarray) -> np.ndarray:
    return array / np.linalg.norm(array, axis=-1, keepdims=True)


def _random_block(rng: np.random.Generator, n: int, shape: ClipShape):
    """float16 patches ``(n, N, Dv)`` and unit globals ``(n, D)``."""
    patches = rng.standard_normal(
        (n, shape.num_patches, shape.patch_dim), dtype=np.float32)
    globals_ = _unit_rows(rng.standard_normal((n, shape.embed_dim),
                                              dtype=np.float32))
    return patches.astype(np.float16), globals_.astype(np.float16)


def _records(captions: Sequence[str], start: int,
             scores: np.ndarray) -> List[dict]:
    return [dict(image_id=start + i, caption=c, clip_score=float(s))
            for i, (c, s) in enumerate(zip(captions, scores, strict=True))]


def _store_complete(root: str, num_items: int, shape: ClipShape) -> bool:
    """Whether ``root`` already holds a matching store (reuse it)."""
    from mmpcm.datasets.feature_store import read_meta
    if not osp.isfile(osp.join(root, 'meta.json')):
        return False
    meta = read_meta(root)
    return (meta.num_items == num_items and meta.clip.model == shape.model
            and meta.clip.num_patches == shape.num_patches
            and meta.clip.patch_dim == shape.patch_dim)


def write_feature_store(root: str, captions: Sequence[str], shape: ClipShape,
                        shard_size: int = 4096, linked: bool = False,
                        seed: int = 0,
                        log: Callable[[str], None] = print) -> str:
    """Write a packed feature store of random features, one per caption.

    Shards are filled from one random block (rows rolled per shard): the
    values do not matter for speed, and generating 20 G random numbers
    would take longer than the benchmark. An existing complete store of the
    same size and shapes is reused.

    Args:
        root (str): Store directory.
        captions (Sequence[str]): One caption per item.
        shape (ClipShape): Feature shapes.
        shard_size (int): Items per shard. Defaults to 4096.
        linked (bool): Write the first shard's arrays once and hard-link
            them into every other shard (records still differ). Saves the
            disk (41 GB for ViT-B/32 at COCO scale) and the writing time;
            every read then hits the same pages, i.e. a warm page cache.
            Defaults to False.
        seed (int): Random seed. Defaults to 0.
        log (Callable): Progress printer. Defaults to print.

    Returns:
        str: ``root``.
    """
    from mmpcm.datasets.feature_store import (CLIPFeatureInfo,
                                              FeatureStoreWriter)
    n = len(captions)
    if _store_complete(root, n, shape):
        log(f'reusing feature store {root} ({n:,} items)')
        return root
    if osp.isdir(root):
        import shutil
        shutil.rmtree(root)
    info = CLIPFeatureInfo(model=shape.model, num_patches=shape.num_patches,
                           patch_dim=shape.patch_dim,
                           embed_dim=shape.embed_dim)
    rng = np.random.default_rng(seed)
    block = min(shard_size, n)
    patches, globals_ = _random_block(rng, block, shape)
    scores = rng.uniform(0.15, 0.35, size=n)  # raw CLIP cosines
    start_t = time.perf_counter()
    log(f'writing feature store {root}: {n:,} items, '
        f'{n * shape.bytes_per_item / 1e9:.1f} GB'
        + (' (hard-linked shards)' if linked else ''))
    if linked:
        _write_linked(root, info, captions, scores, patches, globals_,
                      shard_size)
    else:
        with FeatureStoreWriter(root, info, shard_size=shard_size) as writer:
            for shard, start in enumerate(range(0, n, shard_size)):
                stop = min(start + shard_size, n)
                roll = np.roll(np.arange(block), shard)[:stop - start]
                writer.write_shard(patches[roll], globals_[roll],
                                   _records(captions[start:stop], start,
                                            scores[start:stop]))
    log(f'  written in {time.perf_counter() - start_t:.1f} s')
    return root


def _write_linked(root: str, info, captions: Sequence[str],
                  scores: np.ndarray, patches: np.ndarray,
                  globals_: np.ndarray, shard_size: int) -> None:
    """First full shard written normally, the rest hard-linked to it."""
    from mmpcm.datasets.feature_store import (FeatureStoreMeta,
                                              FeatureStoreWriter, ShardInfo,
                                              write_meta)
    n = len(captions)
    first = min(shard_size, n)
    with FeatureStoreWriter(root, info, shard_size=shard_size) as writer:
        writer.write_shard(patches[:first], globals_[:first],
                           _records(captions[:first], 0, scores[:first]))
    shards = [ShardInfo('shard_00000', first)]
    src = osp.join(root, 'shard_00000')
    for idx, start in enumerate(range(first, n, shard_size), start=1):
        stop = min(start + shard_size, n)
        name = f'shard_{idx:05d}'
        dst = osp.join(root, name)
        os.makedirs(dst)
        if stop - start == first:
            for fname in ('patch_tokens.npy', 'global_embeds.npy'):
                os.link(osp.join(src, fname), osp.join(dst, fname))
        else:  # a shorter last shard needs its own arrays
            np.save(osp.join(dst, 'patch_tokens.npy'),
                    patches[:stop - start])
            np.save(osp.join(dst, 'global_embeds.npy'),
                    globals_[:stop - start])
        with open(osp.join(dst, 'records.jsonl'), 'w', encoding='utf-8') as f:
            for rec in _records(captions[start:stop], start,
                                scores[start:stop]):
                f.write(json.dumps(rec) + '\n')
        shards.append(ShardInfo(name, stop - start))
    write_meta(root, FeatureStoreMeta(clip=info, shards=shards))


def write_npz_samples(folder: str, captions: Sequence[str], shape: ClipShape,
                      seed: int = 0,
                      log: Callable[[str], None] = print) -> List[dict]:
    """The release's layout: one ``.npz`` per sample (float32).

    Keys ``features`` ``(N, Dv)`` and ``g_feature`` ``(D,)``, as the authors'
    X-modaler loader reads them. Files already there are reused.

    Returns:
        list[dict]: ``path``, ``caption``, ``clip_score`` per sample.
    """
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    block = min(256, len(captions))
    patches, globals_ = _random_block(rng, block, shape)
    patches, globals_ = patches.astype(np.float32), globals_.astype(
        np.float32)
    scores = rng.uniform(0.15, 0.35, size=len(captions))
    index, written = [], 0
    start_t = time.perf_counter()
    for i, caption in enumerate(captions):
        path = osp.join(folder, f'{i:07d}.npz')
        if not osp.isfile(path):
            np.savez(path, features=patches[i % block],
                     g_feature=globals_[i % block])
            written += 1
        index.append(dict(path=path, caption=caption,
                          clip_score=float(scores[i])))
    if written:
        log(f'wrote {written:,} .npz files into {folder} in '
            f'{time.perf_counter() - start_t:.1f} s')
    return index


def random_test_features(num_images: int, shape: ClipShape,
                         seed: int = 0) -> Dict[str, torch.Tensor]:
    """In-memory float16 test features, as a feature store gives them."""
    rng = np.random.default_rng(seed)
    block = min(512, num_images)
    patches, globals_ = _random_block(rng, block, shape)
    idx = np.arange(num_images) % block
    return dict(patch_tokens=torch.from_numpy(patches[idx]),
                global_embed=torch.from_numpy(globals_[idx]))


def model_overrides(shape: ClipShape, vocab_file: str,
                    concept_file: str) -> dict:
    """Config overrides: random CLIP weights, the benchmark's word and
    concept files (everything else as the recipe's config says)."""
    return {
        'model.backbone.pretrained': None,
        'model.head.vocab': vocab_file,
        'model.neck.concepts': concept_file,
    }


def load_config(path: str, extra_bases: Sequence[str] = ()):
    """Load a repo config and merge further config files over it.

    Args:
        path (str): Config path, from the repo root or absolute.
        extra_bases (Sequence[str]): Config files merged on top, in order
            (e.g. the fast schedule over a ViT-L/14 config).

    Returns:
        mmengine.Config: The merged config.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(_repo_path(path))
    for extra in extra_bases:
        other = Config.fromfile(_repo_path(extra))
        cfg.merge_from_dict(other.to_dict())
    return cfg


def _repo_path(path: str) -> str:
    return path if osp.isabs(path) else osp.join(REPO_ROOT, path)


def start_benchmark(device_arg: Optional[str], threads: Optional[int],
                    with_mmpcm: bool = False) -> 'torch.device':
    """The shared start of every benchmark script.

    Hides CUDA for ``--device cpu``, resolves the device, sets the torch
    thread count, optionally imports mmpcm (compat patches, registries,
    ``mmpretrain`` scope) and prints the machine header line.

    Args:
        device_arg (str, optional): The ``--device`` argument.
        threads (int, optional): The ``--threads`` argument.
        with_mmpcm (bool): Import mmpcm and enter the mmpretrain scope.
            Defaults to False.

    Returns:
        torch.device: The device to run on.
    """
    hide_cuda_if_cpu(device_arg)
    if with_mmpcm:
        import mmpcm  # noqa: F401  (compat patches, registries)
        from mmengine.registry import init_default_scope
        init_default_scope('mmpretrain')
    device = resolve_device(device_arg)
    if threads:
        torch.set_num_threads(threads)
    print(f'{describe_device(device)}; {describe_software()}; '
          f'{describe_load()}')
    return device
