"""Smoke tests of the benchmark scripts: tiny sizes, real CLIP shapes.

The scripts' figures are recorded in docs/benchmarks.md; here they only have
to run end to end (Runner + packed store, the .npz reference, profiling) and
report sane numbers. They run in-process (``benchmarks`` is importable from
the repo root, as with ``python -m benchmarks.<script>``).
"""
import importlib
import json
import os.path as osp

import pytest
import torch
from PIL import Image

from mmpcm.datasets.feature_store import FeatureStore

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Smaller than the paper model where it does not change the code path: one
# transformer layer per stack, and a one-layer random CLIP with ViT-B/32's
# widths (768-wide patches, 7x7 grid, 512-d space) instead of the full
# ViT-B/32, whose random initialisation alone takes seconds. A custom CLIP
# is named 'custom'; the neck is told it stands for ViT-B-32, the CLIP of
# the benchmark's concept file.
SMALL_MODEL = [
    'model.encoder.num_layers=1', 'model.head.num_layers=1',
    'model.neck.clip_model=ViT-B-32',
    'model.backbone.model_name=None', 'model.backbone.model_cfg.embed_dim=512',
    'model.backbone.model_cfg.vision_cfg.image_size=224',
    'model.backbone.model_cfg.vision_cfg.patch_size=32',
    'model.backbone.model_cfg.vision_cfg.width=768',
    'model.backbone.model_cfg.vision_cfg.layers=1',
    'model.backbone.model_cfg.text_cfg.width=32',
    'model.backbone.model_cfg.text_cfg.heads=2',
    'model.backbone.model_cfg.text_cfg.layers=1',
]


def _load(name):
    return importlib.import_module(f'benchmarks.{name}')


def test_train_throughput_smoke(tmp_path, capsys):
    bench = _load('train_throughput')
    out_json = tmp_path / 'train.json'
    bench.main([
        '--recipe', 'paper', 'fast', '--num-pairs', '40',
        '--shard-size', '16', '--link-shards', '--ref-num-pairs', '12',
        '--iters', '1', '--warmup-iters', '1', '--profile-iters', '1',
        '--batch-size', '4', '--ref-batch-size', '4', '--num-workers', '0',
        '--ref-workers', '0', '--loader-batches', '2', '--vocab-size', '64',
        '--trace-iters', '2', '--trace-dir', str(tmp_path / 'traces'),
        '--workdir', str(tmp_path), '--json', str(out_json),
        '--cfg-options', *SMALL_MODEL])
    text = capsys.readouterr().out
    for row in ('| reference (fp32)', '| paper (fp32)', '| fast (fp32)',
                'Step breakdown, fast (fp32)', 'Host dispatch, 2 iterations',
                'paper (fp32): target >= 2x the reference',
                'fast (fp32): target >= 20,000 pairs/s'):
        assert row in text
    result = json.loads(out_json.read_text())
    assert result['reference']['per_second'] > 0
    # Every loop's last 2 iterations were recorded: operators on the CPU,
    # no kernels; one Chrome trace each.
    for trace in [result['reference']['trace']] + [
            r['trace'] for r in result['runs']]:
        assert trace['iters'] == 2 and trace['aten_ops'] > 100
        assert trace['launches'] == trace['device_kernels'] == 0
    for name in ('reference', 'paper_fp32', 'fast_fp32'):
        chrome = json.loads((tmp_path / 'traces' / f'{name}.json').read_text())
        assert chrome['traceEvents']
    assert [r['name'] for r in result['runs']] == ['paper (fp32)',
                                                   'fast (fp32)']
    for run in result['runs']:
        assert run['per_second'] > 0 and run['batch_size'] == 4
        assert run['decoder_positions'] == 20  # the head's max_len
        assert run['breakdown_ms']['backward'] > 0
    # The hard-linked store reads as a normal store of 40 pairs (3 shards,
    # the short last one with its own arrays).
    store = FeatureStore(tmp_path / 'data' / 'synth_vit-b32_40_16_v64_linked')
    assert len(store) == 40 and len(store.shards) == 3
    assert store.get(39).patch_tokens.shape == (49, 768)
    assert store.records[39]['image_id'] == 39


