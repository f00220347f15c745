"""The project's layout: its tools are mmpcm tools (one error line, --debug),
and mmpcm never imports the toy world."""
import glob
import importlib.util
import os.path as osp

import pytest

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MMPCM = osp.join(osp.dirname(osp.dirname(PROJECT)), 'mmpcm')
TOOLS = ('run', 'ablation', 'train_clip')


def _load_tool(name: str):
    path = osp.join(PROJECT, 'tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'toyworld_tool_{name}',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


@pytest.mark.parametrize('name', TOOLS)
def test_every_tool_takes_debug(name):
    tool, path = _load_tool(name)
    with pytest.raises(SystemExit) as info:
        tool.main(['--help'])
    assert info.value.code == 0
    with open(path, encoding='utf-8') as f:
        source = f.read()
    assert 'run_tool(' in source and 'add_debug_flag(' in source


def test_tools_find_their_configs():
    run, _ = _load_tool('run')
    assert osp.isfile(run.CONFIG)
    ablation, _ = _load_tool('ablation')
    for _, config in ablation.VARIANTS + ablation.EXTRA_VARIANTS:
        assert osp.isfile(osp.join(ablation.PROJECT, 'configs', config))


@pytest.mark.parametrize('argv', [
    ['--defect-rate', '1.5'], ['--defect-rate', 'x'], ['--threads', '0'],
    ['--cfg-options', 'no_equals_sign'], ['--variants', 'other.py']])
def test_ablation_refuses_bad_arguments_before_building(argv, tmp_path,
                                                        capsys):
    """Bad arguments stop the ablation at parsing: no world is started."""
    ablation, _ = _load_tool('ablation')
    world = tmp_path / 'world'
    with pytest.raises(SystemExit) as info:
        ablation.main(argv + ['--world', str(world)])
    assert info.value.code == 2
    assert 'error: argument ' + argv[0] in capsys.readouterr().err
    assert not world.exists()


def test_train_clip_refuses_a_bad_thread_count_before_training(tmp_path,
                                                                capsys):
    train_clip, _ = _load_tool('train_clip')
    out = tmp_path / 'clip'
    with pytest.raises(SystemExit) as info:
        train_clip.main(['--threads', '0', '--out', str(out)])
    assert info.value.code == 2
    assert 'error: argument --threads: must be a whole number >= 1' in \
        capsys.readouterr().err
    assert not out.exists()


def test_ablation_reads_cfg_option_values_as_mmengine_does():
    ablation, _ = _load_tool('ablation')
    args = ablation.parse_args(['--cfg-options', 'train_cfg.max_epochs=2',
                                'a.flag=true', 'a.name=test', 'a.x=[1,2]',
                                'a.path=data/x.json'])
    assert args.cfg_options == {
        'train_cfg.max_epochs': 2, 'a.flag': True, 'a.name': 'test',
        'a.x': [1, 2], 'a.path': 'data/x.json'}


def test_small_run_keeps_its_own_folders():
    """--small never meets the full job's world (which it would refuse as
    built with other settings) nor its work dir."""
    run, _ = _load_tool('run')
    full, small = run.parse_args([]), run.parse_args(['--small'])
    assert (full.world, full.work_dir) == ('data/toyworld',
                                           'work_dirs/pcm_toyworld')
    assert (small.world, small.work_dir) == ('data/toyworld_small',
                                             'work_dirs/pcm_toyworld_small')
    given = run.parse_args(['--small', '--world', 'w', '--work-dir', 'd'])
    assert (given.world, given.work_dir) == ('w', 'd')


def test_mmpcm_never_imports_the_toy_world():
    files = glob.glob(osp.join(MMPCM, '**', '*.py'), recursive=True)
    assert files
    for path in files:
        with open(path, encoding='utf-8') as f:
            assert 'mmpcm_toyworld' not in f.read(), path


def test_paired_differences_pair_seed_by_seed():
    from mmpcm_toyworld.experiment import (COLUMNS, VariantScores,
                                           paired_difference_table)
    keys = [k for _, k in COLUMNS]
    base = VariantScores('base', {k: [100.0, 110.0, 90.0] for k in keys})
    # +5 on every seed: std 0 paired, though each variant spreads by 10
    full = VariantScores('full', {k: [105.0, 115.0, 95.0] for k in keys})
    table = paired_difference_table([base, full], base)
    assert table.splitlines()[2].startswith('| full | 5.0 ± 0.0 |')
    assert 'base |' not in table.splitlines()[2]
    short = VariantScores('short', {k: [1.0] for k in keys})
    with pytest.raises(ValueError, match='same seeds'):
        paired_difference_table([base, short], base)


def test_a_kept_result_of_other_settings_is_refused(tmp_path):
    """The ablation reuses a kept result only when it was made with the same
    resolved config and world settings."""
    import argparse
    import dataclasses
    import json

    from mmpcm.utils.cli import InputError
    from mmpcm_toyworld.world import WorldConfig
    ablation, _ = _load_tool('ablation')
    world = tmp_path / 'world'
    world.mkdir()
    (world / 'world.json').write_text(json.dumps(
        dict(settings=dataclasses.asdict(WorldConfig()), complete=True)))
    args = argparse.Namespace(world=str(world), work_dir=str(tmp_path / 'w'))
    work = tmp_path / 'w' / 'pcm_toyworld' / 'seed0'
    work.mkdir(parents=True)
    path = osp.join(ablation.PROJECT, 'configs', 'pcm_toyworld.py')
    right = ablation.run_fingerprint(path, str(world), str(work), 0, None)
    result = work / 'result.json'
    result.write_text(json.dumps(dict(fingerprint=right,
                                      metrics={'CIDEr': 1.0})))
    assert ablation.run_once('pcm_toyworld.py', 0, args, None) == {
        'CIDEr': 1.0}
    # another seed's options, another world, or no fingerprint: refused
    other = {'train_cfg.max_epochs': 3}
    assert ablation.run_fingerprint(path, str(world), str(work), 0,
                                    other) != right
    for kept in (dict(metrics={'CIDEr': 1.0}),
                 dict(fingerprint='0' * 64, metrics={'CIDEr': 1.0})):
        result.write_text(json.dumps(kept))
        with pytest.raises(InputError, match='another config'):
            ablation.run_once('pcm_toyworld.py', 0, args, None)
    (world / 'world.json').write_text(json.dumps(dict(
        settings=dataclasses.asdict(WorldConfig(defect_rate=0.6)))))
    result.write_text(json.dumps(dict(fingerprint=right, metrics={})))
    with pytest.raises(InputError) as info:
        ablation.run_once('pcm_toyworld.py', 0, args, None)
    assert 'result.json' in str(info.value)
