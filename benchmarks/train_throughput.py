"""Training throughput of PCM-Net (pairs/s), the way users train.

Each recipe runs through the mmengine Runner built from the repo's config
(``configs/pcm/pcm_coco.py`` for ``--recipe paper``, ``pcm_coco_fast.py``
for ``--recipe fast``), with the data loader reading a packed feature store
(docs/feature_format.md) of random features of the real shapes. Only the
steady state is timed: ``--iters`` iterations after ``--warmup-iters``,
from the end of one iteration to the end of another, so loading, logging
and optimizer work are all inside.

In the same run a reference loop trains the same model the release's way:
one ``.npz`` per sample (``features``, ``g_feature``, float32) read by a
plain torch Dataset with ``np.load``, batch 32, fp32, ``--ref-workers``
workers, a hand-written forward/backward/step. Every row's speed-up is its
pairs/s over the reference's.

Then ``--profile-iters`` more iterations of each recipe are split into
data wait, caption tokenization in the step (none since the loader
tokenizes: ``PCMCaptionIdsHook``), neck + encoder, decoder, loss, backward
and optimizer step (the device synchronised around each part). Last,
``--trace-iters`` iterations of every loop, the reference's included, run
under ``torch.profiler``: ATen operators, kernel launches and GPU busy time
per iteration, the measure of a host-bound step (``--trace-dir`` also
writes Chrome traces). Before the
training runs, each data loader is timed alone (``--loader-batches``,
tokenizing as in training), and so is the caption tokenization itself.

Example (GPU, full scale; docs/benchmarks.md has the recorded figures)::

    python benchmarks/train_throughput.py --recipe paper fast --link-shards

Example (CPU, small)::

    python benchmarks/train_throughput.py --recipe paper --num-pairs 20000 \
        --ref-num-pairs 20000 --iters 20 --warmup-iters 3 --threads 1
"""
import argparse
import os
import os.path as osp
import re
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence

# The benchmarks measure the tree they are in: its mmpcm, then common.py.
sys.path[:0] = [osp.dirname(osp.dirname(osp.abspath(__file__))),
                osp.dirname(osp.abspath(__file__))]

import common  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

PAPER_BATCH = 32


# --------------------------------------------------------------------------
# recipes
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """A training recipe: its config and its default loader/precision.

    Attributes:
        name (str): ``paper`` or ``fast``.
        configs (dict): Config per CLIP key, plus config files merged on
            top (as a tuple: path, extra files).
        batch_size (int): Default batch.
        num_workers (int): Default loader workers.
        amp (bool): bf16 autocast by default (GPU only).
    """
    name: str
    configs: Dict[str, tuple]
    batch_size: int
    num_workers: int
    amp: bool


FAST_SCHEDULE = 'configs/_base_/schedules/noam_fast.py'
RECIPES = {
    'paper': Recipe('paper', {
        'vit-b32': ('configs/pcm/pcm_coco.py', ()),
        'vit-l14': ('configs/pcm/pcm_coco_vit-l14.py', ()),
    }, PAPER_BATCH, 4, False),
    'fast': Recipe('fast', {
        'vit-b32': ('configs/pcm/pcm_coco_fast.py', ()),
        'vit-l14': ('configs/pcm/pcm_coco_vit-l14.py', (FAST_SCHEDULE, )),
    }, 1024, 12, True),  # pcm_coco_fast.py's loader workers
}


@dataclass
class RunSettings:
    """What one recipe run uses after the command line is applied.

    ``compile`` is None (eager), ``'modules'`` (the neck, encoder, decoder
    and loss ``nn.Module.compile``'d in place) or ``'train_step'``
    (mmengine's ``compile=True``, which compiles the whole train step).
    """
    recipe: Recipe
    batch_size: int
    num_workers: int
    amp: bool
    compile: Optional[str]


COMPILE_TARGETS = ('neck', 'encoder', 'head.decoder', 'head.loss_module')


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------
@dataclass
class BenchData:
    """Files the runs read."""
    store: str
    vocab_file: str
    concept_file: str
    words: List[str]


