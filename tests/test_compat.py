"""The library fixes of mmpcm.utils.compat: each is needed by the installed
versions (the breakage is shown) or applies only to its versions, and
``register_all_modules`` applies it."""
import inspect
import os
import os.path as osp
import subprocess
import sys
import warnings

import pytest
import torch

from mmpcm.setup_env import register_all_modules
from mmpcm.utils import compat
from mmpcm.utils.compat import LIBRARY_FIXES, apply_library_fixes

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FIXES = {fix.name: fix for fix in LIBRARY_FIXES}


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _needs(name: str):
    """Skip a test about one fix where the installed versions don't need
    it."""
    fix = FIXES[name]
    return pytest.mark.skipif(
        not fix.applies(), reason=f'{name} is for {fix.versions}')


def test_every_fix_that_applies_is_applied_once():
    register_all_modules()
    applied = apply_library_fixes()
    assert applied == tuple(f.name for f in LIBRARY_FIXES if f.applies())
    assert apply_library_fixes() is applied  # decided once


@pytest.mark.parametrize('installed, applying', [
    (dict(mmpretrain='1.2.0', transformers='5.24.0', mmengine='0.10.7',
          torch='2.14.1'),
     {'mmpretrain_without_multimodal', 'allowlisted_checkpoint_loader',
      'cpu_distributed', 'compilable_autocast'}),
    (dict(mmpretrain='1.2.9', transformers='4.55.0', mmengine='0.10.7',
          torch='2.6.0+cu124'),
     {'mmpretrain_without_multimodal', 'allowlisted_checkpoint_loader',
      'cpu_distributed', 'compilable_autocast'}),
    (dict(mmpretrain='1.3.0', transformers='5.0.0rc1', mmengine='0.10.8',
          torch='2.14.1'), set()),
    (dict(mmpretrain='1.2.0', transformers='4.54.1', mmengine='0.10.7',
          torch='2.5.1'), {'cpu_distributed', 'compilable_autocast'}),
    (dict(mmpretrain='1.2.0', mmengine='0.11.0', torch='2.14.1'), set()),
])
def test_fixes_are_version_gated(monkeypatch, installed, applying):
    """Each fix applies for the versions it names and not beyond: a fixed
    upstream release makes it stop applying (names missing: not
    installed)."""

    def fake_installed_version(distribution):
        text = installed.get(distribution)
        return None if text is None else tuple(
            int(p) for p in text.split('+')[0].split('rc')[0].split('.'))

    monkeypatch.setattr(compat, 'installed_version', fake_installed_version)
    gated = {f.name for f in LIBRARY_FIXES
             if f.name != 'quiet_mmcv_lite_ops_warning'}
    assert {f.name for f in LIBRARY_FIXES
            if f.name in gated and f.applies()} == applying


def test_version_bounds_compare_the_numbers_they_give(monkeypatch):
    monkeypatch.setattr(compat, 'installed_version',
                        lambda name: {'a': (1, 2, 7), 'b': (0, 10, 8)}.get(
                            name))
    assert compat.version_in('a', (1, 2), (1, 2))
    assert not compat.version_in('a', (1, 3))
    assert compat.version_in('a', at_most=(1, 2, 7))
    assert not compat.version_in('b', at_most=(0, 10, 7))
    assert not compat.version_in('missing')


def test_installed_version_reads_the_release_numbers():
    assert compat.installed_version('torch')[:2] == tuple(
        int(p) for p in torch.__version__.split('.')[:2])
    assert compat.installed_version('no-such-distribution-here') is None


@_needs('mmpretrain_without_multimodal')
def test_mmpretrain_models_breaks_without_the_fix():
    """The breakage is real: plain mmpretrain.models fails to import."""
    proc = _python('import mmpretrain.models')
    assert proc.returncode != 0
    assert 'TypeError' in proc.stderr


def test_mmpretrain_models_imports_after_register_all_modules():
    proc = _python(
        'from mmpcm.setup_env import register_all_modules\n'
        'register_all_modules()\n'
        'import mmpretrain.models, mmpretrain.datasets\n'
        'from mmpretrain.registry import MODELS\n'
        'print(MODELS.get("MultiModalDataPreprocessor").__name__,'
        ' MODELS.get("PCMCaptioner").__name__)')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['MultiModalDataPreprocessor', 'PCMCaptioner']


def test_config_with_default_scope_builds_after_custom_imports():
    """The Runner path: custom_imports, then mmpretrain's lazy registry import."""
    proc = _python(
        'from mmengine.config import Config\n'
        'from mmengine.registry import init_default_scope\n'
        'cfg = Config.fromfile("configs/pcm/pcm_smoke.py")\n'
        'init_default_scope(cfg.default_scope)\n'
        'from mmpretrain.registry import MODELS, DATASETS\n'
        'MODELS.import_from_location(); DATASETS.import_from_location()\n'
        'print(MODELS.get(cfg.model.type).__name__)')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == 'PCMCaptioner'