def test_step_tracer_counts_top_level_operators(tmp_path):
    common = _load('common')
    x, w = torch.randn(4, 8), torch.randn(3, 8)
    tracer = common.StepTracer(torch.device('cpu'))
    tracer.start()
    for _ in range(3):
        # aten::linear runs aten::t and aten::mm (or addmm) inside it: one
        # trip through the dispatcher from Python, counted once.
        y = torch.nn.functional.linear(x, w)
        y.add_(1)
    summary = tracer.stop(iters=3)
    assert summary.aten_ops == 2
    assert summary.launches == summary.device_kernels == 0
    assert summary.device_ms == 0 and summary.wall_ms > 0
    with pytest.raises(RuntimeError, match='before start'):
        tracer.stop(iters=1)


def test_train_throughput_loader_only(tmp_path, capsys):
    bench = _load('train_throughput')
    out_json = tmp_path / 'loaders.json'
    bench.main([
        '--recipe', 'paper', 'fast', '--num-pairs', '40',
        '--shard-size', '16', '--link-shards', '--no-reference',
        '--batch-size', '4', '--num-workers', '0', '--loader-batches', '2',
        '--loader-only', '--vocab-size', '64', '--workdir', str(tmp_path),
        '--json', str(out_json)])
    text = capsys.readouterr().out
    assert 'Data loaders alone' in text and '| paper (fp32)' not in text
    result = json.loads(out_json.read_text())
    assert result['runs'] == [] and result['reference'] is None
    assert [row[0].split(':')[0] for row in result['loaders']] == [
        'paper', 'fast']
    assert all(row[-1] > 0 for row in result['loaders'])
    with pytest.raises(SystemExit):
        bench.parse_args(['--loader-only', '--loader-batches', '0'])


def test_decode_speed_smoke(tmp_path, capsys):
    bench = _load('decode_speed')
    out_json = tmp_path / 'decode.json'
    bench.main([
        '--num-images', '6', '--batch-size', '3', '--beam', '2',
        '--max-len', '3', '--vocab-size', '64', '--profile',
        '--kv-cache', 'on', 'off',
        '--workdir', str(tmp_path), '--json', str(out_json),
        '--cfg-options', *SMALL_MODEL])
    text = capsys.readouterr().out
    assert '| reference (fp32, eager, no KV cache)' in text
    assert '| fp32, eager, KV cache' in text
    assert '| fp32, eager, no KV cache' in text
    result = json.loads(out_json.read_text())
    assert [r['items'] for r in result['runs']] == [6, 6, 6]
    assert all(r['per_second'] > 0 for r in result['runs'])
    parts = result['profile']  # profiled with the cache: one position a step
    assert parts['kv_cache'] and parts['positions'] == parts['steps'] <= 3
    assert parts['decoder cross-attention'] > 0
    assert parts['decoder self-attention'] > 0 and parts['decoder FFN'] > 0
    assert all(parts[k] >= 0 for k in bench.PARTS)  # nothing counted twice
    assert parts['total'] == pytest.approx(
        sum(parts[k] for k in bench.PARTS), rel=1e-6)
    # The class methods timed for the profile are restored afterwards.
    from mmpcm.models.utils.kv_cache import CachedDecoder
    assert CachedDecoder.step.__qualname__ == 'CachedDecoder.step'
    assert CachedDecoder.__init__.__qualname__ == 'CachedDecoder.__init__'


def test_word_list_and_captions():
    common = _load('common')
    words = common.make_word_list(10196)
    assert len(set(words)) == 10196 and all(w.isalpha() for w in words)
    caps = common.random_captions(words[:50], 2000, seed=0)
    lengths = [len(c.split()) for c in caps]
    assert min(lengths) == 8 and max(lengths) <= 40
    assert 10 < sum(lengths) / len(lengths) < 11  # COCO's mean: 10.5
    assert caps == common.random_captions(words[:50], 2000, seed=0)


def test_feature_store_shards_repeat_the_first(tmp_path):
    """Written in full (no links), later shards hold the first shard's rows
    rolled by their index; a second call reuses the store."""
    common = _load('common')
    shape = common.CLIP_SHAPES['vit-b32']
    captions = [f'caption {i}' for i in range(40)]
    logs = []
    root = str(tmp_path / 'store')
    common.write_feature_store(root, captions, shape, shard_size=16,
                               log=logs.append)
    store = FeatureStore(root)
    assert len(store) == 40 and [s.count for s in store.shards] == [16, 16, 8]
    record = store.records[17]
    assert (record['image_id'], record['caption']) == (17, 'caption 17')
    # shard 1, row 1 = first shard's row 0 (rolled by one)
    assert (store.get(17).patch_tokens == store.get(0).patch_tokens).all()
    common.write_feature_store(root, captions, shape, shard_size=16,
                               log=logs.append)
    assert logs[-1].startswith('reusing feature store')


