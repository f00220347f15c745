"""Every tool reports bad input as one line, ``error: <file>: <what is
wrong>; <what to do>``, with a non-zero exit; the traceback only with
--debug (issue: input robustness, class 1)."""
import os.path as osp
import runpy
import sys

import pytest

from mmpcm.testing import write_smoke_data
from mmpcm.utils.cli import InputError

from tool_loader import ROOT, load_tool

SMOKE = osp.join(ROOT, 'configs', 'pcm', 'pcm_smoke.py')

# Every tool, by its path under tools/; each must take --debug (the toy
# world's tools: projects/toyworld/tests).
TOOLS = ('train', 'test', 'caption', 'data/build_concepts',
         'data/coco_objects', 'data/extract_features', 'data/generate_images',
         'data/import_release_features', 'data/make_smoke_data',
         'data/prepare_corpus', 'data/refine_pairs',
         'model_converters/pcm_release_to_mmpcm',
         'model_converters/publish_model')


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines()
             if not line.startswith('warning: ')]
    assert len(lines) == 1, err
    assert lines[0].startswith('error: ') and 'Traceback' not in err
    return lines[0]


@pytest.mark.parametrize('name', TOOLS)
def test_every_tool_takes_debug(name):
    with pytest.raises(SystemExit) as info:
        load_tool(name).main(['--help'])
    assert info.value.code == 0
    source = open(osp.join(ROOT, 'tools', f'{name}.py')).read()
    assert 'run_tool(' in source and 'add_debug_flag(' in source


def test_missing_and_broken_config(tmp_path, capsys):
    train = load_tool('train')
    assert train.main([str(tmp_path / 'nope.py')]) == 1
    assert _one_error_line(capsys) == (
        f'error: {tmp_path / "nope.py"}: no such config file; pass a config '
        'such as configs/pcm/pcm_coco.py')
    broken = tmp_path / 'broken.py'
    broken.write_text('model = dict(\n')
    assert load_tool('test').main([str(broken), 'x.pth']) == 1
    line = _one_error_line(capsys)
    assert line.startswith(f'error: {broken}:1: not valid Python')
    assert line.endswith('; fix the config')


@pytest.mark.parametrize('name', ['train', 'test'])
def test_a_malformed_cfg_option_is_an_argument_error(name, capsys):
    """mmengine's DictAction raised a bare ValueError on an entry without
    '='; the tools' CfgOptionsAction makes it one argparse error line."""
    argv = [SMOKE] + (['x.pth'] if name == 'test' else [])
    with pytest.raises(SystemExit) as info:
        load_tool(name).main(argv + ['--cfg-options', 'a=1', 'no_equals'])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument --cfg-options: must be key=value" in err
    assert 'Traceback' not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(InputError):
        load_tool('train').main([str(tmp_path / 'nope.py'), '--debug'])


def test_missing_feature_store_names_it_and_the_log(tmp_path, capsys,
                                                    monkeypatch):
    """A config whose store is not extracted: one line, and the traceback in
    the run's log file."""
    data = tmp_path / 'data' / 'smoke'
    write_smoke_data(str(data), 0)
    (data / 'train' / 'meta.json').unlink()
    monkeypatch.chdir(tmp_path)
    status = load_tool('train').main([SMOKE, '--work-dir',
                                      str(tmp_path / 'work')])
    assert status == 1
    line = _one_error_line(capsys)
    assert line.startswith(f'error: {osp.join("data", "smoke", "train")}')
    assert 'meta.json' in line
    log_file = line.rsplit('(traceback in ', 1)[1].rstrip(')')
    assert 'Traceback (most recent call last)' in open(log_file).read()


