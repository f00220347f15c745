"""The version breakages of ENVIRONMENT.md are handled by importing mmpcm."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from importlib_metadata import version
from mmengine.utils import digit_version

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRANSFORMERS_5 = digit_version(version('transformers')) >= digit_version('5.0.0')


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not TRANSFORMERS_5, reason='breakage needs transformers 5')
def test_mmpretrain_models_breaks_without_mmpcm():
    """The breakage is real: plain mmpretrain.models fails to import."""
    proc = _python('import mmpretrain.models')
    assert proc.returncode != 0
    assert 'TypeError' in proc.stderr


def test_mmpretrain_models_imports_after_mmpcm():
    proc = _python(
        'import mmpcm, mmpretrain.models, mmpretrain.datasets\n'
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


@pytest.mark.skipif(not TRANSFORMERS_5, reason='breakage needs transformers 5')
def test_wrong_import_order_gets_a_clear_error():
    proc = _python('import mmpretrain.datasets\nimport mmpcm')
    assert proc.returncode != 0
    assert 'Import mmpcm' in proc.stderr and 'before' in proc.stderr


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


def test_mmengine_autocast_parses_no_version_when_compiled(monkeypatch):
    """The compiled fast recipe died in mmengine's ``autocast``: dynamo
    (torch 2.11) failed tracing ``packaging``'s version parser, which
    ``digit_version`` ran on each call. After ``import mmpcm`` the
    constants are parsed once; a parser that raises shows none runs per
    call, and ``fullgraph=True`` shows the context traces without a break.
    """
    import torch
    from mmengine.runner import amp
    from mmengine.utils import version_utils

    import mmpcm  # noqa: F401

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
    import torch
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