@_needs('mmpretrain_without_multimodal')
def test_wrong_import_order_gets_a_clear_error():
    proc = _python('import mmpretrain.datasets\n'
                   'from mmpcm.setup_env import register_all_modules\n'
                   'register_all_modules()')
    assert proc.returncode != 0
    assert 'register_all_modules()' in proc.stderr
    assert 'before importing mmpretrain.models' in proc.stderr


def test_mmcv_lite_warning_is_hidden():
    register_all_modules()
    if 'quiet_mmcv_lite_ops_warning' not in apply_library_fixes():
        pytest.skip('mmcv-lite is not installed')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('default')
        compat.quiet_mmcv_lite_ops_warning()
        warnings.warn('Fail to import ``MultiScaleDeformableAttention`` from '
                      '``mmcv.ops.multi_scale_deform_attn``')
    assert caught == []


@_needs('allowlisted_checkpoint_loader')
def test_local_checkpoints_use_the_allowlisted_loader():
    """The breakage (mmengine's loader under ``weights_only=True``) is
    shown in tests/test_checkpoint.py::test_breakage_exists_without_the_fix."""
    from mmengine.runner.checkpoint import CheckpointLoader

    from mmpcm.utils.checkpoint import load_from_local_safe
    register_all_modules()
    assert CheckpointLoader._schemes[''] is load_from_local_safe


@_needs('cpu_distributed')
def test_cpu_distributed_launcher():
    """mmengine's launcher init sets a CUDA device unconditionally; after
    the fix it keeps that path only where CUDA is available."""
    from mmengine.dist import utils as dist_utils

    from mmpcm.utils import dist
    register_all_modules()
    assert dist_utils._init_dist_pytorch is dist._init_dist_pytorch_cpu_aware
    original = dist._original_init_dist_pytorch
    assert 'torch.cuda.set_device' in inspect.getsource(original)
    dist.patch_cpu_distributed()  # idempotent: the original stays known
    assert dist._original_init_dist_pytorch is original


def test_gloo_config_without_cuda():
    from mmengine.config import Config

    from mmpcm.utils.dist import adapt_cfg_for_device
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    adapt_cfg_for_device(cfg)
    if torch.cuda.is_available():
        assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    else:
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
        assert cfg.model_wrapper_cfg.device_ids is None


@_needs('compilable_autocast')
def test_mmengine_autocast_parses_no_version_when_compiled(monkeypatch):
    """The compiled fast recipe died in mmengine's ``autocast``: dynamo
    (torch 2.11) failed tracing ``packaging``'s version parser, which
    ``digit_version`` ran on each call. After the fix the constants are
    parsed once; a parser that raises shows none runs per call, and
    ``fullgraph=True`` shows the context traces without a break.
    """
    from mmengine.runner import amp
    from mmengine.utils import version_utils

    register_all_modules()
    # mmengine still parses versions in each autocast call.
    assert 'digit_version(' in inspect.getsource(amp.autocast)

    def no_parse(version):
        raise AssertionError(f'version {version!r} parsed inside autocast')

    monkeypatch.setattr(version_utils, 'parse', no_parse)

    def step(x):
        with amp.autocast(device_type='cpu', dtype=torch.bfloat16):
            return x @ x

    torch._dynamo.reset()
    out = torch.compile(step, backend='eager', fullgraph=True)(
        torch.ones(4, 4))
    assert out.dtype == torch.bfloat16
    assert torch.equal(out.float(), torch.full((4, 4), 4.))
    # Other versions are still parsed, by the real digit_version.
    with pytest.raises(AssertionError, match='2.0.0'):
        amp.digit_version('2.0.0')


def test_safetensors_outputs_get_the_umask_mode(tmp_path):
    """safetensors 0.8 leaves its files 0600; mmpcm's releases and concept
    files are readable as any file the user writes."""
    from safetensors.torch import save_file

    from mmpcm.utils.compat import save_safetensors
    old = os.umask(0o022)
    try:
        save_file({'a': torch.zeros(2)}, str(tmp_path / 'raw.safetensors'))
        save_safetensors({'a': torch.zeros(2)},
                         str(tmp_path / 'ours.safetensors'))
    finally:
        os.umask(old)
    raw = os.stat(tmp_path / 'raw.safetensors').st_mode & 0o777
    ours = os.stat(tmp_path / 'ours.safetensors').st_mode & 0o777
    assert ours == 0o644
    if raw == 0o644:  # a safetensors release that no longer needs the fix
        pytest.skip('safetensors itself now writes 0644')