def test_output_folder_given_as_output_file(tmp_path, capsys):
    folder = tmp_path / 'out'
    folder.mkdir()
    status = load_tool('caption').main([str(tmp_path / 'model.safetensors'),
                                        'x.png', '--out', str(folder)])
    assert status == 2
    assert _one_error_line(capsys) == (
        f'error: {folder}: is a folder, not a file; give a file path in it, '
        f'e.g. {folder / "out.jsonl"}')
    status = load_tool('model_converters/pcm_release_to_mmpcm').main(
        [SMOKE, 'a.pth', 'vocabulary.txt', 'concepts.pkl', '--out',
         str(folder)])
    assert status == 1
    assert _one_error_line(capsys).startswith(
        f'error: {folder}: is a folder, but --out is a path without suffix')


def test_output_file_in_a_folder_not_yet_made(tmp_path, capsys):
    out = tmp_path / 'new' / 'deeper' / 'smoke'
    assert load_tool('data/make_smoke_data').main(['--out', str(out)]) == 0
    assert (out / 'train' / 'meta.json').is_file()


def test_run_as_a_script_it_exits_non_zero_without_a_traceback(
        tmp_path, monkeypatch, capsys):
    """The ``if __name__ == '__main__'`` path: sys.exit with main's status."""
    script = osp.join(ROOT, 'tools', 'data', 'prepare_corpus.py')
    monkeypatch.setattr(sys, 'argv', [script, str(tmp_path / 'coco.json'),
                                      str(tmp_path / 'out')])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(script, run_name='__main__')
    assert info.value.code == 1
    assert _one_error_line(capsys) == (
        f'error: {tmp_path / "coco.json"}: no such Karpathy split file; '
        'check the path')


def test_concepts_need_weights_or_an_explicit_random_clip(tmp_path):
    """Without --pretrained, concepts from a random CLIP are not written as
    a success; --random-weights says it on purpose."""
    tool = load_tool('data/build_concepts')
    with pytest.raises(SystemExit) as info:
        tool.main(['from-corpus', 'captions.txt', str(tmp_path / 'c.st'),
                   '--clip-model', 'ViT-B-32'])
    assert info.value.code == 2
    args = tool.parse_args(['from-corpus', 'captions.txt', 'c.st',
                            '--clip-model', 'custom', '--random-weights'])
    assert args.random_weights and args.pretrained is None


def test_a_mistyped_caption_input_is_an_error(tmp_path, capsys):
    status = load_tool('caption').main([str(tmp_path / 'model.safetensors'),
                                        str(tmp_path / 'photoz')])
    assert status == 2
    assert _one_error_line(capsys) == (
        f'error: {tmp_path / "photoz"}: no such file or folder; check the '
        'path')


def test_auto_scale_lr_is_refused_where_noam_sets_the_lr(tmp_path, capsys):
    """NoamLR ignores the optimizer's lr: mmengine's --auto-scale-lr would
    change nothing, so the flag is refused before any work."""
    status = load_tool('train').main([SMOKE, '--work-dir', str(tmp_path),
                                      '--auto-scale-lr'])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(f'error: {SMOKE}: --auto-scale-lr has no effect')
    assert 'param_scheduler.factor' in err
    assert not (tmp_path / 'epoch_1.pth').exists()


def test_missing_vocabulary_is_refused_before_the_runner(tmp_path, capsys,
                                                         monkeypatch):
    """The Runner logs the environment and the config before it builds the
    model: a missing vocab.json is refused first, alone, and nothing is
    written."""
    write_smoke_data(str(tmp_path / 'data' / 'smoke'))
    monkeypatch.chdir(tmp_path)
    work = tmp_path / 'work'
    status = load_tool('train').main([
        SMOKE, '--work-dir', str(work), '--cfg-options',
        'model.head.vocab=data/smoke/nope.json'])
    out, err = capsys.readouterr()
    assert status == 1
    assert err == ('error: data/smoke/nope.json: no such vocabulary file; '
                   'write it with tools/data/prepare_corpus.py (vocab.json '
                   'in its output folder, beside train_captions.txt) and '
                   'name it in the config\n')
    assert 'System environment' not in out + err
    assert not work.exists()
