"""The project's layout: its tools are mmpcm tools (one error line, --debug),
and mmpcm never imports the toy world."""
import glob
import importlib.util
import os.path as osp

import pytest

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MMPCM = osp.join(osp.dirname(osp.dirname(PROJECT)), 'mmpcm')
TOOLS = ('run', 'ablation')


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
