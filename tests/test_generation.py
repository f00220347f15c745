"""Synthetic image generation: tiny random SD pipeline, end to end.

The pipeline is saved with ``save_pretrained`` and loaded back by the tool's
own loading path (``DiffusionPipeline.from_pretrained(folder)``).
"""
import importlib.util
import json
import logging
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import mmpcm.registry  # noqa: F401  (compat patches first)
from mmpcm.preprocessing import generation as gen
from mmpcm.preprocessing.generation import generate as gen_generate
from mmpcm.preprocessing.generation import sampling as gen_sampling
from mmpcm.preprocessing.generation import writing as gen_writing
from mmpcm.preprocessing.generation import (GenerationConfig, PipelineImage,
                                            generate_images, item_seed,
                                            load_generation_records,
                                            read_caption_file)
from mmpcm.preprocessing.sharding import (RankInfo, contiguous_block,
                                          get_rank_info, strided_ids)
from mmpcm.utils.fileio import is_tmp_name, tmp_path_for
from mmpcm.testing.pipelines import TINY_SD_SIZE, save_tiny_sd_pipeline
from mmpcm.utils.cli import InputError

from tool_loader import load_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CAPTIONS = [f'a photo of {w}' for w in (
    'a dog', 'a cat on a sofa', 'two horses', 'a red ball', 'a green tree',
    'a man riding a bike', 'a plate of food', 'a train at a station',
    'a boat on a lake', 'a kite in the sky', 'a bowl of fruit', 'a clock')]
# Lines 3 (empty) and 6 (not UTF-8) are skipped: 12 captions, indices with
# gaps at 2 and 5.
CAPTION_BYTES = b''.join([
    CAPTIONS[0].encode() + b'\n', CAPTIONS[1].encode() + b'\r\n', b'   \n',
    CAPTIONS[2].encode() + b'\n', CAPTIONS[3].encode() + b'\n',
    b'caf\xe9 au lait\n'] + [c.encode() + b'\n' for c in CAPTIONS[4:]])
INDICES = [0, 1, 3, 4] + list(range(6, 14))


@pytest.fixture(scope='module', autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a busy 2-core machine, 2 threads spin-wait
    and run the tiny pipeline 5-20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory) -> str:
    return save_tiny_sd_pipeline(tmp_path_factory.mktemp('sd') / 'tiny_sd')


@pytest.fixture(scope='module')
def captions_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp('corpus') / 'captions.txt'
    path.write_bytes(CAPTION_BYTES)
    return str(path)


def _config(model_dir, **kwargs) -> GenerationConfig:
    cfg = dict(model=model_dir, num_inference_steps=2, height=TINY_SD_SIZE,
               width=TINY_SD_SIZE, chunk_size=4, batch_size=4,
               image_format='png')
    cfg.update(kwargs)
    return GenerationConfig(**cfg)


@pytest.fixture(scope='module')
def reference(model_dir, captions_file, tmp_path_factory) -> str:
    """A clean single-process run (PNG) to compare other runs against."""
    out = str(tmp_path_factory.mktemp('ref') / 'out')
    generate_images(captions_file, out, _config(model_dir), RankInfo(),
                    progress=False)
    return out


def _pixels(out: str) -> dict:
    """Caption index -> decoded pixels of every recorded ok image."""
    return {
        i: np.asarray(Image.open(osp.join(out, r.file)).convert('RGB'))
        for i, r in load_generation_records(out).items() if r.status == 'ok'
    }


def _all_files(out: str) -> list:
    return sorted(osp.relpath(osp.join(r, f), out) for r, _, fs in os.walk(out)
                  for f in fs)


