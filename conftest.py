"""Test setup shared by tests/ and the projects' tests (pytest reads it for
every test below the repository root)."""
import pytest
import torch
from mmengine.registry import init_default_scope

from mmpcm.setup_env import register_all_modules

# The library fixes before any test module imports mmpretrain.models, and
# mmpcm's parts in mmpretrain's registries, once for the session.
register_all_modules()

# The tests' models are tiny: one thread avoids spin-waiting between
# threads, which on a 2-core machine costs more than it gains.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _mmpretrain_scope():
    init_default_scope('mmpretrain')
    yield