def prepare_data(args: argparse.Namespace,
                 shape: common.ClipShape) -> BenchData:
    """Write (or reuse) the vocabulary, concepts and packed store."""
    data_dir = osp.join(args.workdir, 'data')
    os.makedirs(data_dir, exist_ok=True)
    vocab_file = osp.join(data_dir, f'vocab_{args.vocab_size}.json')
    words = common.write_vocabulary(vocab_file, args.vocab_size)
    concept_file = osp.join(data_dir, f'concepts_{shape.key}.safetensors')
    common.write_concepts(concept_file, shape)
    captions = common.random_captions(words, args.num_pairs, seed=0)
    suffix = '_linked' if args.link_shards else ''
    store = osp.join(
        data_dir,
        f'synth_{shape.key}_{args.num_pairs}_{args.shard_size}_'
        f'v{args.vocab_size}{suffix}')
    common.write_feature_store(store, captions, shape,
                               shard_size=args.shard_size,
                               linked=args.link_shards)
    return BenchData(store, vocab_file, concept_file, words)


# --------------------------------------------------------------------------
# the Runner path
# --------------------------------------------------------------------------
class SteadyStateTimer:
    """Runner hook logic timing iterations ``[warmup, warmup + iters)``.

    Build it with :func:`build_timer_hook`.

    Timing runs from the end of iteration ``warmup - 1`` to the end of
    iteration ``warmup + iters - 1``, so each timed interval is one full
    cycle: wait for the batch, hooks, train step. After that, for
    ``profile_iters`` iterations, ``watches`` are switched on; for the
    ``trace_iters`` after those, ``tracer`` records (no stopwatch runs).

    Args:
        warmup (int): Untimed iterations (at least 1).
        iters (int): Timed iterations.
        profile_iters (int): Profiled iterations after the timed ones.
        trace_iters (int): Iterations recorded by ``tracer`` after the
            profiled ones.
        tracer (common.StepTracer): Records the last ``trace_iters``.
        device (torch.device): Synchronised at the timing points.
        instrument (bool): Time the parts of a step (stopwatches switched
            on for the profile phase) and the caption tokenization (host
            time, timed phase). Off for mmengine's compiled train step,
            where the patched methods would break the graph. Defaults to True.
    """

    def __init__(self, warmup: int, iters: int, profile_iters: int,
                 trace_iters: int, tracer: common.StepTracer,
                 device: torch.device, instrument: bool = True) -> None:
        self.warmup, self.iters = warmup, iters
        self.profile_iters = profile_iters
        self.trace_iters, self.tracer = trace_iters, tracer
        self.trace: Optional[common.TraceSummary] = None
        self.device = device
        self.instrument = instrument
        # Replaced by the real stopwatches in before_train (the optimizer
        # wrapper only exists once training starts).
        self.watches = {name: common.Stopwatch(None)
                        for name in PROFILE_PARTS}
        self.tokenize = common.Stopwatch(None)
        self.start = self.stop = None
        self.data_wait = 0.0
        self.last_end = None
        self.profile_start = self.profile_stop = None

    def before_train(self, runner) -> None:
        if self.instrument:
            self.watches, self.tokenize = _instrument(runner, self.device)
        self._set_watches(False)
        self.tokenize.enabled = False

    def _set_watches(self, on: bool) -> None:
        for watch in self.watches.values():
            watch.enabled = on
            watch.reset()

    def _phase(self, it: int) -> str:
        if it < self.warmup:
            return 'warmup'
        if it < self.warmup + self.iters:
            return 'timed'
        if it < self.warmup + self.iters + self.profile_iters:
            return 'profile'
        return 'trace'

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        now = time.perf_counter()
        if self._phase(runner.iter) == 'timed' and self.last_end is not None:
            self.data_wait += now - self.last_end
        elif self._phase(runner.iter) == 'profile':
            self.watches['data wait'].seconds += now - self.last_end
            self.watches['data wait'].calls += 1

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        it = runner.iter
        if it in (self.warmup - 1, self.warmup + self.iters - 1):
            common.synchronize(self.device)
        now = time.perf_counter()
        if it == self.warmup - 1:
            self.start = now
            self.tokenize.reset()
            self.tokenize.enabled = True
        if it == self.warmup + self.iters - 1:
            self.stop = now
            self.tokenize.enabled = False
            self._set_watches(self.profile_iters > 0)
            self.profile_start = now
        profiled = self.warmup + self.iters + self.profile_iters
        if it == profiled - 1:
            common.synchronize(self.device)
            self.profile_stop = time.perf_counter()
            self._set_watches_off()
            if self.trace_iters:
                self.tracer.start()
        if self.trace_iters and it == profiled + self.trace_iters - 1:
            self.trace = self.tracer.stop(self.trace_iters)
        self.last_end = time.perf_counter()

    def _set_watches_off(self) -> None:
        for watch in self.watches.values():
            watch.enabled = False

    @property
    def seconds(self) -> float:
        return self.stop - self.start