# --------------------------------------------------------------------------
# caption file and rank helpers
# --------------------------------------------------------------------------
def test_read_caption_file_reports_bad_lines(captions_file, caplog):
    with caplog.at_level(logging.WARNING):
        corpus = read_caption_file(captions_file)
    assert [it.index for it in corpus.items] == INDICES
    assert [it.caption for it in corpus.items] == CAPTIONS
    assert [(s.lineno, s.reason.split(' ')[0]) for s in corpus.skipped] == [
        (3, 'empty'), (6, 'not')]
    assert f'{captions_file}:3: empty' in caplog.text
    assert f'{captions_file}:6: not UTF-8' in caplog.text
    assert corpus.num_lines == 14 and corpus.caption_at(2) is None
    with pytest.raises(FileNotFoundError, match='missing.txt: no such caption corpus'):
        read_caption_file(osp.join(osp.dirname(captions_file),
                                   'missing.txt'))


def test_rank_info_and_splits():
    assert get_rank_info({}) == RankInfo(0, 1, 0)
    assert get_rank_info(dict(RANK='3', WORLD_SIZE='4',
                              LOCAL_RANK='1')) == RankInfo(3, 4, 1)
    assert get_rank_info(dict(LOCAL_RANK='1', WORLD_SIZE='2')) == RankInfo(
        1, 2, 1)
    with pytest.raises(ValueError, match=r'RANK must be in \[0, 2\)'):
        get_rank_info(dict(RANK='2', WORLD_SIZE='2'))
    with pytest.raises(ValueError, match='not an integer'):
        get_rank_info(dict(RANK='x'))
    for n in (0, 1, 7, 10):
        for world in (1, 2, 3):
            ranks = [RankInfo(r, world) for r in range(world)]
            for split in (strided_ids, contiguous_block):
                ids = [i for info in ranks for i in split(n, info)]
                assert sorted(ids) == list(range(n))  # no gap, no overlap


def test_item_seeds_are_distinct_and_stable():
    seeds = {item_seed(0, i, a) for i in range(100) for a in range(3)}
    assert len(seeds) == 300 and max(seeds) < 2**63
    assert item_seed(0, 5, 1) == item_seed(0, 5, 1) != item_seed(1, 5, 1)


# --------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------
def test_generate_layout_meta_and_records(reference, model_dir,
                                          captions_file):
    records = load_generation_records(reference)
    assert sorted(records) == INDICES
    for i, caption in zip(INDICES, CAPTIONS):
        r = records[i]
        assert r.caption == caption and r.status == 'ok'
        assert r.file == f'images/{i // 4:06d}/{i:09d}.png'
        assert r.seed == item_seed(0, i, 0)
        assert [a.result for a in r.attempts] == ['ok']
        image = Image.open(osp.join(reference, r.file))
        assert image.size == (TINY_SD_SIZE, TINY_SD_SIZE)
    assert sorted(os.listdir(osp.join(reference, 'records'))) == [
        f'chunk_{c:06d}.json' for c in range(4)]
    with open(osp.join(reference, 'generation_meta.json')) as f:
        meta = json.load(f)
    s = meta['settings']
    assert s['model'] == osp.abspath(model_dir)
    assert s['pipeline_class'] == 'StableDiffusionPipeline'
    assert s['scheduler'] == 'DDIMScheduler'
    assert s['scheduler_config']['beta_schedule'] == 'scaled_linear'
    assert (s['num_inference_steps'], s['guidance_scale'], s['height'],
            s['width'], s['dtype'], s['seed']) == (2, 7.5, 32, 32,
                                                   'float32', 0)
    assert s['captions_num_lines'] == 14
    assert set(meta['versions']) == {'diffusers', 'torch', 'transformers'}


def test_rerun_skips_and_other_settings_are_refused(reference, model_dir,
                                                    captions_file):
    before = {p: os.path.getmtime(osp.join(reference, p))
              for p in _all_files(reference)}
    summary = generate_images(captions_file, reference, _config(model_dir),
                              progress=False)
    assert (summary.assigned, summary.already_done, summary.generated) == (
        12, 12, 0)
    assert {p: os.path.getmtime(osp.join(reference, p))
            for p in _all_files(reference)} == before
    with pytest.raises(ValueError) as err:  # refused before loading
        generate_images(captions_file, reference,
                        _config(model_dir, num_inference_steps=3),
                        progress=False)
    assert 'num_inference_steps: recorded 2, now 3' in str(err.value)
    with pytest.raises(ValueError, match="scheduler: recorded 'DDIMScheduler"
                       "', now 'EulerDiscreteScheduler'"):
        generate_images(captions_file, reference,
                        _config(model_dir, scheduler='EulerDiscreteScheduler'),
                        progress=False)


