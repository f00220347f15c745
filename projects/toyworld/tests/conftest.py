import mmpcm.registry  # noqa: F401  (compat patches before mmpretrain.models)
import pytest
import torch
from mmengine.registry import init_default_scope

# The tests' models are tiny: one thread avoids spin-waiting between
# threads.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _mmpretrain_scope():
    init_default_scope('mmpretrain')
    yield
