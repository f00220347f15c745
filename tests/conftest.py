import mmpcm.registry  # noqa: F401  (compat patches before mmpretrain.models)
import pytest
from mmengine.registry import init_default_scope


@pytest.fixture(autouse=True)
def _mmpretrain_scope():
    init_default_scope('mmpretrain')
    yield
