"""CLIP-S and RefCLIP-S (Hessel et al., EMNLP 2021) with the run's CLIP.

Definitions (paper eqs. and the authors' ``clipscore.py``), for a candidate
caption ``c``, its image ``v`` and references ``R``:

* every caption is embedded as the text ``"A photo depicts " + caption``
  (the authors' prefix, for candidates and references alike);
* ``CLIP-S(c, v) = w * max(cos(E_I(v), E_T(c)), 0)`` with ``w = 2.5``;
* ``RefCLIP-S(c, R, v) = H(CLIP-S(c, v), max(max_{r in R} cos(E_T(c),
  E_T(r)), 0))``, ``H(a, b) = 2ab / (a + b)`` the harmonic mean (0 when
  ``a = b = 0``). The reference part is a plain cosine (``w = 1``); the
  paper clamps it at 0 (the authors' code does not; it only matters for
  negative text-text cosines).
* Corpus scores are means over images, reported x100 like the other
  caption metrics.

Captions are embedded as given, after the prefix: the authors' release
lowercases captions and drops their final period before scoring its
training pairs
(:func:`~mmpcm.preprocessing.extraction.normalize_caption_for_clip`, used
for the feature stores' ``clip_score``), but that is a training-data
choice, not part of this metric's definition, so it is not applied here.

Image embeddings are the L2-normalised global CLIP embeddings the test set
already carries (``inputs['global_embed']`` of the feature datasets), or,
for image inputs (``inputs['images']``), the metric's CLIP image encoder.
"""
import os.path as osp
from typing import (Any, Callable, Dict, Hashable, List, Mapping, Optional,
                    Sequence)

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.structures import BaseDataElement

from mmpcm.datasets.clip_transforms import (normalize_pixels, pixel_mean_std,
                                            preprocess_cfg_of)
from mmpcm.models.backbones.open_clip_vit import build_open_clip
from mmpcm.registry import METRICS
from mmpcm.utils.cli import InputError, MissingInputError
from .caption_metric import load_references, plain_image_id
from .predictions import unique_image_ids

Tokenizer = Callable[[List[str]], torch.Tensor]

CLIP_S_WEIGHT = 2.5
TEXT_PREFIX = 'A photo depicts'


def clip_s(image_embeds: torch.Tensor, text_embeds: torch.Tensor,
           w: float = CLIP_S_WEIGHT) -> torch.Tensor:
    """Per-pair CLIP-S: ``w * max(cos(image, text), 0)``.

    Args:
        image_embeds (torch.Tensor): ``(B, D)`` image embeddings.
        text_embeds (torch.Tensor): ``(B, D)`` candidate text embeddings.
        w (float): Rescaling weight. Defaults to 2.5.

    Returns:
        torch.Tensor: ``(B,)`` scores in ``[0, w]``.
    """
    cos = F.cosine_similarity(image_embeds.float(), text_embeds.float(),
                              dim=-1)  # (B, )
    return w * cos.clamp(min=0)


def reference_similarity(candidate: torch.Tensor,
                         references: torch.Tensor) -> torch.Tensor:
    """RefCLIP-S's text part: ``max(max_r cos(candidate, r), 0)``.

    Args:
        candidate (torch.Tensor): ``(D,)`` candidate text embedding.
        references (torch.Tensor): ``(R, D)`` reference text embeddings,
            ``R >= 1``.

    Returns:
        torch.Tensor: Scalar in ``[0, 1]``.
    """
    cos = F.cosine_similarity(candidate.float()[None], references.float(),
                              dim=-1)  # (R, )
    return cos.max().clamp(min=0)


