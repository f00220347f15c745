"""Caption decoding speed of PCM-Net from CLIP features (captions/s).

Target: the 5,000 Karpathy test images captioned with beam 3 in < 5 s on
one GPU (ViT-B/32 shapes).

How it is measured: captions ``--num-images`` test images (default 5,000)
from random float16 features of the real shapes, the way ``tools/test.py``
does per batch: features to the device, PCM neck (append mode) + encoder,
batched beam search (``--beam``, default 3), ids to text. The model is built
from the paper config with random weights, so no sentence ends early: every
batch decodes the full ``max_len`` steps (a trained model stops a batch once
all its beams have ended; with hundreds of images per batch that is close
to the longest caption, so the figures are a mild upper bound).

Rows: a reference (fp32, eager, batch 64 = the configs' former test batch,
and no KV cache: the decoder re-run over the whole prefix at every step),
then every ``--precision`` x (eager, and compiled with ``--compile``) x
``--kv-cache`` at ``--batch-size``. ``--profile`` splits decoding into its
parts, the device synchronised around each: neck + encoder, the decoder's
self-attention, cross-attention and feed-forward (between the layers' norm
calls, with or without the cache: the first ``--kv-cache`` setting), its
output projection (the new position only), the search itself (log-softmax,
top-k, gathers) and ids-to-text.

Example (GPU)::

    python -m benchmarks.decode_speed --precision fp32 bf16 --compile

Example (CPU, small)::

    python -m benchmarks.decode_speed --num-images 500 --batch-size 250
"""
import argparse
import contextlib
import os
import os.path as osp
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from benchmarks import common

TARGET_SECONDS = 5.0
"""Seconds to caption the 5,000 test images on one GPU."""
REFERENCE_BATCH = 64  # the configs' former test_dataloader.batch_size
PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


@dataclass(frozen=True)
class DecodeSettings:
    """One measured configuration."""
    precision: str
    batch_size: int
    compile: bool
    kv_cache: bool = True
    reference: bool = False

    @property
    def name(self) -> str:
        if self.reference:
            return 'reference (fp32, eager, no KV cache)'
        mode = 'compiled' if self.compile else 'eager'
        cache = 'KV cache' if self.kv_cache else 'no KV cache'
        return f'{self.precision}, {mode}, {cache}'


# --------------------------------------------------------------------------
# model and inputs
# --------------------------------------------------------------------------
def build_model(args: argparse.Namespace, shape: common.ClipShape,
                device: torch.device):
    """The paper config's captioner, random weights, eval mode."""
    from mmpcm.registry import MODELS
    data_dir = osp.join(args.workdir, 'data')
    os.makedirs(data_dir, exist_ok=True)
    vocab_file = osp.join(data_dir, f'vocab_{args.vocab_size}.json')
    common.write_vocabulary(vocab_file, args.vocab_size)
    concept_file = osp.join(data_dir, f'concepts_{shape.key}.safetensors')
    common.write_concepts(concept_file, shape)
    cfg = common.load_config(shape.config)
    cfg.merge_from_dict(common.model_overrides(vocab_file, concept_file))
    cfg.merge_from_dict(args.cfg_options or {})
    torch.manual_seed(0)
    return MODELS.build(cfg.model).to(device).eval()


def batches(features: Dict[str, torch.Tensor],
            batch_size: int) -> List[Dict[str, torch.Tensor]]:
    """Split pinned-or-not host features into batches."""
    n = features['global_embed'].shape[0]
    return [{k: v[i:i + batch_size] for k, v in features.items()}
            for i in range(0, n, batch_size)]


def _autocast(device: torch.device, precision: str):
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


COMPILE_TARGETS = ('encoder', 'head.decoder', 'head.output')