def test_random_test_features_repeat_a_stored_block(tmp_path):
    common = _load('common')
    shape = common.CLIP_SHAPES['vit-b32']
    feats = common.random_test_features(str(tmp_path / 'test'), 5, shape)
    assert feats['patch_tokens'].shape == (5, 49, 768)
    assert feats['global_embed'].dtype == torch.float16
    again = common.random_test_features(str(tmp_path / 'test'), 5, shape)
    assert torch.equal(feats['patch_tokens'], again['patch_tokens'])


# Data-preparation benchmarks (extract_speed.py, generate_speed.py).
def test_extract_speed_smoke(tmp_path, capsys):
    bench = _load('extract_speed')
    out_json = tmp_path / 'extract.json'
    # ViT-B/32's widths, patch and image size, one layer per tower.
    bench.main([
        '--model', 'vit-b32', '--layers', '1', '--num-images', '6',
        '--batch-size', '3', '--workers', '0', '1', '--warmup-batches', '1',
        '--model-iters', '1', '--gpu-decode', '--device', 'cpu',
        '--workdir', str(tmp_path), '--json', str(out_json)])
    text = capsys.readouterr().out
    for row in ('| vit-b32 | decode only, 0 workers', '| vit-b32 | model only',
                'end to end: extract_features, 1 workers',
                'end to end: torchvision decode on cpu (extract_features '
                '--decode device), 1 workers', 'read files only, 1 workers',
                'bottleneck', 'target >= 2,000 images/s'):
        assert row in text
    result = json.loads(out_json.read_text())
    rows = result['models'][0]['rows']
    assert all(r['per_second'] > 0 for r in rows)
    e2e = next(r for r in rows if r['name'].startswith('end to end: ext'))
    assert e2e['items'] == 6 and e2e['extra']['steady_per_second'] > 0
    # --gpu-decode runs the tool's --decode device path into a store.
    dev = next(r for r in rows if '--decode device' in r['name'])
    assert dev['items'] == 6 and dev['extra']['steady_per_second'] > 0
    # The device path reproduces the PIL transform up to rounding.
    assert result['models'][0]['pixel_diff'] < 1.0
    with Image.open(tmp_path / 'jpeg512' / 'img_0000005.jpg') as img:
        assert img.size == (512, 512) and img.format == 'JPEG'


def test_extract_images_reused(tmp_path):
    bench = _load('extract_speed')
    logs = []
    items = bench.prepare_images(str(tmp_path), 2, log=logs.append)
    assert [it.image_id for it in items] == ['img_0000000', 'img_0000001']
    assert bench.prepare_images(str(tmp_path), 2, log=logs.append) == items
    assert len(logs) == 1  # the second call wrote nothing
    assert 20 < bench.mean_file_kb(items) < 200  # SD-like, not pure noise


def test_generate_speed_smoke(tmp_path, capsys):
    bench = _load('generate_speed')
    out_json = tmp_path / 'generate.json'
    bench.main([
        '--arch', 'tiny', '--num-images', '2', '--batch-size', '2',
        '--ref-num-images', '1', '--warmup', '0', '--device', 'cpu',
        '--workdir', str(tmp_path), '--json', str(out_json)])
    text = capsys.readouterr().out
    assert '| reference: diffusers default call' in text
    result = json.loads(out_json.read_text())
    rows = result['rows']
    best = max(rows[1:], key=lambda r: r['per_second'])
    assert result['mmpcm_setting'] == best['name']
    assert f"mmpcm settings ({best['name']}) / reference" in text
    assert [(r['extra']['scheduler'], r['extra']['steps'], r['batch_size'])
            for r in rows] == [('PNDMScheduler', 50, 1),
                               ('DPMSolverMultistepScheduler', 25, 1),
                               ('DPMSolverMultistepScheduler', 25, 2),
                               ('DPMSolverMultistepScheduler', 25, 2),
                               ('DPMSolverMultistepScheduler', 25, 2)]
    assert [r['extra']['write_workers'] for r in rows] == [0, 0, 0, 0, 4]
    assert rows[-1]['extra']['channels_last']
    assert 'background writing (4 threads)' in rows[-1]['name']
    assert all(r['per_second'] > 0 for r in rows)
    assert result['image_size'] == 32 and result['speedup'] > 0


