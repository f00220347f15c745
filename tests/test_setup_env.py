"""Setup is an explicit call: importing mmpcm changes no library and fills
no registry; ``register_all_modules()`` does both; tools import only what
they use."""
import json
import os.path as osp
import subprocess
import sys
import warnings

from mmengine.registry import DefaultScope

from mmpcm.setup_env import register_all_modules
from mmpcm.utils.compat import LIBRARY_FIXES

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
HEAVY = ('torch', 'mmengine', 'mmpretrain', 'open_clip', 'pycocoevalcap',
         'diffusers', 'transformers')

# Prints, as JSON, what the library fixes and registrations would change.
_STATE = '''
def state():
    import json, sys
    out = {"heavy": sorted(m for m in %r if m in sys.modules),
           "mmpretrain_models": "mmpretrain.models" in sys.modules,
           "mmpretrain_datasets": "mmpretrain.datasets" in sys.modules}
    if "mmpretrain" in sys.modules:
        from mmengine.dist import utils as dist_utils
        from mmengine.registry import DefaultScope
        from mmengine.runner import amp
        from mmengine.runner.checkpoint import CheckpointLoader, load_from_local
        from mmengine.utils import digit_version
        from mmpretrain.registry import (DATASETS, METRICS, MODELS,
                                         PARAM_SCHEDULERS)
        from mmpretrain.utils import dependency
        out.update(
            multimodal=dependency.WITH_MULTIMODAL,
            multimodal_as_computed=dependency.WITH_MULTIMODAL == all(
                dependency.satisfy_requirement(r)
                for r in ["pycocotools", "transformers>=4.28.0"]),
            amp_digit_version=amp.digit_version is digit_version,
            mmengine_local_loader=CheckpointLoader._schemes.get("")
            in (None, load_from_local),
            mmengine_dist_init=dist_utils._init_dist_pytorch.__module__
            == "mmengine.dist.utils",
            # _module_dict: a registry lookup would import mmpretrain.models
            registered=[name in reg._module_dict for reg, name in (
                (MODELS, "PCMCaptioner"), (DATASETS, "SynthImgCapDataset"),
                (METRICS, "PCMCaptionMetric"),
                (PARAM_SCHEDULERS, "NoamParamScheduler"))],
            scope=getattr(DefaultScope.get_current_instance(),
                          "scope_name", None))
    print(json.dumps(out))
''' % (HEAVY, )


def _states(code: str) -> list:
    """Run ``code`` in a fresh interpreter; one JSON line per state()."""
    proc = subprocess.run(
        [sys.executable, '-c', f'{_STATE}\nimport json\n{code}'], cwd=ROOT,
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


UNCHANGED = dict(multimodal_as_computed=True, amp_digit_version=True,
                 mmengine_local_loader=True, mmengine_dist_init=True,
                 registered=[False] * 4, scope=None,
                 mmpretrain_models=False, mmpretrain_datasets=False)


def test_imports_change_nothing_and_setup_does_it_all():
    light, named, after, applied = _states(
        'import mmpcm, mmpcm.utils\n'
        'state()\n'
        'import mmpcm.registry\n'
        'state()\n'
        'from mmpcm.utils import apply_library_fixes\n'
        'from mmpcm.setup_env import register_all_modules\n'
        'register_all_modules()\n'
        'state()\n'
        'print(json.dumps(apply_library_fixes()))')
    assert light['heavy'] == []  # import mmpcm, mmpcm.utils: light
    assert {k: named[k] for k in UNCHANGED} == UNCHANGED
    assert after['registered'] == [True] * 4
    assert after['scope'] == 'mmpretrain'
    assert not after['multimodal']
    assert not after['amp_digit_version']
    assert not after['mmengine_local_loader']
    assert not after['mmengine_dist_init']
    assert applied == [f.name for f in LIBRARY_FIXES if f.applies()]


def test_mmpcm_packages_import_without_setup_and_change_nothing():
    """What register_all_modules imports after the fixes (and mmpcm.apis,
    whose entry points call it) imports neither mmpretrain.models nor
    mmpretrain.datasets and changes no library, so the fixes run first
    whatever was imported before them."""
    state, = _states(
        'import mmpcm.datasets, mmpcm.engine, mmpcm.evaluation, '
        'mmpcm.models, mmpcm.apis\n'
        'state()')
    expected = dict(UNCHANGED, registered=[True] * 4)
    assert {k: state[k] for k in expected} == expected


def test_plugin_module_sets_up_without_a_scope():
    state, = _states('import mmpcm.plugin\nstate()')
    assert state['registered'] == [True] * 4
    assert not state['amp_digit_version']
    assert state['scope'] is None  # the config's default_scope decides


def test_prepare_corpus_help_imports_no_heavy_package():
    script = osp.join(ROOT, 'tools', 'data', 'prepare_corpus.py')
    state, = _states(
        'import contextlib, io, runpy, sys\n'
        f'sys.argv = [{script!r}, "--help"]\n'
        'with contextlib.redirect_stdout(io.StringIO()) as help_text:\n'
        '    try:\n'
        f'        runpy.run_path({script!r}, run_name="__main__")\n'
        '    except SystemExit:\n'
        '        pass\n'
        'assert "--min-count" in help_text.getvalue()\n'
        'state()')
    assert state['heavy'] == []


def test_register_all_modules_takes_over_another_scope():
    with DefaultScope.overwrite_default_scope('mmengine'):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            register_all_modules()
        assert DefaultScope.get_current_instance().scope_name == 'mmpretrain'
    assert any('default scope' in str(w.message) for w in caught)
    with DefaultScope.overwrite_default_scope('mmengine'):
        register_all_modules(init_default_scope=False)
        assert DefaultScope.get_current_instance().scope_name == 'mmengine'
