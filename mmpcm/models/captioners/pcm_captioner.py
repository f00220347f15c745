"""PCM-Net: CLIP -> PCM neck -> visual-semantic encoder -> caption head."""
from typing import Dict, List, NamedTuple, Optional, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample

from mmpcm.models.backbones.open_clip_vit import CLIPVisualFeatures
from mmpcm.models.necks.pcm_neck import (ConceptPicture, PCMTokens,
                                         fp32_region)
from mmpcm.registry import MODELS


class EncodedImages(NamedTuple):
    """Encoder output for a batch.

    Attributes:
        memory (torch.Tensor): ``(B, T, d)`` encoded tokens.
        padding_mask (torch.Tensor): ``(B, T)`` bool, True to ignore.
    """
    memory: torch.Tensor
    padding_mask: torch.Tensor


def _build(cfg: Union[dict, nn.Module]) -> nn.Module:
    return MODELS.build(cfg) if isinstance(cfg, dict) else cfg


@MODELS.register_module()
class PCMCaptioner(BaseModel):
    """PCM-Net zero-shot captioner.

    Inputs are either pre-extracted CLIP features
    (``dict(patch_tokens=(B, N, Dv), global_embed=(B, D))``) or images
    (``dict(images=(B, 3, H, W))``, values in [0, 255]); the frozen CLIP
    backbone runs only for images, and always supplies ``ln_post``/``proj``.

    Args:
        backbone (dict | nn.Module): Frozen CLIP image encoder
            (:class:`OpenCLIPVisionBackbone`).
        neck (dict | nn.Module): :class:`PCMNeck`. A config that does not
            state CLIP's ``num_patches``, ``patch_dim``, ``embed_dim`` or
            ``clip_model`` gets the backbone's.
        encoder (dict | nn.Module): :class:`VisualSemanticEncoder`.
        head (dict | nn.Module): :class:`PCMCaptionHead`.
        data_preprocessor (dict | nn.Module, optional): Defaults to None
            (:class:`PCMDataPreprocessor`: moves the batch's inputs to the
            device).
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 backbone: Union[dict, nn.Module],
                 neck: Union[dict, nn.Module],
                 encoder: Union[dict, nn.Module],
                 head: Union[dict, nn.Module],
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            data_preprocessor=_build(data_preprocessor or
                                     dict(type='PCMDataPreprocessor')),
            init_cfg=init_cfg)
        self.backbone = _build(backbone)
        self.neck = _build(self._fill_clip_dims(neck))
        self.encoder = _build(encoder)
        self.head = _build(head)
        self._check_widths()
        #: ``predict``'s ``return_concepts`` when not given (a test-time
        #: hook sets it to collect PCM's picture through ``test_step``).
        self.explain_predictions = False

    # What the neck takes from CLIP: read from the backbone unless stated.
    _CLIP_DIMS = ('num_patches', 'patch_dim', 'embed_dim')

    def _fill_clip_dims(self, neck: Union[dict, nn.Module]
                        ) -> Union[dict, nn.Module]:
        """The neck config with CLIP's dimensions (``num_patches``,
        ``patch_dim``, ``embed_dim``) and ``clip_model`` taken from the
        built backbone where the config does not state them (no
        ``clip_model`` for a custom open_clip config: it has no name)."""
        if not isinstance(neck, dict):
            return neck
        neck = dict(neck)
        for name in self._CLIP_DIMS:
            neck.setdefault(name, getattr(self.backbone, name))
        name = getattr(self.backbone, 'model_name', None)
        if neck.get('clip_model') is None and name != 'custom':
            neck['clip_model'] = name  # the concept file is checked for it
        return neck

    def _check_widths(self) -> None:
        bb, neck = self.backbone, self.neck
        for name in self._CLIP_DIMS:
            if getattr(bb, name) != getattr(neck, name):
                raise ValueError(
                    f'The CLIP backbone gives {name}={getattr(bb, name)} but '
                    f'the neck is configured for {getattr(neck, name)}.')

    # ------------------------------------------------------------ features
    def extract_feat(self, inputs: Dict[str, torch.Tensor]) -> CLIPVisualFeatures:
        """CLIP features of the batch, from the inputs or from the images.

        Args:
            inputs (dict): ``patch_tokens`` + ``global_embed``, or ``images``.

        Returns:
            CLIPVisualFeatures: Float patch tokens and global embeddings.
        """
        if 'patch_tokens' in inputs:
            feats = CLIPVisualFeatures(inputs['patch_tokens'].float(),
                                       inputs['global_embed'].float())
            self._check_feature_shapes(feats)
            return feats
        if 'images' not in inputs:
            raise KeyError('PCMCaptioner inputs need "patch_tokens" and '
                           '"global_embed", or "images"; got '
                           f'{sorted(inputs)}.')
        with torch.no_grad():
            feats = self.backbone(inputs['images'])
        return CLIPVisualFeatures(feats.patch_tokens.float(),
                                  feats.global_embed.float())

    def _check_feature_shapes(self, feats: CLIPVisualFeatures) -> None:
        n, dv = feats.patch_tokens.shape[1:]
        d = feats.global_embed.shape[-1]
        want = (self.neck.num_patches, self.neck.patch_dim, self.neck.embed_dim)
        if (n, dv, d) != want:
            raise ValueError(
                f'Feature shapes (patches, patch width, global width) = '
                f'{(n, dv, d)} disagree with the model config {want}: the '
                'features were extracted with another CLIP or pooling.')

    def encode(self, feats: CLIPVisualFeatures) -> EncodedImages:
        """Run the PCM neck and the visual-semantic encoder."""
        with torch.no_grad(), fp32_region(feats.patch_tokens.device):
            joint = self.backbone.to_joint_space(feats.patch_tokens)  # (B, N, D)
        tokens: PCMTokens = self.neck(feats.patch_tokens, joint.float(),
                                      feats.global_embed)
        memory = self.encoder(tokens.tokens, tokens.padding_mask)  # (B, T, d)
        return EncodedImages(memory, tokens.padding_mask)

    # ------------------------------------------------------------ modes
    def forward(self,
                inputs: Dict[str, torch.Tensor],
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """Dispatch to ``loss``, ``predict`` or the encoder output (``tensor``).

        Args:
            inputs (dict): Features or images, see the class docstring.
            data_samples (list[DataSample], optional): Captions and CLIP
                scores (``loss``), image ids (``predict``).
            mode (str): ``'loss'``, ``'predict'`` or ``'tensor'``.
        """
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.encode(self.extract_feat(inputs)).memory
        raise RuntimeError(f'Invalid mode "{mode}".')

    def loss(self, inputs: Dict[str, torch.Tensor],
             data_samples: Optional[List[DataSample]] = None) -> dict:
        """CLIP-weighted caption loss of a batch.

        Args:
            inputs (dict): The features (or images), ``caption_ids``
                (``(B, max_len + 1)`` int64, from
                :class:`~mmpcm.datasets.PCMTokenizeCaption` in the training
                pipeline) and, optionally, ``clip_score`` (``(B,)``).
            data_samples (list[DataSample], optional): Not read.

        Returns:
            dict: ``{'loss': scalar}``.

        Raises:
            KeyError: If ``inputs`` has no ``caption_ids`` (the training
                pipeline does not tokenize).
        """
        if 'caption_ids' not in inputs:
            raise KeyError(
                'PCMCaptioner.loss needs inputs["caption_ids"]: add '
                "dict(type='PCMTokenizeCaption', vocab=<vocab.json>, "
                "max_len=<the head's max_len>) to the train dataset's "
                'pipeline.')
        enc = self.encode(self.extract_feat(inputs))
        return self.head.loss(enc.memory, enc.padding_mask,
                              inputs['caption_ids'], inputs.get('clip_score'))

    def explain(self, feats: CLIPVisualFeatures) -> ConceptPicture:
        """PCM's concepts and selected patches for a batch of features.

        Args:
            feats (CLIPVisualFeatures): From :meth:`extract_feat`.

        Returns:
            ConceptPicture: ``(B, K)`` concepts and ``(B, N)`` patches; empty
            concepts (``K = 0``) and no selected patch when the neck runs
            without mix-up (the visual baseline).
        """
        b, n = feats.patch_tokens.shape[:2]
        device = feats.patch_tokens.device
        if not self.neck.mixup:
            none = torch.zeros(b, 0, device=device)
            no_patch = torch.zeros(b, n, device=device)
            return ConceptPicture(none.long(), none, none.bool(),
                                  no_patch.bool(), no_patch.long(), no_patch)
        with torch.no_grad(), fp32_region(device):
            joint = self.backbone.to_joint_space(feats.patch_tokens)  # (B, N, D)
        return self.neck.explain(joint.float(), feats.global_embed)

    def predict(self,
                inputs: Dict[str, torch.Tensor],
                data_samples: Optional[List[DataSample]] = None,
                beam_size: Optional[int] = None,
                return_concepts: Optional[bool] = None) -> List[DataSample]:
        """Caption a batch.

        Sets ``pred_caption`` (str) and ``pred_score`` (the caption's
        log-probability) on each data sample, and with ``return_concepts``
        also ``pcm_concepts``: a dict of the image's ``concept_ids``,
        ``concept_probs``, ``concept_kept`` (``(K,)``), ``selected``,
        ``patch_concept`` and ``patch_similarity`` (``(N,)``), see
        :class:`~mmpcm.models.necks.pcm_neck.ConceptPicture`. ``None`` takes
        ``self.explain_predictions``.
        """
        if return_concepts is None:
            return_concepts = self.explain_predictions
        feats = self.extract_feat(inputs)
        enc = self.encode(feats)
        decoded = self.head.predict(enc.memory, enc.padding_mask, beam_size)
        captions = self.head.decode_text(decoded)
        if data_samples is None:
            data_samples = [DataSample() for _ in captions]
        for sample, caption, score in zip(data_samples, captions,
                                          decoded.scores.tolist()):
            sample.pred_caption = caption
            sample.pred_score = score
        if return_concepts:
            picture = self.explain(feats)
            for i, sample in enumerate(data_samples):
                sample.pcm_concepts = {
                    name: value[i].cpu()
                    for name, value in picture._asdict().items()}
        return data_samples