def test_sd15_architecture(tmp_path):
    """The random SD v1.5 has SD v1.5's parameter counts (built on meta)."""
    bench = _load('generate_speed')
    pipe = bench.build_sd15_pipeline(str(tmp_path), safety_checker=False,
                                     device='meta')
    params = bench.component_params(pipe)
    assert params == bench.SD15_PARAMS
    assert bench.image_size(pipe) == 512
    assert type(pipe.scheduler).__name__ == 'PNDMScheduler'


def test_scheduler_swap_is_dpm_solver_pp():
    """mmpcm's swap (``from_config`` of SD v1.5's PNDM config) gives
    second-order DPM-Solver++ on SD v1.5's noise schedule."""
    import diffusers
    bench = _load('generate_speed')
    pndm = diffusers.PNDMScheduler.from_config(bench.SD15_SCHEDULER)
    swapped = diffusers.DPMSolverMultistepScheduler.from_config(pndm.config)
    assert swapped.config.algorithm_type == 'dpmsolver++'
    assert swapped.config.solver_order == 2
    assert swapped.config.beta_schedule == 'scaled_linear'
    assert swapped.config.steps_offset == 1


def test_run_all_passes_every_script_flags_it_accepts(tmp_path):
    """Each step of benchmarks/run_all.sh, dry-run, parses with its script's
    own argument parser (a typo would otherwise surface on the GPU)."""
    import subprocess
    proc = subprocess.run(
        ['bash', osp.join(ROOT, 'benchmarks', 'run_all.sh'), str(tmp_path),
         'train', 'decode', 'extract', 'generate', 'refine', 'compile'],
        env={'DRY_RUN': '1', 'PATH': '/usr/bin:/bin'}, capture_output=True,
        text=True, check=True)
    lines = proc.stdout.splitlines()
    names = [line.split('\t')[0] for line in lines]
    assert names == ['train', 'decode', 'extract', 'generate', 'refine',
                     'compile_train_paper', 'compile_train_paper_inductor',
                     'compile_train_fast', 'compile_decode',
                     'compile_generate']
    for line in lines:
        name, module, *argv = line.split('\t')
        argv = [a for a in argv if a]
        args = importlib.import_module(module).parse_args(argv)
        assert args.json == str(tmp_path / f'{name}.json')
    bad = subprocess.run(
        ['bash', osp.join(ROOT, 'benchmarks', 'run_all.sh'), str(tmp_path),
         'tain'], env={'DRY_RUN': '1', 'PATH': '/usr/bin:/bin'},
        capture_output=True, text=True)
    assert bad.returncode == 2 and 'unknown step: tain' in bad.stderr


def test_input_checks_speed_smoke(tmp_path, capsys):
    bench = _load('input_checks_speed')
    out_json = tmp_path / 'checks.json'
    status = bench.main(['--num-images', '3', '--size', '64', '48',
                         '--num-captions', '50', '--repeats', '1',
                         '--workdir', str(tmp_path), '--json',
                         str(out_json)])
    assert status == 0
    text = capsys.readouterr().out
    assert '| check_image, jpg 64x48' in text and '| tokenize_caption' in text
    results = json.loads(out_json.read_text())['results']
    assert results['jpg']['check_ms'] > 0 and results['png']['load_ms'] > 0
    assert results['tokenize']['coco_seconds'] > 0


def test_refine_speed_smoke(tmp_path, capsys):
    bench = _load('refine_speed')
    out_json = tmp_path / 'refine.json'
    status = bench.main(['--num-pairs', '300', '--clip-dim', '16',
                         '--sentence-dim', '8', '--chunk-size', '64',
                         '--time-fraction', '0.4', '--device', 'cpu',
                         '--json', str(out_json)])
    assert status == 0
    text = capsys.readouterr().out
    assert 'LINEAR EXTRAPOLATION' in text and '| stage 2 cycle scores' in text
    result = json.loads(out_json.read_text())
    assert (result['chunks'], result['chunks_run']) == (5, 2)
    assert result['queries_run'] == 128 and result['extrapolated']
    assert result['total_extrapolated'] >= result['total_measured'] > 0


def test_gallery_speed_smoke(tmp_path, capsys):
    bench = _load('gallery_speed')
    out_json = tmp_path / 'gallery.json'
    assert bench.main(['--num-images', '6', '--small-num-images', '2',
                       '--image-size', '16', '--workdir', str(tmp_path),
                       '--json', str(out_json)]) == 0
    assert '| 6 ' in capsys.readouterr().out
    result = json.loads(out_json.read_text())
    assert result['write_s_6'] > 0 and result['open_s_6'] is None
