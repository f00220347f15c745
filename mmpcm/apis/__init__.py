from .checkpoint_errors import checkpoint_in_use, naming_checkpoint
from .run_config import apply_checkpoint_to_cfg, default_work_dir, prepare_cfg

__all__ = [
    'apply_checkpoint_to_cfg', 'checkpoint_in_use', 'default_work_dir',
    'naming_checkpoint', 'prepare_cfg'
]