def test_other_scheduler_is_recorded(model_dir, captions_file, tmp_path):
    summary = generate_images(
        captions_file, tmp_path / 'out',
        _config(model_dir, scheduler='DPMSolverMultistepScheduler',
                image_format='jpg', chunk_size=100, batch_size=12),
        progress=False)
    assert summary.generated == 12
    with open(tmp_path / 'out' / 'generation_meta.json') as f:
        settings = json.load(f)['settings']
    assert settings['scheduler'] == 'DPMSolverMultistepScheduler'
    assert settings['jpeg_quality'] == 95
    assert osp.isfile(tmp_path / 'out' / 'images' / '000000' /
                      '000000013.jpg')


def test_two_ranks_split_without_overlap_or_gap(reference, model_dir,
                                                captions_file, tmp_path,
                                                monkeypatch):
    out = str(tmp_path / 'out')
    done = {}
    for rank in (0, 1):
        monkeypatch.setenv('RANK', str(rank))
        monkeypatch.setenv('WORLD_SIZE', '2')
        monkeypatch.setenv('LOCAL_RANK', str(rank))
        before = set(load_generation_records(out)) if rank else set()
        summary = generate_images(captions_file, out, _config(model_dir),
                                  progress=False)
        done[rank] = set(load_generation_records(out)) - before
        assert summary.generated == len(done[rank])
    # chunk c (4 captions) belongs to rank c % 2
    assert done[0] == {i for i in INDICES if (i // 4) % 2 == 0}
    assert done[1] == {i for i in INDICES if (i // 4) % 2 == 1}
    # Same per-item seeds and batches: bit-identical to one process.
    ref, got = _pixels(reference), _pixels(out)
    assert sorted(got) == INDICES
    assert all(np.array_equal(ref[i], got[i]) for i in INDICES)


def test_resume_after_a_crash_mid_write(reference, model_dir, captions_file,
                                        tmp_path, monkeypatch):
    out = str(tmp_path / 'out')
    real_save = gen.save_image
    calls = []

    def crash_on_sixth(path, image, image_format):
        calls.append(path)
        if len(calls) == 6:  # half an image in the temporary file, then die
            with open(tmp_path_for(path), 'wb') as f:
                f.write(b'\x89PNG\r\n\x1a\n' + b'\0' * 10)
            raise KeyboardInterrupt('simulated crash')
        real_save(path, image, image_format)

    monkeypatch.setattr(gen_writing, 'save_image', crash_on_sixth)
    with pytest.raises(KeyboardInterrupt):  # written batch by batch
        generate_images(captions_file, out,
                        _config(model_dir, write_workers=0), progress=False)
    # Only the first batch (chunk 0: captions 0, 1, 3) is complete; images 4
    # and 6 were saved but their batch was not recorded; image 7 exists only
    # as a temporary file.
    assert sorted(load_generation_records(out)) == [0, 1, 3]
    chunk1 = osp.join(out, 'images', '000001')
    assert sorted(os.listdir(chunk1)) == [
        f'.000000007.png.tmp-{os.getpid()}', '000000004.png', '000000006.png']

    monkeypatch.setattr(gen_writing, 'save_image', real_save)
    summary = generate_images(captions_file, out, _config(model_dir),
                              progress=False)
    assert (summary.already_done, summary.generated) == (3, 9)
    assert not [f for f in _all_files(out) if is_tmp_name(osp.basename(f))]
    records = load_generation_records(out)
    assert sorted(records) == INDICES  # every item exactly once
    image_files = [f for f in _all_files(out) if f.startswith('images')]
    assert sorted(image_files) == sorted(records[i].file for i in INDICES)
    ref, got = _pixels(reference), _pixels(out)
    assert all(np.array_equal(ref[i], got[i]) for i in INDICES)


def _output_bytes(out: str) -> dict:
    """Every image and record file of a run, by relative path."""
    files = {}
    for rel in _all_files(out):
        if rel.startswith(('images', 'records')):
            with open(osp.join(out, rel), 'rb') as f:
                files[rel] = f.read()
    return files


def test_background_writing_writes_what_synchronous_writing_writes(
        reference, model_dir, captions_file, tmp_path):
    assert _config(model_dir).write_workers > 0  # the reference's default
    out = str(tmp_path / 'out')
    generate_images(captions_file, out, _config(model_dir, write_workers=0),
                    progress=False)
    ref = _output_bytes(reference)
    assert sorted(ref) == sorted(_output_bytes(out))
    assert ref == _output_bytes(out)


def test_images_are_written_while_the_next_batch_is_generated(
        model_dir, captions_file, tmp_path, monkeypatch):
    """Batch 1's images are saved only once batch 2's pipeline call has
    started; writing in the generating thread would wait here in vain."""
    import threading
    second_call = threading.Event()
    real_run, real_save = gen_sampling.run_pipeline, gen_writing.save_image
    calls, overlapped = [], []

    def run(pipe, prompts, seeds, config):
        calls.append(len(prompts))
        if len(calls) == 2:
            second_call.set()
        return real_run(pipe, prompts, seeds, config)

    def save(path, image, image_format):
        if osp.basename(path) == '000000000.png':  # batch 1
            overlapped.append(second_call.wait(timeout=20))
        real_save(path, image, image_format)

    monkeypatch.setattr(gen_sampling, 'run_pipeline', run)
    monkeypatch.setattr(gen_writing, 'save_image', save)
    summary = generate_images(captions_file, tmp_path / 'out',
                              _config(model_dir, write_workers=2),
                              progress=False)
    assert summary.generated == 12 and overlapped == [True]


def test_a_failed_write_stops_the_run_and_records_only_whole_batches(
        reference, model_dir, captions_file, tmp_path, monkeypatch):
    out = str(tmp_path / 'out')
    real_save = gen_writing.save_image

    def disk_full_on_image_6(path, image, image_format):
        if osp.basename(path) == '000000006.png':
            raise OSError(28, 'No space left on device')
        real_save(path, image, image_format)

    monkeypatch.setattr(gen_writing, 'save_image', disk_full_on_image_6)
    with pytest.raises(OSError, match='No space left'):
        generate_images(captions_file, out,
                        _config(model_dir, write_workers=3), progress=False)
    # Batch 1 (chunk 0) is recorded; batch 2 (captions 4, 6, 7) lost an
    # image, so neither it nor any later batch is.
    assert sorted(load_generation_records(out)) == [0, 1, 3]
    monkeypatch.setattr(gen_writing, 'save_image', real_save)
    summary = generate_images(captions_file, out, _config(model_dir),
                              progress=False)
    assert (summary.already_done, summary.generated) == (3, 9)
    assert _output_bytes(out) == _output_bytes(reference)


def test_an_interrupted_run_keeps_every_batch_it_generated(
        reference, model_dir, captions_file, tmp_path, monkeypatch):
    out = str(tmp_path / 'out')
    real_run = gen_sampling.run_pipeline
    calls = []

    def interrupt_third_call(pipe, prompts, seeds, config):
        calls.append(prompts)
        if len(calls) == 3:
            raise KeyboardInterrupt('Ctrl-C')
        return real_run(pipe, prompts, seeds, config)

    monkeypatch.setattr(gen_sampling, 'run_pipeline', interrupt_third_call)
    with pytest.raises(KeyboardInterrupt):
        generate_images(captions_file, out,
                        _config(model_dir, write_workers=4), progress=False)
    assert sorted(load_generation_records(out)) == [0, 1, 3, 4, 6, 7]
    ref = _output_bytes(reference)
    got = _output_bytes(out)
    for rel in got:
        if rel.startswith('images'):
            assert got[rel] == ref[rel]


def test_write_workers_must_be_a_count(model_dir):
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match='write_workers'):
            _config(model_dir, write_workers=bad)


def test_degenerate_and_nsfw_images_are_regenerated(model_dir, captions_file,
                                                    tmp_path, monkeypatch):
    real_run = gen.run_pipeline
    blank_seed = item_seed(0, 3, 0)  # first try of caption 3: constant
    nsfw_index = 7  # every try of caption 7: flagged by the safety checker
    nsfw_seeds = {item_seed(0, nsfw_index, a) for a in range(3)}

    def faulty(pipe, prompts, seeds, config):
        outputs = real_run(pipe, prompts, seeds, config)
        fixed = []
        for seed, out in zip(seeds, outputs):
            if seed == blank_seed:
                out = PipelineImage(np.full_like(out.image, 128), False)
            elif seed in nsfw_seeds:
                out = PipelineImage(np.zeros_like(out.image), True)
            fixed.append(out)
        return fixed

    monkeypatch.setattr(gen_sampling, 'run_pipeline', faulty)
    out = str(tmp_path / 'out')
    summary = generate_images(captions_file, out, _config(model_dir),
                              progress=False)
    assert summary.failed == [nsfw_index] and summary.regenerated == 1
    records = load_generation_records(out)
    r3 = records[3]
    assert r3.status == 'ok' and r3.seed == item_seed(0, 3, 1)
    assert [(a.seed, a.result) for a in r3.attempts] == [
        (blank_seed, 'degenerate'), (item_seed(0, 3, 1), 'ok')]
    assert r3.attempts[0].pixel_std == 0.0 and r3.attempts[1].pixel_std > 2
    r7 = records[nsfw_index]
    assert r7.status == 'failed' and r7.file is None and r7.seed is None
    assert [a.result for a in r7.attempts] == ['nsfw'] * 3
    assert not osp.exists(osp.join(out, 'images', '000001', '000000007.png'))
    # a failed item is finished: a rerun does not retry it
    monkeypatch.setattr(gen_sampling, 'run_pipeline', real_run)
    assert generate_images(captions_file, out, _config(model_dir),
                           progress=False).generated == 0


# --------------------------------------------------------------------------
# input robustness: long prompts, non-finite pixels, empty caption files
# --------------------------------------------------------------------------
LONG_WORDS = ('a man in a red shirt is riding a brown horse next to a small '
              'white dog on a sunny day while two children play with a blue '
              'ball near the old wooden fence').split()  # 1 token each
LONG_CAPTION = ' '.join((LONG_WORDS * 3)[:94])  # 94 words: 96 tokens


def test_long_caption_is_recorded_as_truncated(model_dir, tmp_path, caplog):
    path = tmp_path / 'captions.txt'
    path.write_text(f'a photo of a dog.\n{LONG_CAPTION}\n')
    out = str(tmp_path / 'out')
    with caplog.at_level(logging.WARNING):
        summary = generate_images(path, out, _config(model_dir),
                                  progress=False)
    assert summary.truncated_prompts == 1 and summary.generated == 2
    assert "1 caption(s) were longer than the text encoder's context (77 " \
        'tokens) and were truncated' in caplog.text
    short, long_ = (load_generation_records(out)[i] for i in (0, 1))
    assert (short.prompt_tokens, short.prompt_truncated,
            short.prompt_used) == (8, False, None)  # 5 words, '.', BOS, EOS
    assert long_.status == 'ok' and long_.caption == LONG_CAPTION
    assert (long_.prompt_tokens, long_.prompt_truncated) == (96, True)
    # 75 words + BOS + EOS = 77: what the text encoder saw
    assert long_.prompt_used == ' '.join(LONG_CAPTION.split()[:75])
    pipe = gen.load_pipeline(model_dir)
    assert len(pipe.tokenizer(long_.prompt_used).input_ids) == 77
    # the records of a rerun stay as they are (nothing is regenerated)
    again = generate_images(path, out, _config(model_dir), progress=False)
    assert (again.already_done, again.truncated_prompts) == (2, 0)


def _nan_red_channel_pipeline(model_dir):
    """The tiny pipeline with a NaN bias on the VAE's red output: the red
    channel of every image is NaN, green and blue stay varied (a plain
    uint8 conversion would pass it as a valid image)."""
    pipe = gen.load_pipeline(model_dir)
    with torch.no_grad():
        pipe.vae.decoder.conv_out.bias[0] = float('nan')
    return pipe


def test_nonfinite_images_fail_and_a_rerun_retries_them(model_dir, tmp_path,
                                                        caplog):
    path = tmp_path / 'captions.txt'
    path.write_text('a dog\na cat\n')
    out = str(tmp_path / 'out')
    with caplog.at_level(logging.WARNING):
        summary = generate_images(path, out, _config(model_dir),
                                  progress=False,
                                  pipeline=_nan_red_channel_pipeline(
                                      model_dir))
    assert summary.failed == [0, 1] and summary.generated == 0
    assert summary.retry_on_rerun == [0, 1]
    assert 'a rerun tries them again' in caplog.text
    records = load_generation_records(out)
    for r in records.values():
        assert (r.status, r.file, r.seed) == ('failed', None, None)
        assert [a.result for a in r.attempts] == ['nonfinite'] * 3
        assert all(a.pixel_std > 2 for a in r.attempts)  # not just blank
        assert r.reason == ('3 attempt(s) rejected: 3 x non-finite pixels '
                            '(NaN/inf; a rerun tries again)')
        assert r.retry_on_rerun
    assert not os.listdir(osp.join(out, 'images', '000000'))
    # a rerun with sound weights makes them (unlike a content failure)
    summary = generate_images(path, out, _config(model_dir), progress=False)
    assert (summary.already_done, summary.generated) == (0, 2)
    records = load_generation_records(out)
    assert [records[i].status for i in (0, 1)] == ['ok', 'ok']
    assert records[0].reason is None and not records[0].retry_on_rerun


@pytest.mark.parametrize('content', [b'', b'\n  \n\t\n', b'\xff\n\n'])
def test_empty_caption_file_is_refused_before_loading(model_dir, tmp_path,
                                                      monkeypatch, content):
    path = tmp_path / 'captions.txt'
    path.write_bytes(content)
    loaded = _spy_load_pipeline(monkeypatch)
    out = tmp_path / 'out'
    with pytest.raises(InputError) as err:
        generate_images(path, out, _config(model_dir), progress=False)
    assert str(err.value).startswith(f'{path}: no captions in it (')
    assert str(err.value).endswith('; give a text file with one caption '
                                   'per line')
    assert loaded == [] and not out.exists()


def test_command_line_refuses_an_empty_caption_file(model_dir, tmp_path,
                                                     capsys):
    path = tmp_path / 'captions.txt'
    path.write_text('\n\n')
    out = tmp_path / 'out'
    status = load_tool('data/generate_images').main(
        [str(path), str(out), '--model', model_dir, '--no-progress'])
    assert status != 0
    assert f'{path}: no captions in it (2 line(s): 2 empty, 0 unreadable); ' \
        'give a text file with one caption per line' in capsys.readouterr().err
    assert not out.exists()


def test_missing_model_folder(captions_file, tmp_path):
    missing = tmp_path / 'no_such_model'
    for model in (str(missing), './no_such_model'):
        with pytest.raises(FileNotFoundError) as err:
            generate_images(captions_file, tmp_path / 'out',
                            _config(model), progress=False)
        assert 'no_such_model does not exist' in str(err.value)
    assert not osp.exists(tmp_path / 'out')  # nothing written
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='has no model_index.json'):
        generate_images(captions_file, tmp_path / 'out',
                        _config(str(tmp_path / 'empty')), progress=False)


def test_command_line(model_dir, captions_file, tmp_path, monkeypatch,
                      capsys):
    spec = importlib.util.spec_from_file_location(
        'generate_images_tool', osp.join(ROOT, 'tools', 'data',
                                         'generate_images.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = str(tmp_path / 'out')
    monkeypatch.setattr(sys, 'argv', [
        'generate_images.py', captions_file, out, '--model', model_dir,
        '--steps', '2', '--size', '32', '32', '--batch-size', '6',
        '--chunk-size', '100', '--seed', '7', '--no-progress'])
    tool.main()
    assert '12 generated (0 after a retry), 0 failed, 2 caption lines ' \
        'skipped' in capsys.readouterr().out
    records = load_generation_records(out)
    assert sorted(records) == INDICES
    assert records[13].seed == item_seed(7, 13, 0)
    assert records[13].file == 'images/000000/000000013.jpg'


# --------------------------------------------------------------------------
# speed-only settings: channels_last, compiled UNet
# --------------------------------------------------------------------------
def _spy_load_pipeline(monkeypatch) -> list:
    """Record every pipeline ``generate_images`` loads."""
    loaded = []
    real_load = gen.load_pipeline

    def spy(*args, **kwargs):
        loaded.append(real_load(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(gen_generate, 'load_pipeline', spy)
    return loaded


def _assert_same_images(ref: dict, got: dict) -> None:
    """Same items, pixels equal up to one uint8 unit (kernel rounding)."""
    assert sorted(got) == sorted(ref)
    for i in ref:
        diff = np.abs(ref[i].astype(np.int16) - got[i].astype(np.int16))
        assert diff.max() <= 1, (i, diff.max())


def _conv_weights(module: torch.nn.Module) -> list:
    return [p for p in module.parameters() if p.dim() == 4]


def test_channels_last_sets_conv_weights_and_keeps_images(
        reference, model_dir, captions_file, tmp_path, monkeypatch):
    plain = gen.load_pipeline(model_dir)
    assert not plain.unet.conv_in.weight.is_contiguous(
        memory_format=torch.channels_last)  # (8, 4, 3, 3): the check bites
    loaded = _spy_load_pipeline(monkeypatch)
    out = str(tmp_path / 'out')
    summary = generate_images(captions_file, out,
                              _config(model_dir, channels_last=True),
                              progress=False)
    assert summary.generated == 12
    (pipe, ) = loaded
    for module in (pipe.unet, pipe.vae):
        weights = _conv_weights(module)
        assert weights and all(
            w.is_contiguous(memory_format=torch.channels_last)
            for w in weights)
    _assert_same_images(_pixels(reference), _pixels(out))


def test_compiled_unet_generates_the_same_images(reference, model_dir,
                                                 captions_file, tmp_path,
                                                 monkeypatch):
    graphs = []

    def eager_counting(gm, example_inputs):  # the 'eager' backend, counted
        graphs.append(gm)
        return gm.forward

    loaded = _spy_load_pipeline(monkeypatch)
    out = str(tmp_path / 'out')
    # One batch of 12: one compilation (a second batch size recompiles).
    config = _config(model_dir, compile_unet=True, compile_mode=None,
                     compile_backend=eager_counting, chunk_size=100,
                     batch_size=12)
    try:
        summary = generate_images(captions_file, out, config, progress=False)
        (pipe, ) = loaded
        assert summary.generated == 12
        assert graphs  # the UNet ran through torch.compile
        assert type(pipe.unet).__name__ == 'UNet2DConditionModel'
        # applying again neither recompiles nor fails
        gen.apply_speed_settings(pipe, compile_unet=True, compile_mode=None,
                                 compile_backend=eager_counting)
        count = len(graphs)
        gen.run_pipeline(pipe, CAPTIONS[:12], list(range(12)), config)
        assert len(graphs) == count
    finally:
        torch._dynamo.reset()
    _assert_same_images(_pixels(reference), _pixels(out))


def test_resume_with_other_speed_settings(reference, model_dir,
                                          captions_file, tmp_path):
    out = str(tmp_path / 'out')
    generate_images(captions_file, out, _config(model_dir), RankInfo(0, 2),
                    progress=False)
    with open(osp.join(out, 'generation_meta.json')) as f:
        meta = f.read()
    for key in ('channels_last', 'compile'):
        assert key not in meta  # speed settings are not recorded
    # the other half, channels_last: allowed
    summary = generate_images(captions_file, out,
                              _config(model_dir, channels_last=True),
                              RankInfo(1, 2), progress=False)
    assert (summary.already_done, summary.generated) == (0, 5)  # 1, 3
    with open(osp.join(out, 'generation_meta.json')) as f:
        assert f.read() == meta
    _assert_same_images(_pixels(reference), _pixels(out))
    # image settings are still refused, whatever the speed settings
    with pytest.raises(ValueError, match='num_inference_steps: recorded 2, '
                       'now 3'):
        generate_images(captions_file, out,
                        _config(model_dir, num_inference_steps=3,
                                channels_last=True), progress=False)


def test_speed_settings_need_a_unet(model_dir):

    class TransformerPipeline:  # e.g. a DiT pipeline: no unet
        transformer = torch.nn.Linear(2, 2)

    pipe = TransformerPipeline()
    assert gen.apply_speed_settings(pipe) is pipe  # nothing asked: fine
    for kwargs, asked in ((dict(channels_last=True), 'channels_last'),
                          (dict(compile_unet=True), 'compile_unet')):
        with pytest.raises(ValueError) as err:
            gen.apply_speed_settings(pipe, **kwargs)
        assert str(err.value).startswith(
            f'{asked} asked of TransformerPipeline, which has no `unet` '
            'attribute: expected a UNet-based diffusers pipeline')
    pipe.unet = None
    with pytest.raises(ValueError, match='TransformerPipeline, which has '
                       '`unet` = NoneType'):
        gen.apply_speed_settings(pipe, channels_last=True)
    # an unknown compile mode fails before anything is loaded
    with pytest.raises(ValueError, match="unknown torch.compile mode 'fast'"):
        _config(model_dir, compile_unet=True, compile_mode='fast')


def test_command_line_speed_flags(monkeypatch):
    spec = importlib.util.spec_from_file_location(
        'generate_images_tool', osp.join(ROOT, 'tools', 'data',
                                         'generate_images.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    configs = []

    def fake_generate(captions, out, config, info, progress):
        configs.append(config)
        return gen.GenerationSummary()

    monkeypatch.setattr(tool, 'generate_images', fake_generate)
    for extra in ([], ['--channels-last', '--compile-unet', '--compile-mode',
                       'default', '--compile-backend', 'eager',
                       '--write-workers', '0']):
        monkeypatch.setattr(sys, 'argv', ['generate_images.py', 'c.txt',
                                          'out'] + extra)
        tool.main()
    plain, fast = configs
    assert (plain.channels_last, plain.compile_unet, plain.compile_mode,
            plain.compile_backend) == (False, False,
                                       gen.DEFAULT_COMPILE_MODE, 'inductor')
    assert (fast.channels_last, fast.compile_unet, fast.compile_mode,
            fast.compile_backend) == (True, True, 'default', 'eager')
    assert (plain.write_workers, fast.write_workers) == (4, 0)
    monkeypatch.setattr(sys, 'argv', ['generate_images.py', 'c.txt', 'out',
                                      '--write-workers', '-1'])
    with pytest.raises(SystemExit) as exit_info:
        tool.main()
    assert exit_info.value.code == 2


# --------------------------------------------------------------------------
# optional packages: imported when a pipeline is built, not before
# --------------------------------------------------------------------------
def test_importing_generation_loads_neither_diffusers_nor_transformers():
    code = ('import sys\n'
            'import mmpcm.preprocessing.generation\n'
            'print([m for m in ("diffusers", "transformers") '
            'if m in sys.modules])\n')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ['[]']


def test_missing_diffusers_is_one_error_line(model_dir, captions_file,
                                             tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'diffusers', None)  # not installed
    message = ('diffusers: not installed (image generation needs it); pip '
               'install diffusers')
    with pytest.raises(gen.MissingPackageError) as err:
        gen.load_pipeline(model_dir)
    assert str(err.value) == message
    assert isinstance(err.value, ImportError)
    status = load_tool('data/generate_images').main(
        [captions_file, str(tmp_path / 'out'), '--model', model_dir,
         '--no-progress'])
    assert status != 0
    assert capsys.readouterr().err.strip() == f'error: {message}'
