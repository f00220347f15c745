"""The CLIP that encodes: which model and weights (:class:`CLIPSpec`), its
tokenizer, and :class:`CLIPFeatureExtractor` (image features, caption
embeddings, the caption normalisation of CLIP scores)."""
import json
import os.path as osp
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import open_clip
import torch
from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

from mmpcm.datasets.clip_transforms import clip_image_transform
from mmpcm.datasets.feature_store import CLIPFeatureInfo
from mmpcm.models.backbones.open_clip_vit import (OpenCLIPVisionBackbone,
                                                  build_open_clip)
from mmpcm.utils.fileio import sha256_file

_LOCAL_WEIGHT_SUFFIXES = ('.pt', '.pth', '.bin', '.safetensors', '.npz')

__all__ = [
    'CLIPSpec', 'CLIP_SCORE_TEXT', 'normalize_caption_for_clip',
    'CLIPFeatureExtractor'
]


@dataclass(frozen=True)
class CLIPSpec:
    """Which CLIP model encodes.

    Args:
        model_name (str, optional): open_clip model name. Defaults to
            'ViT-B-32'.
        pretrained (str, optional): open_clip pretrained tag (``'openai'``)
            or a local weight file. Defaults to None (random weights).
        model_cfg (str | dict, optional): A custom open_clip model config
            (JSON file or dict) instead of ``model_name``. Defaults to None.
        patch_pool (int): Average pooling of the patch grid (2 for
            ViT-L/14: 16x16 -> 8x8). Defaults to 1.
    """
    model_name: Optional[str] = 'ViT-B-32'
    pretrained: Optional[str] = None
    model_cfg: Optional[Union[str, Dict[str, Any]]] = None
    patch_pool: int = 1

    def load_model_cfg(self) -> Optional[Dict[str, Any]]:
        """The custom model config as a dict (read from JSON if a path)."""
        if self.model_cfg is None or isinstance(self.model_cfg, dict):
            return self.model_cfg
        if not osp.isfile(self.model_cfg):
            raise FileNotFoundError(
                f'open_clip model config {self.model_cfg} does not exist')
        with open(self.model_cfg, encoding='utf-8') as f:
            return json.load(f)

    def weights_id(self) -> Optional[str]:
        """``clip.pretrained`` of the store: the tag, or the file's sha256."""
        if self.pretrained is None or not self._local_weights():
            return self.pretrained
        return f'sha256:{sha256_file(self.pretrained)}'

    def _local_weights(self) -> bool:
        p = self.pretrained
        return p is not None and (osp.sep in p or osp.isfile(p)
                                  or p.endswith(_LOCAL_WEIGHT_SUFFIXES))

    def check_weights(self) -> None:
        """Fail early on a missing local weight file."""
        if self._local_weights() and not osp.isfile(self.pretrained):
            raise FileNotFoundError(
                f'CLIP weights file not found: {self.pretrained}')


CLIP_SCORE_TEXT = 'lowercase_strip_final_period'
"""Name of :func:`normalize_caption_for_clip`'s normalisation, recorded as
``clip_score_text`` in the meta.json of a store whose scores it made."""


def normalize_caption_for_clip(text: str) -> str:
    """A caption as the CLIP text encoder sees it when scoring a pair.

    Lowercased, surrounding whitespace removed, then every final period and
    the whitespace before it: ``'A dog runs.'`` -> ``'a dog runs'``,
    ``'Two cats. '`` -> ``'two cats'``. Periods inside are kept. The
    authors' release scored its synthetic pairs (its ``clipscore``) on
    captions lowercased with the final period removed, the cleaning its
    caption loaders apply too (``raw.lower().strip().strip('.')``,
    ``xmodaler/datasets/images/mscoco_bert.py``); unlike that line, a
    leading period (which captions do not have) is kept.

    Used for every CLIP score of a training pair
    (:meth:`CLIPFeatureExtractor.encode_texts`); not by CLIP-S / RefCLIP-S
    (:class:`~mmpcm.evaluation.metrics.PCMCLIPScore`), which keep Hessel et
    al.'s definition.

    Args:
        text (str): The caption.

    Returns:
        str: The normalised caption; an already normalised one is unchanged.
    """
    return text.lower().strip().rstrip('.').rstrip()