@contextlib.contextmanager
def compiled(model, enabled: bool):
    """Compile the encoder and the decoder stacks for the body.

    Their ``forward`` is compiled in place with dynamic shapes (the prefix
    grows every step, the last batch may be smaller) and restored
    afterwards, so later rows run eager.
    """
    if not enabled:
        yield
        return
    common.compile_modules(model, COMPILE_TARGETS, dynamic=True)
    try:
        yield
    finally:
        common.uncompile_modules(model, COMPILE_TARGETS)


def caption_all(model, host_batches: Sequence[Dict[str, torch.Tensor]],
                device: torch.device, precision: str) -> List[str]:
    """Caption every batch; returns the captions."""
    captions = []
    with torch.inference_mode(), _autocast(device, precision):
        for batch in host_batches:
            inputs = {k: v.to(device, non_blocking=True)
                      for k, v in batch.items()}
            samples = model.predict(inputs)
            captions.extend(s.pred_caption for s in samples)
    return captions


def run_setting(model, features: Dict[str, torch.Tensor],
                run: DecodeSettings, args: argparse.Namespace,
                device: torch.device) -> common.ThroughputResult:
    """Warm up on ``--warmup-batches`` batches, then time all images."""
    host = batches(features, run.batch_size)
    model.head.kv_cache = run.kv_cache
    with compiled(model, run.compile):
        caption_all(model, host[:args.warmup_batches], device, run.precision)
        common.synchronize(device)
        start = time.perf_counter()
        captions = caption_all(model, host, device, run.precision)
        common.synchronize(device)
        seconds = time.perf_counter() - start
    n = len(captions)
    return common.ThroughputResult(
        name=run.name, device=common.describe_device(device),
        batch_size=run.batch_size, iters=len(host), seconds=seconds, items=n,
        note=f'beam {args.beam}, {n:,} images',
        extra=dict(seconds_per_5000=seconds * common.COCO_TEST_IMAGES / n))


# --------------------------------------------------------------------------
# profile
# --------------------------------------------------------------------------
PARTS = ('neck + encoder', 'decoder self-attention',
         'decoder cross-attention', 'decoder FFN',
         'decoder other (norms, embedding, dropout)', 'output projection',
         'search and rest (log-softmax, top-k, gathers)', 'ids to text')
LAYER_PARTS = PARTS[1:4]

# The part between two marks of a decoder layer: 'begin' (a decoder call
# starts), 'n1<' (norm1 called), 'n1>' (norm1 returned), ..., 'end'.
POST_NORM_SEGMENTS = {
    ('begin', 'n1<'): 'decoder self-attention',
    ('n3>', 'n1<'): 'decoder self-attention',
    ('n1>', 'n2<'): 'decoder cross-attention',
    ('n2>', 'n3<'): 'decoder FFN',
}
PRE_NORM_SEGMENTS = {
    ('n1>', 'n2<'): 'decoder self-attention',
    ('n2>', 'n3<'): 'decoder cross-attention',
    ('n3>', 'n1<'): 'decoder FFN',
    ('n3>', 'end'): 'decoder FFN',
}


class LayerPartTimer:
    """Times a decoder layer's self-attention, cross-attention and FFN.

    ``nn.TransformerDecoderLayer`` and the KV-cached decoder both run each
    of the three once per layer, next to one of the layer's ``norm1``,
    ``norm2``, ``norm3`` (after it with ``norm_first``, before it
    otherwise). Forward hooks on the norms mark the boundaries, the device
    synchronised; the time between two marks goes to the part it holds.
    Norms themselves and the rest stay in "decoder other".

    Args:
        layers (Sequence[nn.TransformerDecoderLayer]): The decoder's layers.
        watches (dict): Stopwatches of :data:`LAYER_PARTS` (their
            ``seconds`` grow).
        device (torch.device): Synchronised at every mark.
    """

    def __init__(self, layers, watches: Dict[str, common.Stopwatch],
                 device: torch.device) -> None:
        self.watches, self.device = watches, device
        self.segments = (PRE_NORM_SEGMENTS if layers[0].norm_first else
                         POST_NORM_SEGMENTS)
        self.last = None  # (label, time) of the latest mark
        self.handles = []
        for layer in layers:
            for k, norm in enumerate((layer.norm1, layer.norm2, layer.norm3),
                                     start=1):
                self.handles += [
                    norm.register_forward_pre_hook(self.marker(f'n{k}<')),
                    norm.register_forward_hook(self.marker(f'n{k}>'))]

    def marker(self, label: str):
        """A forward (pre-)hook that marks ``label``."""
        return lambda *args: self.mark(label)

    def mark(self, label: str) -> None:
        """Record a boundary; ``'begin'``/``'end'`` bracket a decoder call."""
        common.synchronize(self.device)
        now = time.perf_counter()
        if self.last is not None:
            part = self.segments.get((self.last[0], label))
            if part is not None:
                self.watches[part].seconds += now - self.last[1]
        self.last = None if label == 'end' else (label, now)

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self.handles:
            handle.remove()


