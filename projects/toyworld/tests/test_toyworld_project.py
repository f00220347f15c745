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
