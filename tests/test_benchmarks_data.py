"""Smoke tests of the data-preparation benchmarks at tiny sizes.

``benchmarks/extract_speed.py`` (CLIP feature extraction from 512 px JPEGs)
and ``benchmarks/generate_speed.py`` (Stable Diffusion generation) run
in-process, a few images each; their figures are recorded in
docs/benchmarks.md, never checked here.
"""
import importlib.util
import json
import os.path as osp

from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _load(name):
    path = osp.join(ROOT, 'benchmarks', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'bench_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
                'end to end: torchvision decode on cpu', 'bottleneck',
                'target >= 2,000 images/s'):
        assert row in text
    result = json.loads(out_json.read_text())
    rows = result['models'][0]['rows']
    assert all(r['per_second'] > 0 for r in rows)
    e2e = next(r for r in rows if r['name'].startswith('end to end: ext'))
    assert e2e['items'] == 6 and e2e['extra']['steady_per_second'] > 0
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
    assert 'mmpcm settings (mmpcm: DPM-Solver++ 25 steps, batch 2 + ' \
        'channels_last) / reference' in text
    result = json.loads(out_json.read_text())
    rows = result['rows']
    assert [(r['extra']['scheduler'], r['extra']['steps'], r['batch_size'])
            for r in rows] == [('PNDMScheduler', 50, 1),
                               ('DPMSolverMultistepScheduler', 25, 1),
                               ('DPMSolverMultistepScheduler', 25, 2),
                               ('DPMSolverMultistepScheduler', 25, 2)]
    assert rows[-1]['extra']['channels_last']
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
