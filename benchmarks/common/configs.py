"""The repo's configs with the benchmark's random model files."""
import os.path as osp
from typing import Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def model_overrides(vocab_file: str, concept_file: str) -> dict:
    """Config overrides: random CLIP weights, the benchmark's word and
    concept files (everything else as the recipe's config says)."""
    return {
        'model.backbone.pretrained': None,
        'model.head.vocab': vocab_file,
        'model.neck.concepts': concept_file,
    }


def repo_path(path: str) -> str:
    """``path`` from the repo root, unless absolute."""
    return path if osp.isabs(path) else osp.join(REPO_ROOT, path)


def load_config(path: str, extra_bases: Sequence[str] = ()):
    """Load a repo config and merge further config files over it.

    Args:
        path (str): Config path, from the repo root or absolute.
        extra_bases (Sequence[str]): Config files merged on top, in order
            (e.g. the fast schedule over a ViT-L/14 config).

    Returns:
        mmengine.Config: The merged config.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(repo_path(path))
    for extra in extra_bases:
        other = Config.fromfile(repo_path(extra))
        cfg.merge_from_dict(other.to_dict())
    return cfg
