"""Frozen open_clip ViT image encoder that yields PCM-Net's CLIP features."""
import os.path as osp
from typing import NamedTuple, Optional

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from open_clip.transform import PreprocessCfg

from mmpcm.datasets.clip_transforms import (normalize_pixels, pixel_mean_std,
                                            preprocess_cfg_of)
from mmpcm.registry import MODELS


class CLIPVisualFeatures(NamedTuple):
    """What the frozen CLIP image encoder gives PCM-Net.

    Attributes:
        patch_tokens (torch.Tensor): ``(B, N, Dv)`` last-layer patch tokens
            BEFORE ``ln_post`` (CLS dropped; pooled to ``N`` patches).
        global_embed (torch.Tensor): ``(B, D)`` L2-normalised global image
            embedding (after ``ln_post`` and ``proj``).
    """
    patch_tokens: torch.Tensor
    global_embed: torch.Tensor


def build_open_clip(model_name: Optional[str] = None,
                    pretrained: Optional[str] = None,
                    model_cfg: Optional[dict] = None) -> nn.Module:
    """Build an open_clip CLIP model offline.

    Args:
        model_name (str, optional): open_clip model name, e.g. ``'ViT-B-32'``.
        pretrained (str, optional): open_clip pretrained tag or a local
            checkpoint file. None gives random weights.
        model_cfg (dict, optional): A custom open_clip model config
            (``embed_dim``, ``vision_cfg``, ``text_cfg``) instead of a name.

    Returns:
        nn.Module: The open_clip ``CLIP`` model.
    """
    if model_cfg is not None:
        model = open_clip.model.CLIP(**model_cfg)
        if pretrained is not None:
            open_clip.load_checkpoint(model, pretrained)
        return model
    if model_name is None:
        raise ValueError('Give an open_clip model_name or a model_cfg.')
    if pretrained is not None and (osp.sep in pretrained
                                   or pretrained.endswith(
                                       ('.pt', '.pth', '.bin',
                                        '.safetensors'))):
        if not osp.isfile(pretrained):
            raise FileNotFoundError(
                f'CLIP weights file not found: {pretrained} (for open_clip '
                f'model {model_name!r}).')
    return open_clip.create_model(model_name, pretrained=pretrained)


def joint_space(ln_post: nn.LayerNorm, proj: torch.Tensor,
                patch_tokens: torch.Tensor) -> torch.Tensor:
    """CLIP's own map of patch tokens into its joint space.

    Args:
        ln_post (nn.LayerNorm): CLIP's final LayerNorm.
        proj (torch.Tensor): ``(Dv, D)`` CLIP's image projection.
        patch_tokens (torch.Tensor): ``(B, N, Dv)`` tokens before
            ``ln_post``.

    Returns:
        torch.Tensor: ``(B, N, D)`` L2-normalised joint-space vectors.
    """
    x = patch_tokens.to(ln_post.weight.dtype)
    x = ln_post(x) @ proj  # (B, N, D)
    return F.normalize(x, dim=-1)


