"""CLIP's ``ln_post`` and ``proj`` alone: what PCM-Net needs of CLIP when it
reads pre-extracted features."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmpcm.models.backbones.open_clip_vit import joint_space
from mmpcm.registry import MODELS


class NoImageEncoderError(RuntimeError):
    """A captioner without a CLIP image tower was given images."""


@MODELS.register_module()
class CLIPJointProjection(BaseModule):
    """Frozen ``ln_post`` + ``proj`` of a CLIP ViT, without the image tower.

    The release's model keeps only these two pieces of CLIP
    (``VisualGridClipTagLREmbedding.postprocess_clip_local``); a converted
    release model tests from pre-extracted features with this backbone.
    Captioning images needs :class:`OpenCLIPVisionBackbone` instead.

    Args:
        patch_dim (int): CLIP ViT width (``ln_post`` size). Defaults to 768.
        embed_dim (int): Joint-space width (``proj`` columns). Defaults to
            512.
        num_patches (int): Patch tokens per image the features hold.
            Defaults to 49.
        patch_pool (int): Pooling the features were extracted with
            (recorded only). Defaults to 1.
        model_name (str, optional): Which CLIP the weights come from
            (recorded only). Defaults to None.
        pretrained (None): Must be None: the weights come with the
            captioner's state dict. Defaults to None.
        init_cfg (dict, optional): Unused.
    """

    image_size = None
    preprocess_cfg = None

    def __init__(self,
                 patch_dim: int = 768,
                 embed_dim: int = 512,
                 num_patches: int = 49,
                 patch_pool: int = 1,
                 model_name: Optional[str] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if pretrained is not None:
            raise ValueError(
                'CLIPJointProjection takes its weights from the captioner\'s '
                f'state dict, not from pretrained={pretrained!r}; use '
                'OpenCLIPVisionBackbone to build CLIP from weights.')
        self.model_name = model_name
        self.patch_pool = patch_pool
        self.num_patches = num_patches
        self.ln_post = nn.LayerNorm(patch_dim)
        self.proj = nn.Parameter(torch.zeros(patch_dim, embed_dim))
        for param in self.parameters():
            param.requires_grad_(False)

    @property
    def patch_dim(self) -> int:
        return self.ln_post.normalized_shape[0]

    @property
    def embed_dim(self) -> int:
        return self.proj.shape[1]

    def forward(self, images: torch.Tensor):
        """Refuse images: there is no image tower."""
        raise NoImageEncoderError(
            'This captioner holds only CLIP\'s ln_post and proj (a converted '
            'release model): it captions pre-extracted CLIP features. To '
            'caption images, convert it again with the CLIP weights '
            '(tools/model_converters/pcm_release_to_mmpcm.py --clip-weights).')

    def to_joint_space(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, Dv)`` tokens before ``ln_post`` -> ``(B, N, D)``
        L2-normalised joint-space vectors."""
        return joint_space(self.ln_post, self.proj, patch_tokens)