def harmonic_mean(a: float, b: float) -> float:
    """``2ab / (a + b)``, 0 when both are 0.

    Args:
        a (float): First value, >= 0.
        b (float): Second value, >= 0.

    Returns:
        float: The harmonic mean.
    """
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def build_clip_tokenizer(model_name: Optional[str] = None,
                         model_cfg: Optional[dict] = None) -> Tokenizer:
    """open_clip's tokenizer for a named model or a custom config.

    Args:
        model_name (str, optional): open_clip model name. Defaults to None.
        model_cfg (dict, optional): Custom open_clip config; its
            ``text_cfg.context_length`` is used. Defaults to None.

    Returns:
        Callable: ``texts -> (N, context_length)`` token ids (truncating).
    """
    if model_cfg is not None:
        length = dict(model_cfg.get('text_cfg', {})).get('context_length', 77)
        return open_clip.get_tokenizer('', context_length=length)
    return open_clip.get_tokenizer(model_name)


@METRICS.register_module()
class PCMCLIPScore(BaseMetric):
    """CLIP-S and, with references, RefCLIP-S of the predicted captions.

    Use the CLIP the captioner was run with (same open_clip model and
    weights), so that the image embeddings carried by the test set and the
    text embeddings live in one space. See the module docstring for the
    exact definitions. Each rank embeds its own captions in
    :meth:`process`; per-sample results are plain
    ``{'image_id', 'clip_s', 'ref_s'}`` dicts of floats, gathered by
    BaseMetric. The CLIP model is built on first use.

    Args:
        model_name (str, optional): open_clip model name, e.g.
            ``'ViT-B-32'``. Defaults to 'ViT-B-32'.
        pretrained (str, optional): open_clip pretrained tag or local
            weights file. Defaults to 'openai'.
        model_cfg (dict, optional): Custom open_clip config instead of a
            name. Defaults to None.
        clip (nn.Module, optional): An already built open_clip ``CLIP``
            (API use; overrides the three above). Defaults to None.
        ann_file (str, optional): COCO-format references; without it only
            CLIP-S is computed. Defaults to None.
        w (float): CLIP-S weight. Defaults to 2.5.
        text_prefix (str): Put before every caption. Defaults to
            'A photo depicts'.
        scale (float): Multiplier of the reported scores. Defaults to 100.
        device (str, optional): Where CLIP runs. Defaults to None (CUDA when
            available, else CPU).
        text_batch_size (int): Texts embedded per forward pass.
            Defaults to 256.
        collect_device (str): 'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names. Defaults to
            'clip-score'.

    Raises:
        MissingInputError: If ``pretrained`` names a missing local file (a
            ``FileNotFoundError``).
        ValueError: For an invalid ``ann_file``.
    """
    default_prefix: Optional[str] = 'clip-score'

    def __init__(self,
                 model_name: Optional[str] = 'ViT-B-32',
                 pretrained: Optional[str] = 'openai',
                 model_cfg: Optional[dict] = None,
                 clip: Optional[nn.Module] = None,
                 ann_file: Optional[str] = None,
                 w: float = CLIP_S_WEIGHT,
                 text_prefix: str = TEXT_PREFIX,
                 scale: float = 100.0,
                 device: Optional[str] = None,
                 text_batch_size: int = 256,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = 'clip-score') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        _check_local_weights(pretrained)
        self.model_name = model_name
        self.pretrained = pretrained
        self.model_cfg = dict(model_cfg) if model_cfg is not None else None
        self._model = clip
        self._model_ready = False
        self._tokenizer: Optional[Tokenizer] = None
        self.ann_file = ann_file
        self.references = (load_references(ann_file)
                           if ann_file is not None else None)
        self.w = w
        self.text_prefix = text_prefix.rstrip() + ' ' if text_prefix else ''
        self.scale = scale
        self.device = torch.device(
            device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self.text_batch_size = text_batch_size

    # ------------------------------------------------------------ CLIP
    @property
    def clip_model(self) -> nn.Module:
        """The open_clip model (built, frozen and moved on first use)."""
        if self._model is None:
            self._model = build_open_clip(self.model_name, self.pretrained,
                                          self.model_cfg)
        if not self._model_ready:
            self._model.eval().requires_grad_(False).to(self.device)
            self._model_ready = True
        return self._model

    @property
    def tokenizer(self) -> Tokenizer:
        """open_clip's tokenizer for the model."""
        if self._tokenizer is None:
            self._tokenizer = build_clip_tokenizer(self.model_name,
                                                   self.model_cfg)
        return self._tokenizer

    @torch.no_grad()
    def embed_texts(self, captions: Sequence[str]) -> torch.Tensor:
        """L2-normalised CLIP text embeddings of prefixed captions.

        Args:
            captions (Sequence[str]): Captions (without the prefix).

        Returns:
            torch.Tensor: ``(N, D)`` float32 embeddings on the CPU.
        """
        texts = [self.text_prefix + c for c in captions]
        parts = []
        for start in range(0, len(texts), self.text_batch_size):
            tokens = self.tokenizer(texts[start:start + self.text_batch_size])
            embeds = self.clip_model.encode_text(tokens.to(self.device))
            parts.append(F.normalize(embeds.float(), dim=-1).cpu())
        return torch.cat(parts) if parts else torch.zeros(0, 0)

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised CLIP image embeddings of ``[0, 255]`` RGB images.

        Normalised with the mean and std of the model's own open_clip
        preprocess config, as the backbone normalises.

        Args:
            images (torch.Tensor): ``(B, 3, H, W)`` at CLIP's input size.

        Returns:
            torch.Tensor: ``(B, D)`` float32 embeddings on the CPU.
        """
        mean, std = pixel_mean_std(preprocess_cfg_of(self.clip_model),
                                   self.device)  # (1, 3, 1, 1) each
        x = normalize_pixels(images.to(self.device), mean, std)  # (B, 3, H, W)
        embeds = self.clip_model.encode_image(x)
        return F.normalize(embeds.float(), dim=-1).cpu()

    def batch_image_embeds(self, data_batch: Any) -> torch.Tensor:
        """Image embeddings of a batch, from its features or its images.

        Args:
            data_batch (dict): The collated batch the model was fed:
                ``inputs`` with ``global_embed`` ``(B, D)`` or ``images``
                ``(B, 3, H, W)``.

        Returns:
            torch.Tensor: ``(B, D)`` float32, L2-normalised, on the CPU.

        Raises:
            KeyError: If the batch has neither.
        """
        inputs = data_batch.get('inputs') if isinstance(data_batch,
                                                        Mapping) else None
        if isinstance(inputs, Mapping) and 'global_embed' in inputs:
            return F.normalize(
                torch.as_tensor(inputs['global_embed']).float().cpu(), dim=-1)
        if isinstance(inputs, Mapping) and 'images' in inputs:
            return self.embed_images(torch.as_tensor(inputs['images']))
        raise KeyError(
            'PCMCLIPScore needs the image embeddings of each sample: the '
            'evaluated batch must carry inputs["global_embed"] (feature '
            'datasets) or inputs["images"] (image datasets).')

    # ------------------------------------------------------------ metric
    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Score each predicted caption against its image (and references).

        Args:
            data_batch (dict): The collated input batch (image embeddings).
            data_samples (Sequence[dict | BaseDataElement]): Model outputs
                with ``pred_caption`` and ``image_id``.

        Raises:
            KeyError: If a sample lacks ``image_id`` or ``pred_caption``.
            InputError: If (with references) an id is not in ``ann_file``,
                or the image and text embeddings differ in width (features
                of another CLIP); a ``ValueError``.
        """
        samples = [
            s.to_dict() if isinstance(s, BaseDataElement) else dict(s)
            for s in data_samples
        ]
        for sample in samples:
            missing = [k for k in ('image_id', 'pred_caption')
                       if k not in sample]
            if missing:
                raise KeyError(f'PCMCLIPScore needs {missing} in each output '
                               f'data sample; got keys {sorted(sample)}.')
        ids = [plain_image_id(s['image_id']) for s in samples]
        images = self.batch_image_embeds(data_batch)  # (B, D)
        texts = self.embed_texts([str(s['pred_caption']) for s in samples])
        if images.shape[-1] != texts.shape[-1]:
            raise InputError(
                self._features_source(), f'image embeddings '
                f'{tuple(images.shape)} and the caption embeddings '
                f'{tuple(texts.shape)} of PCMCLIPScore\'s CLIP '
                f'{self.model_name!r} disagree: the features were made with '
                'another CLIP than the metric\'s',
                'set the metric\'s model_name and pretrained to the CLIP of '
                'the features, or extract the features with the metric\'s '
                'CLIP (tools/data/extract_features.py)')
        if images.shape != texts.shape:
            raise ValueError(
                f'PCMCLIPScore: {images.shape[0]} image embeddings for '
                f'{texts.shape[0]} predicted captions')
        scores = clip_s(images, texts, self.w).tolist()
        ref_scores = self._reference_scores(ids, texts)
        for image_id, score, ref in zip(ids, scores, ref_scores):
            self.results.append(
                dict(image_id=image_id, clip_s=float(score), ref_s=ref))

    def _features_source(self) -> str:
        """The evaluated feature store (its root), for error messages."""
        store = (self.dataset_meta or {}).get('feature_store')
        if isinstance(store, Mapping) and store.get('root'):
            return str(store['root'])
        return 'the evaluated features'

    def _reference_scores(self, ids: List[Hashable],
                          texts: torch.Tensor) -> List[Optional[float]]:
        """The text-text part of RefCLIP-S per sample (None without refs)."""
        if self.references is None:
            return [None] * len(ids)
        unknown = [i for i in ids if not self.references.get(i)]
        if unknown:
            raise InputError(
                self.ann_file, f'image ids {unknown[:5]!r} have no reference '
                'caption (ids are compared as given: 1 and "1" differ)',
                'set the metric\'s ann_file to the references of the '
                'evaluated images')
        refs = [self.references[i] for i in ids]
        ref_embeds = self.embed_texts([r for rs in refs for r in rs])
        out, start = [], 0
        for candidate, rs in zip(texts, refs):
            part = ref_embeds[start:start + len(rs)]  # (R, D)
            out.append(float(reference_similarity(candidate, part)))
            start += len(rs)
        return out

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Average the per-image scores.

        Args:
            results (list[dict]): Items from :meth:`process`, all ranks.

        Returns:
            dict: ``CLIP-S`` and, with references, ``RefCLIP-S`` (x scale).

        Raises:
            ValueError: If there are no results or an id repeats.
        """
        unique_image_ids(results, 'PCMCLIPScore')
        n = len(results)
        mean_clip_s = sum(r['clip_s'] for r in results) / n
        metrics = {'CLIP-S': self.scale * mean_clip_s}
        if self.references is not None:
            ref = sum(harmonic_mean(r['clip_s'], r['ref_s']) for r in results)
            metrics['RefCLIP-S'] = self.scale * ref / n
        return metrics


def _check_local_weights(pretrained: Optional[str]) -> None:
    """Fail early when ``pretrained`` names a local file that is missing."""
    if pretrained is None:
        return
    looks_local = osp.sep in pretrained or pretrained.endswith(
        ('.pt', '.pth', '.bin', '.safetensors'))
    if looks_local and not osp.isfile(pretrained):
        raise MissingInputError(
            pretrained, 'no such CLIP weights file (PCMCLIPScore pretrained)',
            'pass an existing weights file, or an open_clip pretrained tag '
            'such as \'openai\'')


__all__ = [
    'PCMCLIPScore', 'build_clip_tokenizer', 'clip_s', 'harmonic_mean',
    'reference_similarity', 'CLIP_S_WEIGHT', 'TEXT_PREFIX'
]
