"""Training throughput of PCM-Net (pairs/s), the way users train.

Targets, on one GPU with ViT-B/32 shapes:

* the paper recipe (batch 32, fp32) at >= 2x the pairs/s of the reference
  loop below, in the same run;
* the fast recipe at >= 20,000 pairs/s, so that one SynthImgCap-COCO epoch
  (542,401 pairs) takes < 30 s.

How it is measured: each recipe runs through the mmengine Runner built from
the repo's config (``configs/pcm/pcm_coco.py`` for ``--recipe paper``,
``pcm_coco_fast.py`` for ``--recipe fast``), its data loader reading a
packed feature store (docs/feature_format.md) of random features of the
real shapes, captions tokenized in the loader by the training pipeline's
``PCMTokenizeCaption`` into ``(max_len + 1,)`` id rows. Only the steady
state is timed: ``--iters`` iterations after ``--warmup-iters``, from the
end of one iteration to the end of another, so loading, logging and
optimizer work are all inside.

In the same run a reference loop trains the same model the release's way:
one ``.npz`` per sample (``features``, ``g_feature``, float32) read by a
plain torch Dataset with ``np.load`` (captions tokenized there too), batch
32, fp32, ``--ref-workers`` workers, a hand-written forward/backward/step.
Every row's speed-up is its pairs/s over the reference's.

Then ``--profile-iters`` more iterations of each recipe are split into data
wait, to device, neck + encoder, decoder, loss, backward and optimizer step
(the device synchronised around each part). Last, ``--trace-iters``
iterations of every loop, the reference's included, run under
``torch.profiler``: ATen operators, kernel launches and GPU busy time per
iteration, the measure of a host-bound step (``--trace-dir`` also writes
Chrome traces). Before the training runs, each data loader is timed alone
(``--loader-batches``, tokenizing as in training).

Example (GPU, full scale; docs/benchmarks.md has the recorded figures)::

    python -m benchmarks.train_throughput --recipe paper fast --link-shards

Example (CPU, small)::

    python -m benchmarks.train_throughput --recipe paper --num-pairs 20000 \
        --ref-num-pairs 20000 --iters 20 --warmup-iters 3 --threads 1
"""
import argparse
import os
import os.path as osp
import re
import time
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch

from benchmarks import common

PAPER_BATCH = 32
PAPER_TARGET_RATIO = 2.0
"""The paper recipe's target: pairs/s over the reference loop's."""
FAST_TARGET_PAIRS_PER_S = 20_000
"""The fast recipe's target on one GPU."""
EPOCH_TARGET_S = 30.0
"""One SynthImgCap-COCO epoch of the fast recipe, on one GPU."""


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

    ``compile`` is None (eager), ``'modules'`` (the ``forward`` of the
    neck, encoder, decoder and loss compiled in place) or ``'train_step'``
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
            on for the profile phase). Off for mmengine's compiled train
            step, where the patched methods would break the graph. Defaults
            to True.
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
        self.start = self.stop = None
        self.data_wait = 0.0
        self.last_end = None
        self.profile_start = self.profile_stop = None

    def before_train(self, runner) -> None:
        if self.instrument:
            self.watches = instrument(runner, self.device)
        self._set_watches(False)

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
        if it == self.warmup + self.iters - 1:
            self.stop = now
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
    cfg.merge_from_dict(common.model_overrides(data.vocab_file,
                                               data.concept_file))
    cfg.merge_from_dict(args.cfg_options or {})
    loader = cfg.train_dataloader
    loader.dataset.data_root = data.store
    # Captions become id rows in the loader workers, as the configs train.
    loader.dataset.pipeline = [dict(
        type='PCMTokenizeCaption', vocab=data.vocab_file,
        max_len=cfg.model.head.get('max_len', 20))]
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


PROFILE_PARTS = ('data wait', 'to device', 'neck + encoder', 'decoder',
                 'loss', 'backward', 'optimizer step')


def instrument(runner, device: torch.device) -> Dict[str, common.Stopwatch]:
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
    return watches