@MODELS.register_module()
class OpenCLIPVisionBackbone(BaseModule):
    """The frozen CLIP ViT image encoder of PCM-Net.

    Gives the last transformer layer's patch tokens before ``ln_post`` and the
    normalised global embedding, and maps patch tokens into CLIP's joint space
    with CLIP's own ``ln_post`` and ``proj``. ViT-L/14's 16x16 grid is
    average-pooled 2x2 to 8x8 with ``patch_pool=2``. Images come in as
    [0, 255] values and are normalised with the mean and std of the model's
    own open_clip preprocess config (:attr:`preprocess_cfg`); the features
    come from open_clip's public ``forward_intermediates``.

    Args:
        model_name (str, optional): open_clip model name. Defaults to
            ``'ViT-B-32'``.
        pretrained (str, optional): open_clip pretrained tag or local file.
            Defaults to None (random weights).
        model_cfg (dict, optional): Custom open_clip config instead of a
            name (tests build tiny models this way). Defaults to None.
        clip (nn.Module, optional): An already built open_clip ``CLIP`` model
            (or its ``.visual``); overrides the other arguments.
            Defaults to None.
        patch_pool (int): Average-pooling window over the patch grid.
            Defaults to 1.
        frozen (bool): Freeze every parameter and keep eval mode.
            Defaults to True.
        init_cfg (dict, optional): Unused; weights come from CLIP.
    """

    def __init__(self,
                 model_name: Optional[str] = 'ViT-B-32',
                 pretrained: Optional[str] = None,
                 model_cfg: Optional[dict] = None,
                 clip: Optional[nn.Module] = None,
                 patch_pool: int = 1,
                 frozen: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if clip is None:
            clip = build_open_clip(model_name, pretrained, model_cfg)
        self.visual = getattr(clip, 'visual', clip)
        visual = self.visual
        if not isinstance(visual, open_clip.transformer.VisionTransformer):
            raise TypeError('OpenCLIPVisionBackbone needs an open_clip ViT, '
                            f'got {type(visual).__name__}.')
        if visual.attn_pool is not None or visual.final_ln_after_pool:
            raise ValueError('Only CLIP ViTs with CLS pooling after ln_post '
                             '(OpenAI-style) are supported.')
        self.model_name = model_name if model_cfg is None else 'custom'
        self.patch_pool = patch_pool
        grid = self.visual.grid_size[0]
        if grid % patch_pool:
            raise ValueError(f'patch_pool={patch_pool} does not divide the '
                             f'{grid}x{grid} patch grid.')
        mean, std = pixel_mean_std(self.preprocess_cfg)  # (1, 3, 1, 1) each
        self.register_buffer('mean', mean, persistent=False)
        self.register_buffer('std', std, persistent=False)
        self.frozen = frozen
        if frozen:
            self.freeze()

    # ------------------------------------------------------------ shapes
    @property
    def grid_size(self) -> int:
        """Side of the patch grid after pooling."""
        return self.visual.grid_size[0] // self.patch_pool

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2

    @property
    def patch_dim(self) -> int:
        return self.visual.ln_post.normalized_shape[0]

    @property
    def embed_dim(self) -> int:
        return self.visual.proj.shape[1]

    @property
    def image_size(self) -> int:
        return self.visual.image_size[0]

    @property
    def preprocess_cfg(self) -> PreprocessCfg:
        """The model's open_clip preprocess config (a copy): size, mean,
        std, interpolation, resize mode; build the host transform with
        :class:`~mmpcm.datasets.clip_transforms.CLIPImageTransform`."""
        return preprocess_cfg_of(self.visual)

    # ------------------------------------------------------------ freezing
    def freeze(self) -> None:
        """Stop gradients into CLIP and keep it in eval mode."""
        self.frozen = True
        for param in self.visual.parameters():
            param.requires_grad_(False)
        self.visual.eval()

    def train(self, mode: bool = True) -> 'OpenCLIPVisionBackbone':
        super().train(mode)
        if self.frozen:
            self.visual.eval()
        return self

    # ------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor) -> CLIPVisualFeatures:
        """Encode images.

        Args:
            images (torch.Tensor): ``(B, 3, H, W)`` RGB, values in [0, 255],
                already resized to CLIP's input size.

        Returns:
            CLIPVisualFeatures: Patch tokens before ``ln_post`` and the
            normalised global embedding.
        """
        x = normalize_pixels(images, self.mean, self.std)  # (B, 3, H, W)
        x = x.to(self.visual.conv1.weight.dtype)
        out = self.visual.forward_intermediates(x, indices=1,
                                                output_fmt='NLC')
        tokens = out['image_intermediates'][0]  # (B, G*G, W), no CLS
        # CLS after ln_post, projected: (B, D)
        global_embed = F.normalize(out['image_features'], dim=-1)
        patches = self.pool_patches(tokens)  # (B, N, W)
        return CLIPVisualFeatures(patches, global_embed)

    def pool_patches(self, tokens: torch.Tensor) -> torch.Tensor:
        """Average-pool ``(B, G*G, W)`` tokens to ``(B, (G/p)^2, W)``."""
        if self.patch_pool == 1:
            return tokens
        b, n, w = tokens.shape
        g = int(round(n ** 0.5))
        grid = tokens.transpose(1, 2).reshape(b, w, g, g)  # (B, W, G, G)
        grid = F.avg_pool2d(grid, self.patch_pool)  # (B, W, G/p, G/p)
        return grid.flatten(2).transpose(1, 2)  # (B, N, W)

    def to_joint_space(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        """Map patch tokens into CLIP's joint space (``ln_post``, ``proj``).

        Args:
            patch_tokens (torch.Tensor): ``(B, N, Dv)`` tokens before
                ``ln_post``.

        Returns:
            torch.Tensor: ``(B, N, D)`` L2-normalised joint-space vectors.
        """
        return joint_space(self.visual.ln_post, self.visual.proj, patch_tokens)