def build_timer_hook(*args, **kwargs) -> SteadyStateTimer:
    """A :class:`SteadyStateTimer` that is an mmengine ``Hook``.

    mmengine is imported here, not at module level: it may initialise CUDA,
    which must wait until ``--device cpu`` has hidden the GPU.
    """
    from mmengine.hooks import Hook

    class SteadyStateTimerHook(SteadyStateTimer, Hook):
        priority = 'LOWEST'

    return SteadyStateTimerHook(*args, **kwargs)


def build_runner_cfg(args: argparse.Namespace, run: RunSettings,
                     shape: common.ClipShape, data: BenchData,
                     max_iters: int):
    """The recipe's config with the benchmark's data, sizes and hooks."""
    from mmpcm.apis import prepare_cfg
    path, extra = run.recipe.configs[shape.key]
    cfg = common.load_config(path, extra)
    cfg.merge_from_dict(common.model_overrides(shape, data.vocab_file,
                                               data.concept_file))
    cfg.merge_from_dict(args.cfg_options or {})
    loader = cfg.train_dataloader
    loader.dataset.data_root = data.store
    loader.batch_size = run.batch_size
    loader.num_workers = run.num_workers
    loader.persistent_workers = run.num_workers > 0
    loader.pin_memory = torch.cuda.is_available()
    if run.num_workers == 0:
        loader.pop('prefetch_factor', None)
    for key in ('val_dataloader', 'val_evaluator', 'val_cfg',
                'test_dataloader', 'test_evaluator', 'test_cfg'):
        cfg[key] = None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(
        50, max_iters // 4), log_metric_by_epoch=False)
    cfg.log_processor = dict(by_epoch=False)
    cfg.work_dir = osp.join(args.workdir, 'runs', run.recipe.name)
    cfg.experiment_name = f'train_{run.recipe.name}_{time.time_ns()}'
    cfg.launcher = 'none'
    _set_precision(cfg, run.amp)
    # Eager unless --compile train_step (the paper configs and
    # pcm_coco_fast.py compile by default), so that every row says how it
    # ran.
    cfg.compile = False
    if run.compile == 'train_step':
        cfg.compile = (dict(mode=args.compile_mode) if args.compile_mode
                       else True)
    return prepare_cfg(cfg)


def _set_precision(cfg, amp: bool) -> None:
    wrapper = cfg.optim_wrapper
    if amp:
        wrapper.type = 'AmpOptimWrapper'
        wrapper.dtype = 'bfloat16'
        wrapper.loss_scale = dict(enabled=False)
    else:
        wrapper.type = 'OptimWrapper'
        wrapper.pop('dtype', None)
        wrapper.pop('loss_scale', None)


def _unwrap(model):
    from mmengine.model import is_model_wrapper
    return model.module if is_model_wrapper(model) else model


PROFILE_PARTS = ('data wait', 'to device', 'tokenize', 'neck + encoder',
                 'decoder', 'loss', 'backward', 'optimizer step')


def _instrument(runner, device: torch.device):
    """Stopwatches on the parts of a training step (instance patches)."""
    model = _unwrap(runner.model)
    watches = {name: common.Stopwatch(device) for name in PROFILE_PARTS}
    watches['data wait'] = common.Stopwatch(None)  # timed by the hook
    common.wrap_timed(model.data_preprocessor, 'forward',
                      watches['to device'])
    common.wrap_timed(model, 'encode', watches['neck + encoder'])
    common.wrap_timed(model.head, 'forward', watches['decoder'])
    common.wrap_timed(model.head.loss_module, 'forward', watches['loss'])
    common.wrap_timed(runner.optim_wrapper, 'backward', watches['backward'])
    common.wrap_timed(runner.optim_wrapper, 'step',
                      watches['optimizer step'])
    # Tokenization: timed in both phases (host time in the timed phase).
    tokenize = common.Stopwatch(None)
    both = _TwoWatches(tokenize, watches['tokenize'])
    vocab = model.head.vocab
    original = vocab.encode_batch

    def encode_batch(*a, **kw):
        with both.section():
            return original(*a, **kw)

    vocab.encode_batch = encode_batch
    return watches, tokenize


class _TwoWatches:
    """Times one section with two stopwatches (whichever are enabled)."""

    def __init__(self, host: common.Stopwatch,
                 synced: common.Stopwatch) -> None:
        self.host, self.synced = host, synced

    def section(self):
        from contextlib import ExitStack
        stack = ExitStack()
        stack.enter_context(self.synced.section())
        stack.enter_context(self.host.section())
        return stack


@dataclass
class RecipeOutcome:
    """A recipe's timed result and its step breakdown."""
    result: common.ThroughputResult
    flops_per_pair: float
    tokenize_share: float
    breakdown: Dict[str, float]  # ms per iteration by part
    profile_ms_per_iter: float
    trace: Optional[common.TraceSummary]  # None: --trace-iters 0


def run_recipe(args: argparse.Namespace, run: RunSettings,
               shape: common.ClipShape, data: BenchData,
               device: torch.device) -> RecipeOutcome:
    """Train ``warmup + iters + profile`` iterations through the Runner."""
    from mmengine.runner import Runner
    total = (args.warmup_iters + args.iters + args.profile_iters +
             args.trace_iters)
    cfg = build_runner_cfg(args, run, shape, data, total)
    runner = Runner.from_cfg(cfg)
    if run.compile == 'modules':
        options = dict(mode=args.compile_mode) if args.compile_mode else {}
        common.compile_modules(_unwrap(runner.model), COMPILE_TARGETS,
                               **options)
    tracer = common.StepTracer(device, _trace_file(args, _run_name(run)))
    timer = build_timer_hook(args.warmup_iters, args.iters,
                             args.profile_iters, args.trace_iters, tracer,
                             device, instrument=run.compile != 'train_step')
    runner.register_hook(timer, priority='LOWEST')
    runner.train()
    watches, tokenize = timer.watches, timer.tokenize
    result = common.ThroughputResult(
        name=_run_name(run), device=common.describe_device(device),
        batch_size=run.batch_size, iters=args.iters, seconds=timer.seconds,
        items=args.iters * run.batch_size,
        note=f'Runner, packed store ({args.num_pairs:,} pairs), '
        f'{run.num_workers} workers',
        extra=dict(data_wait=timer.data_wait / timer.seconds))
    breakdown, profile_ms = {}, float('nan')
    if args.profile_iters and timer.instrument:
        n = args.profile_iters
        profile_ms = 1000 * (timer.profile_stop - timer.profile_start) / n
        breakdown = {k: 1000 * w.seconds / n for k, w in watches.items()}
        breakdown['other (hooks, logging, zero_grad)'] = profile_ms - sum(
            breakdown.values())
    share = (tokenize.seconds / timer.seconds if timer.instrument else
             float('nan'))
    flops = common.ModelDims.of(_unwrap(runner.model)).train_flops_per_pair(
        CAPTION_POSITIONS)
    return RecipeOutcome(result, flops, share, breakdown, profile_ms,
                         timer.trace)


def _trace_file(args: argparse.Namespace, name: str) -> Optional[str]:
    """Where ``--trace-dir`` keeps the Chrome trace of run ``name``."""
    if not args.trace_dir:
        return None
    slug = re.sub(r'[^0-9A-Za-z]+', '_', name).strip('_')  # paper_fp32
    return osp.join(args.trace_dir, f'{slug}.json')


CAPTION_POSITIONS = 20
"""Decoder positions of a large batch: its longest caption reaches
``max_len`` (19 words + ``<eos>``). Used for the FLOP arithmetic."""


def _run_name(run: RunSettings) -> str:
    precision = 'bf16 AMP' if run.amp else 'fp32'
    name = f'{run.recipe.name} ({precision}'
    if run.compile:
        name += f', compiled {run.compile}'
    return name + ')'


# --------------------------------------------------------------------------
# the reference loop (one .npz per sample)
# --------------------------------------------------------------------------
class NpzPairs(torch.utils.data.Dataset):
    """The release's loading: ``np.load`` of one ``.npz`` per sample.

    Args:
        index (list[dict]): ``path``, ``caption``, ``clip_score`` per pair.
    """

    def __init__(self, index: Sequence[dict]) -> None:
        self.index = list(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        rec = self.index[i]
        with np.load(rec['path']) as npz:
            features = torch.from_numpy(npz['features'])  # (N, Dv) float32
            g_feature = torch.from_numpy(npz['g_feature'])  # (D,) float32
        return features, g_feature, rec['caption'], rec['clip_score']


def _model_options(options: Optional[dict]) -> dict:
    """The ``model.*`` part of ``--cfg-options`` (the reference's model)."""
    return {k: v for k, v in (options or {}).items()
            if k == 'model' or k.startswith('model.')}


def _reference_loader(index: Sequence[dict], workers: int, batch_size: int,
                      pin: bool) -> torch.utils.data.DataLoader:
    """The release's loader: shuffled, default collate, no persistence."""
    return torch.utils.data.DataLoader(
        NpzPairs(index), batch_size=batch_size, shuffle=True,
        num_workers=workers, pin_memory=pin, drop_last=True)


def _cycle(loader):
    """Batches forever; each pass is a new epoch of the loader."""
    while True:
        yield from loader


def prepare_reference_data(args: argparse.Namespace,
                           shape: common.ClipShape,
                           data: BenchData) -> List[dict]:
    """Write (or reuse) the reference's per-sample ``.npz`` files."""
    npz_dir = osp.join(args.workdir, 'data',
                       f'npz_{shape.key}_{args.ref_num_pairs}')
    captions = common.random_captions(data.words, args.ref_num_pairs, seed=1)
    return common.write_npz_samples(npz_dir, captions, shape)


class ReferenceOutcome(NamedTuple):
    """The reference loop's timed result and its recorded window."""
    result: common.ThroughputResult
    trace: Optional[common.TraceSummary]  # None: --trace-iters 0


def run_reference(args: argparse.Namespace, shape: common.ClipShape,
                  data: BenchData, index: List[dict],
                  device: torch.device) -> ReferenceOutcome:
    """Batch 32, fp32, plain PyTorch loop over per-sample ``.npz`` files.

    ``--warmup-iters``, then ``--iters`` timed, then ``--trace-iters``
    recorded by ``torch.profiler``.
    """
    from mmpretrain.structures import DataSample

    from mmpcm.engine.schedulers.noam import noam_value
    from mmpcm.registry import MODELS
    cfg = common.load_config(RECIPES['paper'].configs[shape.key][0])
    cfg.merge_from_dict(common.model_overrides(shape, data.vocab_file,
                                               data.concept_file))
    cfg.merge_from_dict(_model_options(args.cfg_options))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=5e-4, betas=(0.9, 0.999))
    loader = _reference_loader(index, args.ref_workers,
                               args.ref_batch_size,
                               pin=device.type == 'cuda')
    batches = _cycle(loader)
    tracer = common.StepTracer(device, _trace_file(args, 'reference'))
    start = seconds = data_wait = 0.0
    timed_end = args.warmup_iters + args.iters
    for step in range(timed_end + args.trace_iters):
        if step == args.warmup_iters:
            common.synchronize(device)
            start = time.perf_counter()
        if step == timed_end:
            common.synchronize(device)
            seconds = time.perf_counter() - start
            tracer.start()
        fetch = time.perf_counter()
        features, g_feature, caps, scores = next(batches)
        if args.warmup_iters <= step < timed_end:
            data_wait += time.perf_counter() - fetch
        inputs = dict(patch_tokens=features.to(device, non_blocking=True),
                      global_embed=g_feature.to(device, non_blocking=True))
        samples = []
        for caption, score in zip(caps, scores.tolist(), strict=True):
            sample = DataSample()
            sample.gt_caption, sample.clip_score = caption, score
            samples.append(sample)
        loss = sum(model(inputs, samples, mode='loss').values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(params, 0.1)
        for group in optimizer.param_groups:
            group['lr'] = noam_value(step + 1)
        optimizer.step()
        loss.item()  # the release logs the loss every iteration
    trace = None
    if args.trace_iters:
        trace = tracer.stop(args.trace_iters)
    else:
        common.synchronize(device)
        seconds = time.perf_counter() - start
    result = common.ThroughputResult(
        name='reference (fp32)', device=common.describe_device(device),
        batch_size=args.ref_batch_size, iters=args.iters, seconds=seconds,
        items=args.iters * args.ref_batch_size,
        note=f'one .npz per sample ({args.ref_num_pairs:,} pairs), '
        f'{args.ref_workers} workers, plain loop',
        extra=dict(data_wait=data_wait / seconds))
    return ReferenceOutcome(result, trace)


# --------------------------------------------------------------------------
# the parts on their own: data loading, caption tokenization
# --------------------------------------------------------------------------
def time_loader(loader, batches: int, warmup: int = 2) -> float:
    """Pairs/s of a data loader alone (after ``warmup`` batches).

    ``batches`` batches are timed; fewer when an epoch is shorter.
    """
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            break
        count += _batch_len(batch)
    seconds = time.perf_counter() - start
    del it
    return count / seconds if seconds > 0 else float('nan')


def _batch_len(batch) -> int:
    if isinstance(batch, dict):  # pcm_collate
        return len(batch['data_samples'])
    return len(batch[2])  # the reference: (features, g, captions, scores)


def loader_only(args: argparse.Namespace, runs: Sequence[RunSettings],
                shape: common.ClipShape, data: BenchData,
                ref_index: Optional[List[dict]]) -> List[list]:
    """Table rows: each loader's pairs/s with no model behind it."""
    from mmengine.runner import Runner
    rows = []
    if ref_index is not None:
        loader = _reference_loader(ref_index, args.ref_workers,
                                   args.ref_batch_size, pin=False)
        rows.append(['reference: one .npz per sample, np.load',
                     args.ref_batch_size, args.ref_workers,
                     time_loader(loader, args.loader_batches)])
    from mmpcm.text.vocab import CaptionTokenizer, WordVocabulary
    tokenizer = CaptionTokenizer(WordVocabulary.load(data.vocab_file),
                                 max_len=20)
    for run in runs:
        cfg = build_runner_cfg(args, run, shape, data, 1)
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
        # As PCMCaptionIdsHook sets it up for training: ids in the loader.
        loader.dataset.set_caption_tokenizer(tokenizer)
        rows.append([f'{run.recipe.name}: packed store, SynthImgCapDataset '
                     '+ pcm_collate, captions tokenized', run.batch_size,
                     run.num_workers,
                     time_loader(loader, args.loader_batches)])
        del loader
    return rows


def tokenize_cost(vocab_file: str, captions: Sequence[str],
                  batch_sizes: Sequence[int], max_len: int = 20,
                  repeats: int = 5) -> List[list]:
    """Table rows: ms of ``WordVocabulary.encode_batch`` per batch.

    This is the host work that the caption head did inside every training
    step before ``PCMCaptionIdsHook`` moved it into the loader workers (and
    still does for string captions).
    """
    from mmpcm.text.vocab import WordVocabulary
    vocab = WordVocabulary.load(vocab_file)
    rows = []
    for batch in sorted(set(batch_sizes)):
        caps = list(captions[:batch])
        caps += caps * (batch // max(len(caps), 1))  # enough captions
        caps = caps[:batch]
        start = time.perf_counter()
        for _ in range(repeats):
            vocab.encode_batch(caps, max_len)
        ms = 1000 * (time.perf_counter() - start) / repeats
        budget = 1000 * batch / FAST_TARGET_PAIRS_PER_S
        rows.append([batch, ms, 1000 * ms / batch,
                     f'{100 * ms / budget:.0f}%'])
    return rows


FAST_TARGET_PAIRS_PER_S = 20_000
"""The issue's GPU target for the fast recipe."""


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def report(ref: common.ThroughputResult, outcomes: Sequence[RecipeOutcome],
           args: argparse.Namespace,
           ref_trace: Optional[common.TraceSummary] = None) -> str:
    """The results table, the tokenization shares, the breakdowns and the
    recorded windows (``--trace-iters``)."""
    headers = ['run', 'device', 'batch', 'pairs/s', 'ms/iter',
               'model TFLOP/s', 'data wait',
               'x reference' if not args.no_reference else f'x {ref.name}',
               f'epoch of {common.COCO_PAIRS:,} (s)', 'note']
    rows = []
    results = [o.result for o in outcomes]
    flops = outcomes[0].flops_per_pair  # same model in every run
    for res in ([ref] if ref not in results else []) + results:
        rows.append([res.name, res.device, res.batch_size, res.per_second,
                     res.ms_per_iter, res.per_second * flops / 1e12,
                     f'{100 * res.extra["data_wait"]:.0f}%',
                     f'{res.per_second / ref.per_second:.2f}x',
                     common.COCO_PAIRS / res.per_second, res.note])
    lines = [common.format_table(headers, rows), '',
             f'Model arithmetic: {flops / 1e9:.2f} GFLOP per training pair '
             f'(forward + backward, {CAPTION_POSITIONS} decoder positions); '
             f'{FAST_TARGET_PAIRS_PER_S:,} pairs/s needs '
             f'{FAST_TARGET_PAIRS_PER_S * flops / 1e12:.0f} TFLOP/s '
             'sustained.', '']
    for o in outcomes:
        if o.tokenize_share != o.tokenize_share:  # NaN: not instrumented
            continue
        lines.append(f'{o.result.name}: caption tokenization (Python, '
                     f'main process) = {100 * o.tokenize_share:.1f}% of the '
                     f'timed steady state at batch {o.result.batch_size}')
    for o in outcomes:
        if not o.breakdown:
            continue
        lines += ['', f'Step breakdown, {o.result.name}, batch '
                  f'{o.result.batch_size}, {args.profile_iters} iterations '
                  f'(device synchronised around each part: '
                  f'{o.profile_ms_per_iter:.1f} ms/iter):']
        rows = [[k, v, f'{100 * v / o.profile_ms_per_iter:.1f}%']
                for k, v in o.breakdown.items()]
        lines.append(common.format_table(['part', 'ms/iter', 'share'], rows))
    traces = ([(ref.name, ref_trace)] if ref_trace is not None else []) + [
        (o.result.name, o.trace) for o in outcomes if o.trace is not None]
    if traces:
        lines += ['', f'Host dispatch, {args.trace_iters} iterations under '
                  'torch.profiler after the others (per iteration; the '
                  'profiler slows the host):', trace_table(traces)]
    return '\n'.join(lines)


def trace_table(traces: Sequence[tuple]) -> str:
    """``(name, TraceSummary)`` pairs as a table."""
    rows = [[name, t.wall_ms, t.aten_ops, t.launches, t.device_kernels,
             t.device_ms, f'{100 * t.device_busy:.0f}%']
            for name, t in traces]
    return common.format_table(
        ['run', 'ms/iter (profiled)', 'ATen ops', 'kernel launches',
         'GPU kernels', 'GPU busy (ms)', 'GPU busy'], rows)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--recipe', nargs='+', choices=sorted(RECIPES),
                   default=['paper', 'fast'])
    p.add_argument('--clip', choices=sorted(common.CLIP_SHAPES),
                   default='vit-b32')
    p.add_argument('--device', help='cuda or cpu (default: cuda if present)')
    p.add_argument('--num-pairs', type=int, default=common.COCO_PAIRS,
                   help='pairs in the packed store')
    p.add_argument('--ref-num-pairs', type=int, default=20_000,
                   help='.npz files of the reference (steady state does not '
                   'depend on it once it exceeds the timed iterations)')
    p.add_argument('--iters', type=int, default=200,
                   help='timed iterations per run')
    p.add_argument('--warmup-iters', type=int, default=20)
    p.add_argument('--profile-iters', type=int, default=10,
                   help='iterations split into parts after the timed ones '
                   '(0: none)')
    p.add_argument('--batch-size', type=int,
                   help='batch of every recipe run (default: the recipe\'s)')
    p.add_argument('--num-workers', type=int,
                   help='loader workers of every recipe run (default: the '
                   'recipe\'s)')
    p.add_argument('--ref-workers', type=int, default=4)
    p.add_argument('--ref-batch-size', type=int, default=PAPER_BATCH,
                   help='the release trains at 32; smaller only for smoke '
                   'tests')
    p.add_argument('--trace-iters', type=int, default=5,
                   help='iterations of every loop recorded by torch.profiler '
                   'at the end: ATen ops, kernel launches, GPU busy time '
                   '(0: none)')
    p.add_argument('--trace-dir',
                   help='also write each recorded window as a Chrome trace '
                   'here')
    p.add_argument('--loader-only', action='store_true',
                   help='time the data loaders (and tokenization) alone: no '
                   'training run, no reference loop')
    p.add_argument('--loader-batches', type=int, default=50,
                   help='batches to time each data loader alone (0: skip)')
    p.add_argument('--threads', type=int,
                   help='torch threads of the main process (default: '
                   'torch\'s)')
    p.add_argument('--amp', action=argparse.BooleanOptionalAction,
                   help='bf16 autocast (GPU only; default: on for the fast '
                   'recipe on a GPU)')
    p.add_argument('--compile', nargs='?', const='modules',
                   choices=['modules', 'train_step'],
                   help='torch.compile: "modules" (default) compiles the '
                   'neck, encoder, decoder and loss in place; "train_step" '
                   'is mmengine\'s compile=True on the whole train step '
                   '(captions kept at max_len positions: fixed shapes)')
    p.add_argument('--compile-mode', default=None,
                   help='torch.compile mode, e.g. reduce-overhead (CUDA '
                   'graphs) or max-autotune (default: torch\'s)')
    p.add_argument('--no-reference', action='store_true',
                   help='skip the reference loop (no ratio column)')
    p.add_argument('--vocab-size', type=int, default=common.COCO_VOCAB_SIZE)
    p.add_argument('--shard-size', type=int, default=4096,
                   help='items per shard of the packed store')
    p.add_argument('--link-shards', action='store_true',
                   help='hard-link one shard\'s arrays into every shard '
                   '(saves the 41 GB and writing time; reads hit a warm '
                   'page cache)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='key=value overrides of every recipe config; the '
                   'model.* ones also reach the reference\'s model')
    p.add_argument('--workdir', default='work_dirs/benchmarks')
    p.add_argument('--json', help='also write the results here')
    args = p.parse_args(argv)
    if args.warmup_iters < 1 or args.iters < 1:
        p.error('--warmup-iters and --iters must be at least 1')
    if args.trace_iters < 0 or args.profile_iters < 0:
        p.error('--trace-iters and --profile-iters must be at least 0')
    if args.loader_only and args.loader_batches < 1:
        p.error('--loader-only times the loaders: --loader-batches must be '
                'at least 1')
    return args


def settings(args: argparse.Namespace, name: str,
             device: torch.device) -> RunSettings:
    recipe = RECIPES[name]
    amp = args.amp if args.amp is not None else (
        recipe.amp and device.type == 'cuda')
    if amp and device.type != 'cuda':
        raise SystemExit('--amp needs a CUDA GPU (mmengine AmpOptimWrapper).')
    return RunSettings(recipe, args.batch_size or recipe.batch_size,
                       recipe.num_workers if args.num_workers is None else
                       args.num_workers, amp, args.compile)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    device = common.start_benchmark(args.device, args.threads,
                                    with_mmpcm=True)
    shape = common.CLIP_SHAPES[args.clip]
    data = prepare_data(args, shape)
    runs = [settings(args, name, device) for name in args.recipe]
    index = (None if args.no_reference else
             prepare_reference_data(args, shape, data))
    loaders = []
    if args.loader_batches:
        loaders = loader_only(args, runs, shape, data, index)
    tokenize = tokenize_cost(
        data.vocab_file, common.random_captions(data.words, 1024, seed=2),
        [args.ref_batch_size, RECIPES['fast'].batch_size] +
        [r.batch_size for r in runs])
    ref = ref_trace = None
    if args.loader_only:
        runs = []
    elif index is not None:
        ref, ref_trace = run_reference(args, shape, data, index, device)
        print(f'reference: {ref.per_second:.1f} pairs/s')
    outcomes = []
    for run in runs:
        outcomes.append(run_recipe(args, run, shape, data, device))
        print(f'{outcomes[-1].result.name}: '
              f'{outcomes[-1].result.per_second:.1f} pairs/s')
    if ref is None and outcomes:  # ratio to the paper row, or to itself
        ref = outcomes[0].result
    print()
    print(f'# Training throughput, CLIP {shape.model} shapes '
          f'({shape.num_patches}x{shape.patch_dim} + {shape.embed_dim}), '
          f'vocabulary {args.vocab_size:,}; {common.describe_software()}; '
          f'at the end: {common.describe_load()}')
    if outcomes:
        print(report(ref, outcomes, args, ref_trace))
    if loaders:
        print(f'\nData loaders alone (no model), {args.loader_batches} '
              'batches after 2:')
        print(common.format_table(['loader', 'batch', 'workers', 'pairs/s'],
                                  loaders))
    print('\nCaption tokenization alone (WordVocabulary.encode_batch, '
          'main process, once per training step):')
    print(common.format_table(
        ['batch', 'ms/batch', 'us/caption',
         f'share of a {FAST_TARGET_PAIRS_PER_S:,} pairs/s step'], tokenize))
    common.write_json(args.json, dict(
        args=vars(args),
        reference=None if ref is None or args.no_reference else dict(
            ref.to_dict(), trace=ref_trace and ref_trace.to_dict()),
        loaders=loaders,
        tokenize=tokenize,
        runs=[dict(o.result.to_dict(), tokenize_share=o.tokenize_share,
                   flops_per_pair=o.flops_per_pair,
                   breakdown_ms=o.breakdown,
                   trace=o.trace and o.trace.to_dict())
              for o in outcomes]))


if __name__ == '__main__':
    main()
