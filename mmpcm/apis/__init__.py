from .run_config import apply_checkpoint_to_cfg, default_work_dir, prepare_cfg

__all__ = ['apply_checkpoint_to_cfg', 'default_work_dir', 'prepare_cfg']