def _build_tokenizer(spec: CLIPSpec, model_cfg: Optional[Dict[str, Any]],
                     context_length: int) -> Callable:
    if model_cfg is None:
        return open_clip.get_tokenizer(spec.model_name)
    hf_name = model_cfg.get('text_cfg', {}).get('hf_tokenizer_name')
    if hf_name:
        return HFTokenizer(hf_name, context_length=context_length)
    return SimpleTokenizer(context_length=context_length)


def _token_counts(tokenizer: Callable, texts: Sequence[str]) -> List[int]:
    """Tokens of each text with start/end tokens, before truncation."""
    if isinstance(tokenizer, SimpleTokenizer):
        return [len(tokenizer.encode(t)) + 2 for t in texts]
    if isinstance(tokenizer, HFTokenizer):
        return [len(ids) for ids in tokenizer.tokenizer(list(texts)).input_ids]
    raise TypeError(f'cannot count the tokens of {type(tokenizer).__name__}; '
                    'supported: open_clip SimpleTokenizer and HFTokenizer')


class CLIPFeatureExtractor:
    """Frozen CLIP: image features, caption embeddings, CLIP scores.

    Args:
        spec (CLIPSpec): The model.
        device (str | torch.device): Defaults to 'cpu'.
        amp (bool): float16 autocast on CUDA. Defaults to True.
    """

    def __init__(self,
                 spec: CLIPSpec,
                 device: Union[str, torch.device] = 'cpu',
                 amp: bool = True) -> None:
        spec.check_weights()
        model_cfg = spec.load_model_cfg()
        model = build_open_clip(spec.model_name, spec.pretrained, model_cfg)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        # The wrapper's own buffers (pixel mean and std) start on the CPU.
        self.backbone = OpenCLIPVisionBackbone(
            model_name=spec.model_name, model_cfg=model_cfg, clip=model,
            patch_pool=spec.patch_pool).to(self.device)
        self.amp = amp and self.device.type == 'cuda'
        self.context_length = model.context_length
        self.tokenizer = _build_tokenizer(spec, model_cfg, self.context_length)
        self.transform = clip_image_transform(model)
        bb = self.backbone
        self.clip_info = CLIPFeatureInfo(
            model=bb.model_name, pretrained=spec.weights_id(),
            image_size=bb.image_size, patch_pool=spec.patch_pool,
            num_patches=bb.num_patches, patch_dim=bb.patch_dim,
            embed_dim=bb.embed_dim)

    def _autocast(self) -> torch.autocast:
        return torch.autocast('cuda', dtype=torch.float16, enabled=self.amp)

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, S, S)`` uint8 -> patch tokens ``(B, N, Dv)`` and
        normalised global embeddings ``(B, D)``, float32 on the CPU."""
        images = images.to(self.device, non_blocking=True)
        with self._autocast():
            feats = self.backbone(images.float())
        globals_ = torch.nn.functional.normalize(feats.global_embed.float(),
                                                 dim=-1)  # (B, D)
        return feats.patch_tokens.float().cpu(), globals_.cpu()

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]
                     ) -> Tuple[torch.Tensor, List[bool]]:
        """Normalised caption embeddings ``(B, D)`` (float32, CPU) and, per
        caption, whether it was truncated to the context length.

        Each caption is embedded as :func:`normalize_caption_for_clip`
        makes it (the release's text for its CLIP scores).
        """
        texts = [normalize_caption_for_clip(t) for t in texts]
        truncated = [n > self.context_length
                     for n in _token_counts(self.tokenizer, texts)]
        tokens = self.tokenizer(list(texts)).to(self.device)  # (B, ctx)
        with self._autocast():
            embeds = self.model.encode_text(tokens)
        return torch.nn.functional.normalize(embeds.float(),
                                             dim=-1).cpu(), truncated