def _wrap_parts(model, watches: Dict[str, common.Stopwatch],
                decoder: common.Stopwatch) -> List[tuple]:
    """Instance-patch the timed methods; returns ``(object, name)`` pairs."""
    head = model.head
    patched = [(model, 'encode', watches['neck + encoder']),
               (head.decoder, 'forward', decoder),
               (head.output, 'forward', watches['output projection']),
               (head, 'decode_text', watches['ids to text'])]
    for obj, name, watch in patched:
        common.wrap_timed(obj, name, watch)
    return [(obj, name) for obj, name, _ in patched]


@contextlib.contextmanager
def _patched_class(cls, methods: Dict[str, callable]):
    """Replace ``cls``'s methods for the body; restored afterwards."""
    originals = {name: cls.__dict__[name] for name in methods}
    for name, method in methods.items():
        setattr(cls, name, method)
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(cls, name, original)


def profile(model, features: Dict[str, torch.Tensor],
            args: argparse.Namespace, device: torch.device,
            precision: str, kv_cache: bool) -> Dict[str, float]:
    """Seconds per part for ``--profile-batches`` batches (synchronised).

    Returns:
        dict: Seconds by part, plus ``total``, ``steps`` (decoder calls per
        batch) and ``positions`` (prefix positions computed per beam row).
    """
    from mmpcm.models.utils.kv_cache import CachedDecoder
    head = model.head
    head.kv_cache = kv_cache
    watches = {name: common.Stopwatch(device) for name in PARTS}
    decoder, total = common.Stopwatch(device), common.Stopwatch(device)
    counts = dict(steps=0, positions=0)
    patched = _wrap_parts(model, watches, decoder)
    layers = LayerPartTimer(head.decoder.layers, watches, device)
    hooks = [head.decoder.register_forward_pre_hook(layers.marker('begin')),
             head.decoder.register_forward_hook(layers.marker('end'))]
    head_decode = head.decode
    cached_init, cached_step = CachedDecoder.__init__, CachedDecoder.step

    def counted(input_ids, *a, **kw):
        counts['steps'] += 1
        counts['positions'] += input_ids.shape[1]
        return head_decode(input_ids, *a, **kw)

    def timed_init(self, *a, **kw):  # memory K/V projected once per batch
        with decoder.section():
            cached_init(self, *a, **kw)

    def counted_step(self, x):
        counts['steps'] += 1
        counts['positions'] += 1
        with decoder.section():
            layers.mark('begin')
            out = cached_step(self, x)
            layers.mark('end')
        return out

    head.decode = counted
    patched.append((head, 'decode'))
    host = batches(features, args.batch_size[0])[:args.profile_batches]
    try:
        with _patched_class(CachedDecoder, {'__init__': timed_init,
                                            'step': counted_step}), \
                total.section():
            caption_all(model, host, device, precision)
    finally:
        layers.remove()
        for handle in hooks:
            handle.remove()
        for obj, name in patched:
            obj.__dict__.pop(name, None)
    seconds = {k: w.seconds for k, w in watches.items()}
    inside = sum(seconds[k] for k in LAYER_PARTS)
    seconds[PARTS[4]] = decoder.seconds - inside
    seconds[PARTS[6]] = total.seconds - decoder.seconds - sum(
        seconds[k] for k in (PARTS[0], PARTS[5], PARTS[7]))
    seconds['total'] = total.seconds
    seconds['steps'] = counts['steps'] / len(host)
    seconds['positions'] = counts['positions'] / len(host)
    seconds['kv_cache'] = kv_cache
    return seconds


