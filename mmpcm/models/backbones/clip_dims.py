"""CLIP's feature dimensions, read from an open_clip model config."""
import json
import os.path as osp
from typing import NamedTuple, Optional

LOCAL_DIR = 'local-dir:'


class CLIPDims(NamedTuple):
    """The widths of the features PCM-Net takes from a CLIP image tower.

    Attributes:
        num_patches (int): Patch tokens per image, after pooling.
        patch_dim (int): Width of a patch token (the tower's width).
        embed_dim (int): Width of CLIP's joint space.
    """
    num_patches: int
    patch_dim: int
    embed_dim: int


def clip_dims(model_name: Optional[str] = None,
              model_cfg: Optional[dict] = None,
              patch_pool: int = 1) -> CLIPDims:
    """The feature dimensions of an open_clip ViT, without building it.

    Args:
        model_name (str, optional): open_clip model name (``'ViT-B-32'``) or
            ``'local-dir:<folder>'`` holding ``open_clip_config.json``.
        model_cfg (dict, optional): A custom open_clip model config
            (``embed_dim``, ``vision_cfg``) instead of a name.
        patch_pool (int): Side of the square patch pooling
            (:class:`OpenCLIPVisionBackbone`). Defaults to 1.

    Returns:
        CLIPDims: ``(image_size // patch_size) ** 2 // patch_pool ** 2``
        patches of the tower's width, and the joint-space width.

    Raises:
        ValueError: If the model is unknown to open_clip or its config
            gives no ViT image tower.
    """
    if model_cfg is None:
        model_cfg = _named_model_cfg(model_name)
    vision = model_cfg.get('vision_cfg', {})
    try:
        size, patch = vision['image_size'], vision['patch_size']
        width, embed_dim = vision['width'], model_cfg['embed_dim']
    except KeyError as e:
        raise ValueError(f'CLIP model {model_name or "custom"}: its open_clip '
                         f'config gives no ViT {e.args[0]}.') from None
    size = size[0] if isinstance(size, (list, tuple)) else size
    grid = size // patch // patch_pool
    return CLIPDims(grid * grid, width, embed_dim)


def _named_model_cfg(model_name: Optional[str]) -> dict:
    if not model_name:
        raise ValueError('Give an open_clip model_name or a model_cfg.')
    if model_name.startswith(LOCAL_DIR):
        path = osp.join(model_name[len(LOCAL_DIR):], 'open_clip_config.json')
        with open(path, encoding='utf-8') as f:
            return json.load(f)['model_cfg']
    import open_clip
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise ValueError(f'open_clip knows no model {model_name!r}.')
    return cfg
