"""Config preparation shared by the train/test entry points in ``tools/``."""
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config

from mmpcm.utils.dist import adapt_cfg_for_device

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def check_amp_device(cfg: Config) -> None:
    """Refuse ``--amp`` without CUDA with one clear message."""
    if (cfg.get('optim_wrapper', {}).get('type') == 'AmpOptimWrapper'
            and not torch.cuda.is_available()):
        raise RuntimeError('--amp needs a CUDA GPU; this machine has none. '
                           'Train without --amp on CPU.')


def fix_dataloaders(cfg: Config) -> None:
    """``persistent_workers`` needs workers: turn it off for ``num_workers=0``."""
    for name in DATALOADERS:
        loader = cfg.get(name)
        if loader and loader.get('num_workers', 0) == 0:
            loader['persistent_workers'] = False


def prepare_cfg(cfg: Config) -> Config:
    """Apply every run-time adaptation to a merged config (in place)."""
    check_amp_device(cfg)
    fix_dataloaders(cfg)
    adapt_cfg_for_device(cfg)
    return cfg


def apply_checkpoint_to_cfg(cfg: Config, checkpoint: str) -> Config:
    """Build the model from what the checkpoint carries.

    The word vocabulary, the concept table and the frozen CLIP weights are
    all inside the checkpoint, so a test run needs no training captions, no
    concept file and no CLIP weights file: the config's model is pointed at
    the checkpoint's vocabulary and builds the rest empty or random, to be
    filled by the checkpoint.

    Args:
        cfg (Config): The run's config, changed in place.
        checkpoint (str): The checkpoint to test.

    Returns:
        Config: ``cfg``.
    """
    from mmpcm.models.heads import decode_vocab_tensor
    from mmpcm.utils.checkpoint import load_checkpoint_file
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'Checkpoint not found: {checkpoint}')
    state = load_checkpoint_file(checkpoint)
    state = state.get('state_dict', state)
    if 'head.vocab_bytes' not in state:
        raise ValueError(f'{checkpoint}: no word vocabulary '
                         '(head.vocab_bytes) in the state dict: not a '
                         'PCMCaptioner checkpoint.')
    cfg.model.head.vocab = decode_vocab_tensor(state['head.vocab_bytes'])
    cfg.model.neck.concepts = None
    cfg.model.backbone.pretrained = None
    cfg.load_from = checkpoint
    return cfg


def default_work_dir(config_path: str, work_dir: Optional[str]) -> str:
    """``work_dirs/<config name>`` unless a work dir is given."""
    if work_dir is not None:
        return work_dir
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