@dataclass
class RecipeOutcome:
    """A recipe's timed result and its step breakdown."""
    result: common.ThroughputResult
    flops_per_pair: float
    positions: int  # decoder positions per caption (the head's max_len)
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
    watches = timer.watches
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
    model = _unwrap(runner.model)
    positions = model.head.max_len  # every batch: max_len positions
    flops = common.ModelDims.of(model).train_flops_per_pair(positions)
    return RecipeOutcome(result, flops, positions, breakdown, profile_ms,
                         timer.trace)


def _trace_file(args: argparse.Namespace, name: str) -> Optional[str]:
    """Where ``--trace-dir`` keeps the Chrome trace of run ``name``."""
    if not args.trace_dir:
        return None
    slug = re.sub(r'[^0-9A-Za-z]+', '_', name).strip('_')  # paper_fp32
    return osp.join(args.trace_dir, f'{slug}.json')


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

    Captions are tokenized here, in the loader workers, into the id rows
    the caption head trains on (the release loads its captions as ids too).

    Args:
        index (list[dict]): ``path``, ``caption``, ``clip_score`` per pair.
        vocab (WordVocabulary): The word vocabulary.
        max_len (int): The head's ``max_len``.
    """

    def __init__(self, index: Sequence[dict], vocab, max_len: int) -> None:
        self.index = list(index)
        self.vocab, self.max_len = vocab, max_len

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        rec = self.index[i]
        with np.load(rec['path']) as npz:
            features = torch.from_numpy(npz['features'])  # (N, Dv) float32
            g_feature = torch.from_numpy(npz['g_feature'])  # (D,) float32
        ids = self.vocab.encode_row(rec['caption'], self.max_len)  # (L+1,)
        return (features, g_feature, torch.from_numpy(ids),
                np.float32(rec['clip_score']))


def _model_options(options: Optional[dict]) -> dict:
    """The ``model.*`` part of ``--cfg-options`` (the reference's model)."""
    return {k: v for k, v in (options or {}).items()
            if k == 'model' or k.startswith('model.')}


def reference_config(args: argparse.Namespace, shape: common.ClipShape,
                     data: 'BenchData'):
    """The paper config with the benchmark's files and model overrides."""
    cfg = common.load_config(RECIPES['paper'].configs[shape.key][0])
    cfg.merge_from_dict(common.model_overrides(data.vocab_file,
                                               data.concept_file))
    cfg.merge_from_dict(_model_options(args.cfg_options))
    return cfg


def _reference_loader(index: Sequence[dict], vocab_file: str, max_len: int,
                      workers: int, batch_size: int,
                      pin: bool) -> torch.utils.data.DataLoader:
    """The release's loader: shuffled, default collate, no persistence."""
    from mmpcm.text import WordVocabulary
    pairs = NpzPairs(index, WordVocabulary.load(vocab_file), max_len)
    return torch.utils.data.DataLoader(
        pairs, batch_size=batch_size, shuffle=True,
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
    return common.write_npz_samples(npz_dir, captions, data.store)


REFERENCE_INPUTS = ('patch_tokens', 'global_embed', 'caption_ids',
                    'clip_score')
"""The model's input names of the reference loader's batch fields."""


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
    from mmpcm.engine import noam_value
    from mmpcm.registry import MODELS
    cfg = reference_config(args, shape, data)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=5e-4, betas=(0.9, 0.999))
    loader = _reference_loader(index, data.vocab_file, model.head.max_len,
                               args.ref_workers,
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
        batch = next(batches)
        if args.warmup_iters <= step < timed_end:
            data_wait += time.perf_counter() - fetch
        inputs = {key: value.to(device, non_blocking=True)
                  for key, value in zip(REFERENCE_INPUTS, batch,
                                        strict=True)}
        loss = sum(model(inputs, mode='loss').values())
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
# the data loaders on their own
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
    return len(batch[2])  # the reference: (features, g, caption ids, scores)


def loader_only(args: argparse.Namespace, runs: Sequence[RunSettings],
                shape: common.ClipShape, data: BenchData,
                ref_index: Optional[List[dict]]) -> List[list]:
    """Table rows: each loader's pairs/s with no model behind it."""
    from mmengine.runner import Runner
    rows = []
    if ref_index is not None:
        max_len = reference_config(args, shape, data).model.head.get(
            'max_len', 20)
        loader = _reference_loader(ref_index, data.vocab_file, max_len,
                                   args.ref_workers, args.ref_batch_size,
                                   pin=False)
        rows.append(['reference: one .npz per sample, np.load',
                     args.ref_batch_size, args.ref_workers,
                     time_loader(loader, args.loader_batches)])
    for run in runs:
        cfg = build_runner_cfg(args, run, shape, data, 1)
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
        rows.append([f'{run.recipe.name}: packed store, SynthImgCapDataset '
                     '+ PCMTokenizeCaption + pcm_collate', run.batch_size,
                     run.num_workers,
                     time_loader(loader, args.loader_batches)])
        del loader
    return rows


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def report(ref: common.ThroughputResult, outcomes: Sequence[RecipeOutcome],
           args: argparse.Namespace,
           ref_trace: Optional[common.TraceSummary] = None) -> str:
    """The results table, the targets, the breakdowns and the recorded
    windows (``--trace-iters``)."""
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
             f'(forward + backward, {outcomes[0].positions} decoder '
             f'positions); {FAST_TARGET_PAIRS_PER_S:,} pairs/s needs '
             f'{FAST_TARGET_PAIRS_PER_S * flops / 1e12:.0f} TFLOP/s '
             'sustained.', '']
    lines += target_lines(ref, outcomes, args)
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


def target_lines(ref: common.ThroughputResult,
                 outcomes: Sequence[RecipeOutcome],
                 args: argparse.Namespace) -> List[str]:
    """Each recipe against its target (the targets are for one GPU)."""
    lines = []
    for o in outcomes:
        res = o.result
        on = (' (a GPU target, measured on a CPU)'
              if res.device.startswith('CPU') else '')
        if res.name.startswith('paper') and not args.no_reference:
            ratio = res.per_second / ref.per_second
            verdict = 'met' if ratio >= PAPER_TARGET_RATIO else 'not met'
            lines.append(f'{res.name}: target >= {PAPER_TARGET_RATIO:.0f}x '
                         f'the reference: {ratio:.2f}x, {verdict}{on}')
        elif res.name.startswith('fast'):
            epoch = common.COCO_PAIRS / res.per_second
            verdict = ('met' if res.per_second >= FAST_TARGET_PAIRS_PER_S
                       and epoch < EPOCH_TARGET_S else 'not met')
            lines.append(f'{res.name}: target >= '
                         f'{FAST_TARGET_PAIRS_PER_S:,} pairs/s and an epoch '
                         f'< {EPOCH_TARGET_S:.0f} s: {res.per_second:,.1f} '
                         f'pairs/s, {epoch:,.1f} s, {verdict}{on}')
    return lines


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
                   help='time the data loaders (captions tokenized) alone: '
                   'no training run, no reference loop')
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
                   'is mmengine\'s compile=True on the whole train step')
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
                   '(one shard\'s disk space and writing time; reads hit a '
                   'warm page cache)')
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
    """Recipe ``name``'s run after the command line is applied."""
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
    device = common.start_benchmark(args.device, args.threads)
    shape = common.CLIP_SHAPES[args.clip]
    data = prepare_data(args, shape)
    runs = [settings(args, name, device) for name in args.recipe]
    index = (None if args.no_reference else
             prepare_reference_data(args, shape, data))
    loaders = []
    if args.loader_batches:
        loaders = loader_only(args, runs, shape, data, index)
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
    common.write_json(args.json, dict(
        args=vars(args),
        reference=None if ref is None or args.no_reference else dict(
            ref.to_dict(), trace=ref_trace and ref_trace.to_dict()),
        loaders=loaders,
        runs=[dict(o.result.to_dict(), flops_per_pair=o.flops_per_pair,
                   decoder_positions=o.positions,
                   breakdown_ms=o.breakdown,
                   trace=o.trace and o.trace.to_dict())
              for o in outcomes]))


if __name__ == '__main__':
    main()