def top_ops(model, features: Dict[str, torch.Tensor],
            args: argparse.Namespace, device: torch.device,
            precision: str, rows: int = 12) -> str:
    """torch.profiler's table of the ops with the most self time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    activities = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    host = batches(features, args.batch_size[0])[:1]
    with torch_profile(activities=activities) as prof:
        caption_all(model, host, device, precision)
        common.synchronize(device)
    key = ('self_device_time_total' if device.type == 'cuda' else
           'self_cpu_time_total')
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def profile_report(parts: Dict[str, float],
                   dims: common.ModelDims) -> str:
    """Parts table, recomputation count and the FLOPs arithmetic."""
    total = parts['total']
    rows = [[name, parts[name], f'{100 * parts[name] / total:.1f}%']
            for name in PARTS]
    steps = int(round(parts['steps']))
    now = dims.decode_flops_per_row(steps, cached=False)
    cached = dims.decode_flops_per_row(steps, cached=True)
    flops = [[k, now[k] / 1e9, f'{100 * now[k] / now["total"]:.0f}%',
              cached[k] / 1e9] for k in now]
    mode = ('KV cache' if parts['kv_cache'] else
            'no KV cache: the whole prefix every step')
    lines = [
        common.format_table(['part', 'seconds', 'share'], rows), '',
        f'Decoder calls per batch: {steps}; positions computed per beam '
        f'row: {parts["positions"]:.0f} ({mode}; only the new position is '
        'projected to the vocabulary).', '',
        'Decoder arithmetic per beam row (GFLOP), without vs. with the KV '
        'cache (memory K/V projected once, one new position per step; '
        f'{now["total"] / cached["total"]:.1f}x fewer):',
        common.format_table(['part', 'no cache', 'share', 'KV cache'],
                            flops)]
    return '\n'.join(lines)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--clip', choices=sorted(common.CLIP_SHAPES),
                   default='vit-b32')
    p.add_argument('--device', help='cuda or cpu (default: cuda if present)')
    p.add_argument('--num-images', type=int,
                   default=common.COCO_TEST_IMAGES)
    p.add_argument('--beam', type=int, default=3)
    p.add_argument('--batch-size', type=int, nargs='+', default=[1000],
                   help='batch sizes to measure (the first is profiled)')
    p.add_argument('--precision', nargs='+', choices=sorted(PRECISIONS),
                   default=['fp32'], help='fp32 and/or autocast bf16/fp16')
    p.add_argument('--compile', action='store_true',
                   help='also measure each row with the encoder and decoder '
                   'torch.compile\'d')
    p.add_argument('--kv-cache', nargs='+', choices=['on', 'off'],
                   default=['on'], help='decode with and/or without the key/'
                   'value cache (the first is profiled)')
    p.add_argument('--no-reference', action='store_true',
                   help='skip the batch-64 fp32 eager no-cache reference row')
    p.add_argument('--warmup-batches', type=int, default=1)
    p.add_argument('--profile', action='store_true',
                   help='split decoding into parts and list the top ops')
    p.add_argument('--profile-batches', type=int, default=1)
    p.add_argument('--vocab-size', type=int, default=common.COCO_VOCAB_SIZE)
    p.add_argument('--max-len', type=int,
                   help='decode at most this many tokens (default: the '
                   'config\'s 20; smaller only for smoke tests)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='key=value overrides of the config (model.*)')
    p.add_argument('--threads', type=int,
                   help='torch threads (default: torch\'s)')
    p.add_argument('--workdir', default='work_dirs/benchmarks')
    p.add_argument('--json', help='also write the results here')
    return p.parse_args(argv)


def target_line(results: Sequence[common.ThroughputResult],
                device: torch.device) -> str:
    """The fastest row against the target (a GPU target)."""
    best = min(results, key=lambda r: r.extra['seconds_per_5000'])
    seconds = best.extra['seconds_per_5000']
    verdict = 'met' if seconds < TARGET_SECONDS else 'not met'
    on = ' (a GPU target, measured on a CPU)' if device.type != 'cuda' else ''
    return (f'target < {TARGET_SECONDS:.0f} s for {common.COCO_TEST_IMAGES:,}'
            f' images: {seconds:,.2f} s ({best.name}, batch '
            f'{best.batch_size}), {verdict}{on}')


def settings(args: argparse.Namespace) -> List[DecodeSettings]:
    """The reference row, then every precision x batch x cache (x compiled)."""
    runs = [] if args.no_reference else [
        DecodeSettings('fp32', REFERENCE_BATCH, False, kv_cache=False,
                       reference=True)]
    for precision in args.precision:
        for batch in args.batch_size:
            for cache in args.kv_cache:
                runs.append(DecodeSettings(precision, batch, False,
                                           kv_cache=cache == 'on'))
                if args.compile:
                    runs.append(DecodeSettings(precision, batch, True,
                                               kv_cache=cache == 'on'))
    return runs


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    device = common.start_benchmark(args.device, args.threads)
    shape = common.CLIP_SHAPES[args.clip]
    model = build_model(args, shape, device)
    model.head.beam_size = args.beam
    if args.max_len is not None:
        if not 1 <= args.max_len <= model.head.max_len:
            raise SystemExit(f'--max-len must be in [1, '
                             f'{model.head.max_len}]')
        model.head.max_len = args.max_len
    features = common.random_test_features(
        osp.join(args.workdir, 'data', f'test_{shape.key}'), args.num_images,
        shape)
    if device.type == 'cuda':
        features = {k: v.pin_memory() for k, v in features.items()}
    results = []
    for run in settings(args):
        results.append(run_setting(model, features, run, args, device))
        print(f'{run.name}, batch {run.batch_size}: '
              f'{results[-1].per_second:.1f} captions/s')
    ref = results[0]
    print()
    print(f'# Decoding, CLIP {shape.model} shapes, beam {args.beam}, '
          f'max_len {model.head.max_len}, vocabulary {args.vocab_size:,}; '
          f'{common.describe_software()}; at the end: '
          f'{common.describe_load()}')
    headers = ['run', 'device', 'batch', 'captions/s',
               f's per {common.COCO_TEST_IMAGES:,} images', 'x reference',
               'note']
    rows = [[r.name, r.device, r.batch_size, r.per_second,
             r.extra['seconds_per_5000'],
             f'{r.per_second / ref.per_second:.2f}x', r.note]
            for r in results]
    print(common.format_table(headers, rows))
    print(target_line(results, device))
    parts = None
    if args.profile:
        precision = args.precision[0]
        parts = profile(model, features, args, device, precision,
                        kv_cache=args.kv_cache[0] == 'on')
        print(f'\nDecoding parts, {precision}, eager, kv_cache '
              f'{args.kv_cache[0]}, batch '
              f'{args.batch_size[0]}, {args.profile_batches} batch(es), '
              'device synchronised around each part:')
        print(profile_report(parts, common.ModelDims.of(model)))
        print('\nTop ops (torch.profiler, one batch):')
        print(top_ops(model, features, args, device, precision))
    common.write_json(args.json, dict(
        args=vars(args), runs=[r.to_dict() for r in results],
        profile=parts))


if __name__ == '__main__':
    main()
