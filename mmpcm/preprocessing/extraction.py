"""CLIP features, caption embeddings and CLIP scores into a feature store.

:func:`extract_features` encodes images with the frozen CLIP image encoder
PCM-Net trains on (:class:`~mmpcm.models.backbones.OpenCLIPVisionBackbone`:
patch tokens before ``ln_post``, pooled ``patch_pool`` x ``patch_pool``, and
the normalised global embedding) and writes them with
:class:`~mmpcm.datasets.feature_store.FeatureStoreWriter` (float16; layout in
``docs/feature_format.md``). ``tools/data/extract_features.py`` is its
command line.

Inputs (:class:`ExtractionItem` lists):

* synthetic: a generation output folder (:func:`items_from_generated`); its
  records give each image's caption. Captioned items also get the caption's
  CLIP text embedding (``text_embeds.npy``; open_clip tokenizer, truncated to
  the context length, truncations counted and flagged per record) and the
  raw CLIP score cos(g_image, g_caption) in ``clip_score``. The text
  encoder sees each caption as :func:`normalize_caption_for_clip` makes it
  (lowercased, final period removed), as the authors' release scored its
  pairs; the record keeps the caption as written (it is the training
  target), and meta.json records the normalisation
  (``clip_score_text``).
* real: a folder of images, searched recursively (:func:`items_from_folder`),
  or a text file of image paths, one per line, relative to the list file's
  folder (:func:`items_from_list`); both read by
  :mod:`mmpcm.datasets.image_lists`, as testing from images and captioning
  read them. ``image_id`` is the file stem.

Images are decoded in DataLoader workers by the loader every tool shares,
:func:`mmpcm.datasets.transforms.load_image` (EXIF orientation applied,
transparency composited on white, 16-bit and float images scaled to 8-bit
RGB, first frame of an animation; the same pixels as captioning and testing
from images), then open_clip's own eval transform for the model (resize
shortest side, center crop), kept as uint8 [0, 255]: the backbone
normalises with CLIP's mean/std itself. An unreadable image (missing,
truncated, not an image) is skipped and listed in ``failed.txt``.

Decoding on the device (``ExtractionConfig.decode='device'``, the tool's
``--decode device``): PIL decoding and resizing cost about 5 ms of a host
core per 512 px JPEG, far more than the CLIP forward on a GPU. In this mode
the workers only read each file's bytes, and the main process decodes a
batch of JPEGs on the extraction device (``torchvision.io.decode_jpeg``,
nvJPEG on CUDA) and resizes / center-crops it there
(:func:`device_preprocess`, a copy of open_clip's bicubic transform). Per
item, everything else falls back to the PIL path, so it is decoded, or fails
with the same ``failed.txt`` reason, exactly as with ``decode='cpu'``:

* in the worker, a file is only sent to the device if it is a complete,
  upright RGB or grayscale JPEG (PIL reads its header: format JPEG/MPO,
  mode RGB or L, no EXIF orientation other than 1; the file ends with the
  JPEG end-of-image marker). PNGs and other formats, CMYK and EXIF-rotated
  JPEGs, truncated and unreadable files take the PIL path in the worker;
* a JPEG the device decoder rejects (the batch call fails, then each image
  is retried alone) is decoded with PIL in the main process.

The two modes' pixels differ at rounding level, so the features do too:
another bicubic resampler (a mean absolute difference of 0.14 on the 0-255
scale, at most 4, over 256 of ``benchmarks/extract_speed.py``'s synthetic
512 px JPEGs resized to 224 px and decoded on the CPU, where torchvision and
PIL share libjpeg-turbo's decoder) and, on CUDA, another JPEG decoder
(nvJPEG; ``extract_speed.py --gpu-decode`` prints the total difference). The
mode is recorded (``decode`` in ``extraction_source.json``, hence in
``done.json`` and ``extraction_info.json``) and a run in the other mode into
the same output folder is refused: one store never mixes the two.

Sharding and merge: the item list is split into contiguous blocks, rank
``k`` of ``W`` taking ``[n*k/W, n*(k+1)/W)``; each rank writes its own
complete feature store, so ranks never share a file::

    <out>/extraction_source.json          # input list, decode mode; checked
    <out>/rank_00000-of-00002/meta.json   # rank 0's store (resumable)
    <out>/rank_00000-of-00002/shard_00000/...
    <out>/rank_00000-of-00002/failed.txt  # image_id <TAB> path <TAB> reason
    <out>/rank_00000-of-00002/done.json   # written when the rank finished
    <out>/rank_00001-of-00002/...

:func:`merge_feature_parts` (``--merge``; automatic for a single process)
checks that all ``W`` ranks are done with the same CLIP settings, moves the
shards into one store in rank order (which is input order), and writes::

    <out>/meta.json  <out>/shard_00000/ ...   # one store (SynthImgCapDataset)
    <out>/failed.txt                          # every skipped image
    <out>/extraction_info.json                # source, CLIP, counts, versions

``meta.json`` is written after every shard is in place and the rank folders
are deleted after that; a merge interrupted anywhere can be rerun. Resume: a
rank reopens its store and skips the image ids already in complete shards.
The rank folder names carry ``W``; parts of different world sizes are
refused, and so is another input list in the same ``<out>``.
"""
import hashlib
import io
import json
import logging
import os
import os.path as osp
import re
import shutil
from dataclasses import dataclass, field
from typing import (Any, Callable, Dict, Iterable, List, NamedTuple, Optional,
                    Sequence, Tuple, Union)

import numpy as np
import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.tokenizer import HFTokenizer, SimpleTokenizer
from open_clip.transform import (MaybeConvertMode, MaybeToTensor, Normalize,
                                 PreprocessCfg, ToTensor, image_transform_v2)
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import (CenterCrop, Compose, InterpolationMode,
                                    PILToTensor, Resize)
from tqdm import tqdm

from mmpcm.datasets.feature_store import (META_FILE, RECORDS_FILE,
                                          CLIPFeatureInfo, FeatureStore,
                                          FeatureStoreMeta, FeatureStoreWriter,
                                          ShardInfo, read_meta, write_meta)
from mmpcm.datasets.image_lists import (IMAGE_EXTENSIONS, read_path_list,
                                        scan_folder, stem_image_ids)
from mmpcm.datasets.transforms import (ImageLoadError, exif_orientation,
                                       load_image)
from mmpcm.models.backbones.open_clip_vit import (OpenCLIPVisionBackbone,
                                                  build_open_clip)
from mmpcm.utils.cli import InputError
from mmpcm.utils.fileio import (PathLike, atomic_write_json, atomic_write_text,
                                sha256_file)
from .generation import load_generation_records, read_caption_file
from .sharding import (RankInfo, contiguous_block, device_for_rank,
                       get_rank_info)

logger = logging.getLogger(__name__)

SOURCE_FILE = 'extraction_source.json'
INFO_FILE = 'extraction_info.json'
FAILED_FILE = 'failed.txt'
DONE_FILE = 'done.json'
_PART_RE = re.compile(r'^rank_(\d{5})-of-(\d{5})$')
_LOCAL_WEIGHT_SUFFIXES = ('.pt', '.pth', '.bin', '.safetensors', '.npz')
DECODE_MODES = ('cpu', 'device')
_JPEG_EOI = b'\xff\xd9'  # the end-of-image marker, a complete JPEG's last
_DEVICE_FORMATS = ('JPEG', 'MPO')  # MPO: camera JPEGs, frame 0 decoded
_DEVICE_MODES = ('RGB', 'L')

__all__ = [
    'CLIP_SCORE_TEXT', 'normalize_caption_for_clip', 'ExtractionItem',
    'items_from_generated', 'items_from_folder', 'items_from_list',
    'CLIPSpec', 'ExtractionConfig', 'FailedImage',
    'ExtractionSummary', 'CLIPFeatureExtractor', 'clip_image_transform',
    'device_preprocess', 'device_transform_size', 'DECODE_MODES',
    'extract_features', 'merge_feature_parts', 'part_dir'
]


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------
class ExtractionItem(NamedTuple):
    """One image to encode.

    Attributes:
        path (str): The image file.
        image_id (int | str): Id stored in the record (unique).
        relpath (str): Path relative to the input root (kept in the record).
        caption (str, optional): Its caption (synthetic data), or None.
    """
    path: str
    image_id: Union[int, str]
    relpath: str
    caption: Optional[str] = None


def items_from_generated(gen_dir: PathLike,
                         captions_file: Optional[PathLike] = None
                         ) -> List[ExtractionItem]:
    """The generated images of a generation output folder, with captions.

    Items the generation recorded as failed have no image and are left out
    (and counted in the log).

    Args:
        gen_dir (str | PathLike): Output folder of
            :func:`~mmpcm.preprocessing.generation.generate_images`.
        captions_file (str | PathLike, optional): The caption corpus; when
            given, every generated item's caption must equal its line.
            Defaults to None (the captions in the records are used).

    Returns:
        list[ExtractionItem]: By caption index; ``image_id`` is the index.

    Raises:
        ValueError: If a caption differs from the corpus line it was
            generated from (naming file, line and both texts).
    """
    gen_dir = os.fspath(gen_dir)
    records = load_generation_records(gen_dir)
    ok = [records[i] for i in sorted(records) if records[i].status == 'ok']
    if len(ok) < len(records):
        logger.warning(f'{gen_dir}: {len(records) - len(ok)} caption(s) '
                       'have no image (generation failed); not extracted')
    if captions_file is not None:
        _check_captions_match(gen_dir, records, os.fspath(captions_file))
    return [
        ExtractionItem(osp.join(gen_dir, r.file), r.index, r.file, r.caption)
        for r in ok
    ]


def _check_captions_match(gen_dir: str, records: Dict[int, Any],
                          captions_file: str) -> None:
    """Raise unless every generated item's caption is its corpus line."""
    corpus = read_caption_file(captions_file)
    for index in sorted(records):
        found = corpus.caption_at(index)
        if found != records[index].caption:
            raise ValueError(
                f'{captions_file}:{index + 1}: line is {found!r}, but '
                f'{gen_dir} generated image {index} from '
                f'{records[index].caption!r}: the images were made from '
                'another caption file')
    missing = len(corpus.items) - sum(1 for it in corpus.items
                                      if it.index in records)
    if missing:
        logger.warning(f'{gen_dir}: {missing} caption(s) of {captions_file} '
                       'have no generated image yet')


def _check_unique_ids(items: Sequence[ExtractionItem]) -> None:
    seen: Dict[Union[int, str], str] = {}
    for item in items:
        if item.image_id in seen:
            raise ValueError(
                f'image id {item.image_id!r} (the file stem) is used by both '
                f'{seen[item.image_id]} and {item.path}; image ids must be '
                'unique')
        seen[item.image_id] = item.path


def _stem_items(paths: Sequence[str], relpaths: Sequence[str],
                source: str) -> List[ExtractionItem]:
    """Items of listed or scanned files; ids the (unique) file stems."""
    ids = stem_image_ids(paths, source)
    return [ExtractionItem(p, i, r) for p, i, r in zip(paths, ids, relpaths)]


def items_from_folder(folder: PathLike) -> List[ExtractionItem]:
    """Every image file under ``folder``.

    The folder is scanned by
    :func:`~mmpcm.datasets.image_lists.scan_folder`, as testing from images
    and captioning scan it: recursive, a folder's files sorted by name
    before its subfolders, hidden files and folders skipped, image files
    picked by extension (:data:`IMAGE_EXTENSIONS`, ignoring case); whether
    they decode is found out during extraction.

    Args:
        folder (str | PathLike): The image folder.

    Returns:
        list[ExtractionItem]: ``image_id`` is the file stem, ``relpath``
        the path relative to ``folder``.

    Raises:
        MissingInputError: If ``folder`` does not exist.
        InputError: If two files share a stem.
    """
    folder = os.fspath(folder)
    scan = scan_folder(folder)
    if scan.skipped:
        logger.info(f'{folder}: ignored {len(scan.skipped)} file(s) without '
                    f'an image extension {IMAGE_EXTENSIONS}')
    return _stem_items([osp.join(folder, rel) for rel in scan.files],
                       scan.files, folder)


def items_from_list(list_file: PathLike) -> List[ExtractionItem]:
    """Images named in a plain list file, one path per line.

    The file is read by :func:`~mmpcm.datasets.image_lists.read_path_list`,
    as testing from images and captioning read it: relative paths are
    relative to the list file's folder, blank lines and ``#`` comments are
    skipped, the text is decoded by :func:`mmpcm.utils.text_io.read_text`
    (UTF-8, or UTF-16/UTF-32 with a byte-order mark, or BOM-less UTF-16).
    A typed ``.jsonl`` list is refused (see that function).

    Args:
        list_file (str | PathLike): The list file.

    Returns:
        list[ExtractionItem]: In file order; ``image_id`` is the file stem,
        ``path`` absolute, ``relpath`` the line as written.

    Raises:
        MissingInputError: If the list file does not exist.
        InputError: If it is not text in a supported encoding, holds a
            NUL byte, is a JSON file, or two paths share a stem.
    """
    list_file = os.fspath(list_file)
    listed = read_path_list(list_file)
    return _stem_items([osp.abspath(image.path) for image in listed],
                       [image.entry for image in listed], list_file)


# --------------------------------------------------------------------------
# CLIP
# --------------------------------------------------------------------------
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


def clip_image_transform(clip_model: torch.nn.Module) -> Callable:
    """open_clip's eval transform for ``clip_model``, ending in uint8.

    Resize and center crop exactly as open_clip preprocesses for this model,
    then ``PILToTensor``: a ``(3, S, S)`` uint8 tensor in [0, 255], the input
    convention of :class:`OpenCLIPVisionBackbone` (which normalises itself
    with CLIP's mean and std).

    Args:
        clip_model (nn.Module): open_clip ``CLIP`` model.

    Returns:
        Callable: PIL RGB image -> ``(3, S, S)`` uint8 tensor.
    """
    visual = clip_model.visual
    cfg = getattr(visual, 'preprocess_cfg', None) or dict(
        size=visual.image_size)
    pp = PreprocessCfg(**cfg)
    if (tuple(pp.mean), tuple(pp.std)) != (OPENAI_DATASET_MEAN,
                                           OPENAI_DATASET_STD):
        logger.warning(f'the model preprocesses with mean {pp.mean} / std '
                       f'{pp.std}, but OpenCLIPVisionBackbone normalises '
                       'with the OpenAI CLIP values')
    steps = [
        t for t in image_transform_v2(pp, is_train=False).transforms
        if not isinstance(t, (MaybeToTensor, ToTensor, Normalize))
    ]
    return Compose(steps + [PILToTensor()])


def device_transform_size(transform: Callable) -> int:
    """The crop side of ``transform``, if :func:`device_preprocess` copies it.

    :func:`device_preprocess` reproduces open_clip's default eval transform
    of a square model: bicubic resize of the shortest side to ``S``, center
    crop ``S`` x ``S``. Other transforms (``resize_mode`` 'longest' or
    'squash', bilinear, non-square) are refused.

    Args:
        transform (Callable): The PIL transform, as
            :func:`clip_image_transform` builds it.

    Returns:
        int: ``S``, the side of the model's input.

    Raises:
        ValueError: If ``transform`` is not such a resize + center crop.
    """
    steps = [
        t for t in getattr(transform, 'transforms', [transform])
        if not isinstance(t, (MaybeConvertMode, PILToTensor))
    ]
    if len(steps) == 2 and isinstance(steps[0], Resize) and isinstance(
            steps[1], CenterCrop):
        resize, crop = steps
        size = resize.size
        if isinstance(size, (list, tuple)) and len(size) == 1:
            size = size[0]
        if (isinstance(size, int) and tuple(crop.size) == (size, size)
                and resize.interpolation == InterpolationMode.BICUBIC
                and resize.max_size is None):
            return size
    raise ValueError(
        "decode='device' reproduces open_clip's eval transform of square "
        'models only (bicubic resize of the shortest side, center crop); '
        f'this model\'s transform is {transform}; extract with decode=\'cpu\'')


def device_preprocess(data: Sequence[torch.Tensor], size: int,
                      device: Union[str, torch.device]) -> torch.Tensor:
    """Decode JPEG files on ``device``, resize and center-crop them there.

    A copy of open_clip's eval transform (:func:`device_transform_size`)
    for tensors: the shortest side to ``size`` with antialiased bicubic
    resampling (PIL's kernel), the center ``size`` x ``size`` crop, rounded
    to uint8. The pixels differ from PIL's at rounding level: another
    bicubic implementation (float, no intermediate uint8 rounding) and, on
    CUDA, another JPEG decoder (nvJPEG). Images of one shape are resized
    together. The tool's ``--decode device`` and
    ``benchmarks/extract_speed.py --gpu-decode`` both decode with this.

    Args:
        data (Sequence[Tensor]): Encoded JPEG files, each a 1-D uint8 CPU
            tensor of the file's bytes.
        size (int): The crop side, CLIP's input size.
        device (str | torch.device): Where to decode and resize (nvJPEG on
            CUDA, libjpeg-turbo on the CPU).

    Returns:
        Tensor: ``(B, 3, size, size)`` uint8 on ``device``, in the order of
        ``data``.

    Raises:
        RuntimeError: If the decoder rejects a file; then the whole call
            fails (nvJPEG decodes the batch at once), and the caller may
            retry the files one by one.
    """
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import functional as F
    device = torch.device(device)
    images = decode_jpeg(list(data), mode=ImageReadMode.RGB,
                         device=device)  # B x (3, H_i, W_i) uint8
    by_shape: Dict[Tuple[int, ...], List[int]] = {}
    for i, image in enumerate(images):
        by_shape.setdefault(tuple(image.shape), []).append(i)
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8,
                      device=device)  # (B, 3, S, S)
    for indices in by_shape.values():
        group = torch.stack([images[i] for i in indices])  # (G, 3, H, W)
        x = F.resize(group.float(), [size], InterpolationMode.BICUBIC,
                     antialias=True)  # (G, 3, H', W'), min(H', W') == S
        x = F.center_crop(x, [size, size])  # (G, 3, S, S)
        out.index_copy_(0, torch.tensor(indices, device=device),
                        x.round_().clamp_(0, 255).to(torch.uint8))
    return out


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


# --------------------------------------------------------------------------
# data loading
# --------------------------------------------------------------------------
class FailedImage(NamedTuple):
    """An image that could not be read."""
    image_id: Union[int, str]
    path: str
    reason: str


def _load_image(path: str, transform: Callable
                ) -> Tuple[Optional[torch.Tensor], Optional[str]]:
    """Decode one image with the loader of every tool, then ``transform``.

    :func:`~mmpcm.datasets.transforms.load_image` applies EXIF orientation,
    composites transparency on white and scales 16-bit / float images to
    8-bit RGB before ``transform`` resizes, as captioning and testing from
    images do.

    Returns:
        tuple: ``((3, S, S) uint8 tensor, None)``, or ``(None, reason)``
        if the file cannot be read.
    """
    try:
        rgb = load_image(path)
    except ImageLoadError as err:
        return None, err.reason
    return transform(rgb), None


def _device_jpeg_bytes(path: str) -> Optional[np.ndarray]:
    """The file's bytes if the device decoder is to take it, else None.

    Only complete, upright RGB or grayscale JPEGs qualify: PIL reads the
    header (tens of microseconds, no decoding), the EXIF orientation must be
    absent or 1 (the device decoder does not rotate) and the file must end
    with the end-of-image marker. Everything else, unreadable files
    included, takes the PIL path, where it decodes or fails exactly as with
    ``decode='cpu'``.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)  # (num_bytes, )
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            fmt, mode = img.format, img.mode
            upright = fmt in _DEVICE_FORMATS and exif_orientation(img) == 1
    except Exception:  # noqa: BLE001  (the PIL path reports it)
        return None
    if (not upright or mode not in _DEVICE_MODES
            or data[-2:].tobytes() != _JPEG_EOI):
        return None
    return data


class _ImageDataset(Dataset):
    """The items at ``positions``, decoded (in DataLoader workers).

    With ``decode='device'``, JPEGs the device decoder can take are only
    read (``data``: the file's bytes); the rest are decoded with PIL.
    """

    def __init__(self, items: Sequence[ExtractionItem],
                 positions: Sequence[int], transform: Callable,
                 decode: str = 'cpu') -> None:
        self.items, self.positions = items, list(positions)
        self.transform, self.decode = transform, decode

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        pos = self.positions[i]
        path = self.items[pos].path
        if self.decode == 'device':
            # NumPy, not torchvision.io.read_file: read_file's tensors cannot
            # be sent from a worker (sharing their storage fails, EBADF).
            data = _device_jpeg_bytes(path)
            if data is not None:
                return dict(pos=pos, image=None, error=None,
                            data=torch.from_numpy(data))
        image, error = _load_image(path, self.transform)
        return dict(pos=pos, image=image, error=error, data=None)


def _collate(batch: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack the decoded images, pack the undecoded files' bytes into one
    tensor (one shared-memory block per batch, not one per file); keep the
    failures aside."""
    good = [b for b in batch if b['image'] is not None]
    encoded = [b for b in batch if b.get('data') is not None]
    images = torch.stack([b['image'] for b in good]) if good else None
    return dict(
        positions=[b['pos'] for b in good],
        images=images,  # (B, 3, S, S) uint8
        encoded_positions=[b['pos'] for b in encoded],
        encoded=torch.cat([b['data'] for b in encoded])
        if encoded else None,  # (total bytes, ): the files back to back
        encoded_sizes=[len(b['data']) for b in encoded],
        failed=[(b['pos'], b['error']) for b in batch
                if b['image'] is None and b.get('data') is None])


# --------------------------------------------------------------------------
# settings, summary, bookkeeping files
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ExtractionConfig:
    """How to run an extraction.

    Args:
        batch_size (int): Images per forward pass. Defaults to 64.
        num_workers (int): DataLoader workers decoding images.
            Defaults to 4.
        shard_size (int): Items per feature-store shard. Defaults to 4096.
        device (str, optional): Defaults to None (``cuda:LOCAL_RANK`` when
            CUDA is present, else CPU).
        amp (bool): float16 autocast on CUDA. Defaults to True.
        merge (bool): Merge the rank parts when the run is a single process.
            Defaults to True.
        decode (str): ``'cpu'``: PIL decodes and resizes in the workers;
            ``'device'``: JPEGs are decoded and resized on ``device``
            (:func:`device_preprocess`; other files and rejected JPEGs
            still go through PIL). Features of the two modes differ at
            rounding level; a store is refused to the other mode. Defaults
            to 'cpu'.
    """
    batch_size: int = 64
    num_workers: int = 4
    shard_size: int = 4096
    device: Optional[str] = None
    amp: bool = True
    merge: bool = True
    decode: str = 'cpu'

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise ValueError(f'decode must be one of {DECODE_MODES}, got '
                             f'{self.decode!r}')


@dataclass
class ExtractionSummary:
    """What one rank did in one run.

    Args:
        assigned (int): Items of this rank's block.
        already_done (int): Of those, stored by an earlier run.
        extracted (int): Items stored in this run.
        failed (list[FailedImage]): Unreadable images (this rank, all runs).
        truncated_captions (int): Captions of this run longer than CLIP's
            context, truncated.
        part_dir (str): This rank's store.
        merged_dir (str, optional): The merged store, when merged.
    """
    assigned: int = 0
    already_done: int = 0
    extracted: int = 0
    failed: List[FailedImage] = field(default_factory=list)
    truncated_captions: int = 0
    part_dir: str = ''
    merged_dir: Optional[str] = None


def part_dir(out_dir: PathLike, info: RankInfo) -> str:
    """``<out>/rank_<rank:05d>-of-<world:05d>``."""
    return osp.join(os.fspath(out_dir),
                    f'rank_{info.rank:05d}-of-{info.world_size:05d}')


def _items_digest(items: Sequence[ExtractionItem]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps([item.image_id, item.relpath,
                                  item.caption]).encode() + b'\n')
    return digest.hexdigest()


def _write_or_check_source(out_dir: str, source: Dict[str, Any]) -> None:
    """Record the input list and decode mode, or refuse different ones."""
    path = osp.join(out_dir, SOURCE_FILE)
    if not osp.isfile(path):
        atomic_write_json(path, source)
        return
    with open(path, encoding='utf-8') as f:
        recorded = json.load(f)
    keys = ('num_items', 'items_sha256')
    if any(recorded.get(k) != source[k] for k in keys):
        raise ValueError(
            f'{path}: this folder was started with another input list '
            f'({recorded.get("num_items")} items from '
            f'{recorded.get("root")!r}; now {source["num_items"]} from '
            f'{source["root"]!r}). Ranks split the list by position, so a '
            'changed list would mix items; use a new output folder.')
    # Folders started before the decode option have no key: PIL decoded.
    recorded_decode = recorded.get('decode', 'cpu')
    if recorded_decode != source['decode']:
        raise ValueError(
            f'{path}: "decode" is {recorded_decode!r} (the images already '
            f'stored were decoded that way), but this run has decode='
            f'{source["decode"]!r}. Features of the two modes differ at '
            'rounding level and one store must not mix them: resume with '
            f'--decode {recorded_decode} or use a new output folder.')


def _read_failed(path: str) -> Dict[str, FailedImage]:
    failed: Dict[str, FailedImage] = {}
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            for line in f:
                image_id, img_path, reason = line.rstrip('\n').split('\t', 2)
                failed[image_id] = FailedImage(image_id, img_path, reason)
    return failed


def _write_failed(path: str, failed: Iterable[FailedImage]) -> None:
    lines = [f'{f.image_id}\t{f.path}\t{" ".join(f.reason.split())}\n'
             for f in failed]
    atomic_write_text(path, ''.join(lines))


def _versions() -> Dict[str, str]:
    return dict(open_clip=open_clip.__version__, torch=torch.__version__)


# --------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------
class _RankRun:
    """One rank's extraction into its part store."""

    def __init__(self, items: Sequence[ExtractionItem], part: str,
                 extractor: CLIPFeatureExtractor,
                 config: ExtractionConfig) -> None:
        self.items, self.part = items, part
        self.extractor, self.config = extractor, config
        self.captioned = items[0].caption is not None if items else False
        self.writer = FeatureStoreWriter(
            part, extractor.clip_info, config.shard_size,
            clip_score_text=CLIP_SCORE_TEXT if self.captioned else None)
        self.failed_path = osp.join(part, FAILED_FILE)
        self.failed = _read_failed(self.failed_path)
        self.device_size = (device_transform_size(extractor.transform)
                            if config.decode == 'device' else None)

    def stored_ids(self) -> set:
        if not self.writer.num_items:
            return set()
        return {r['image_id'] for r in FeatureStore(self.part).records}

    def run(self, positions: List[int], summary: ExtractionSummary,
            bar: tqdm) -> None:
        loader = DataLoader(
            _ImageDataset(self.items, positions, self.extractor.transform,
                          self.config.decode),
            batch_size=self.config.batch_size,
            num_workers=self.config.num_workers, collate_fn=_collate,
            pin_memory=self.extractor.device.type == 'cuda')
        with bar:
            for batch in loader:
                positions, images, failed = self._batch_images(batch)
                self._note_failures(failed)
                if positions:
                    self._add(positions, images, summary)
                bar.update(len(batch['positions']) + len(batch['failed']) +
                           len(batch['encoded_positions']))
                bar.set_postfix(failed=len(self.failed))
        self.writer.close()
        _write_failed(self.failed_path, self.failed.values())

    def _batch_images(self, batch: Dict[str, Any]
                      ) -> Tuple[List[int], Optional[torch.Tensor],
                                 List[Tuple[int, str]]]:
        """The batch's images in input order, the encoded ones decoded on
        the device, and its failures in input order: ``(positions,
        (B, 3, S, S) uint8, [(position, reason)])``."""
        positions, images = batch['positions'], batch['images']
        if not batch['encoded_positions']:
            return positions, images, batch['failed']
        data = torch.split(batch['encoded'],
                           batch['encoded_sizes'])  # B x (num_bytes, )
        dev_positions, dev_images, failed = self._decode_on_device(
            batch['encoded_positions'], data)
        failed = sorted(batch['failed'] + failed)
        if images is None:
            return dev_positions, dev_images, failed
        if dev_images is None:
            return positions, images, failed
        device = self.extractor.device
        merged = torch.cat([images.to(device, non_blocking=True),
                            dev_images])  # (B, 3, S, S)
        merged_positions = positions + dev_positions
        order = sorted(range(len(merged_positions)),
                       key=merged_positions.__getitem__)
        return ([merged_positions[i] for i in order],
                merged[torch.tensor(order, device=device)], failed)

    def _decode_on_device(self, positions: List[int],
                          data: Sequence[torch.Tensor]
                          ) -> Tuple[List[int], Optional[torch.Tensor],
                                     List[Tuple[int, str]]]:
        """Decode + resize on the device; per image on a failure, then
        PIL for the images the device decoder rejects: ``(positions kept,
        (B, 3, S, S) uint8, [(position, PIL's reason)])``."""
        device = self.extractor.device
        try:
            return positions, device_preprocess(data, self.device_size,
                                                device), []
        except (RuntimeError, ValueError) as err:
            logger.warning(f'decoding {len(data)} JPEGs on {device} failed '
                           f'({_first_line(err)}); decoding them one by one')
        kept, images, failed = [], [], []
        for pos, one in zip(positions, data):
            try:
                images.append(device_preprocess(
                    [one], self.device_size, device))  # (1, 3, S, S)
                kept.append(pos)
                continue
            except (RuntimeError, ValueError) as err:
                rejected = _first_line(err)
            path = self.items[pos].path
            image, error = _load_image(path, self.extractor.transform)
            if image is None:
                failed.append((pos, error))
                continue
            logger.warning(f'{path}: the decoder on {device} rejected it '
                           f'({rejected}); decoded with PIL instead')
            images.append(image[None].to(device))  # (1, 3, S, S)
            kept.append(pos)
        return kept, torch.cat(images) if images else None, failed

    def _note_failures(self, failed: List[Tuple[int, str]]) -> None:
        for pos, error in failed:
            item = self.items[pos]
            logger.warning(f'skipped unreadable image {item.path}: {error}')
            self.failed[str(item.image_id)] = FailedImage(
                item.image_id, item.path, error)

    def _add(self, positions: List[int], images: torch.Tensor,
             summary: ExtractionSummary) -> None:
        items = [self.items[p] for p in positions]
        patches, globals_ = self.extractor.encode_images(images)
        texts, truncated = None, [False] * len(items)
        scores: List[Optional[float]] = [None] * len(items)
        if self.captioned:
            texts, truncated = self.extractor.encode_texts(
                [it.caption for it in items])
            scores = (globals_ * texts).sum(-1).tolist()  # (B, )
        records = [self._record(it, s, t)
                   for it, s, t in zip(items, scores, truncated, strict=True)]
        shards_before = len(self.writer.shards)
        self.writer.add(patches, globals_, records, texts)
        for item in items:
            self.failed.pop(str(item.image_id), None)
        if len(self.writer.shards) != shards_before:  # keep failed.txt current
            _write_failed(self.failed_path, self.failed.values())
        summary.extracted += len(items)
        summary.truncated_captions += sum(truncated)

    def _record(self, item: ExtractionItem, score: Optional[float],
                truncated: bool) -> Dict[str, Any]:
        record = dict(image_id=item.image_id, caption=item.caption,
                      clip_score=score, image=item.relpath)
        if self.captioned:
            record['caption_truncated'] = truncated
        return record


def _first_line(err: BaseException) -> str:
    """An exception's message for a log line: its first line."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _source_info(items: Sequence[ExtractionItem], source: str,
                 decode: str) -> Dict[str, Any]:
    return dict(root=source, num_items=len(items),
                captioned=bool(items) and items[0].caption is not None,
                items_sha256=_items_digest(items), decode=decode)


def extract_features(items: Sequence[ExtractionItem],
                     out_dir: PathLike,
                     spec: CLIPSpec,
                     config: ExtractionConfig = ExtractionConfig(),
                     source: str = '',
                     rank_info: Optional[RankInfo] = None,
                     progress: bool = True) -> ExtractionSummary:
    """Encode this rank's block of ``items`` into its part store; resumable.

    With one process (and ``config.merge``) the part is merged into
    ``out_dir`` at the end; with several, run :func:`merge_feature_parts`
    once every rank has finished.

    Args:
        items (Sequence[ExtractionItem]): All items (every rank gets the
            same list): all captioned or none.
        out_dir (str | PathLike): Output folder (layout in the module doc).
        spec (CLIPSpec): The CLIP model.
        config (ExtractionConfig): Batching, workers, device, decode mode.
            Defaults to ``ExtractionConfig()``.
        source (str): Where the items come from, for the record.
            Defaults to ''.
        rank_info (RankInfo, optional): Defaults to the torchrun
            environment.
        progress (bool): Show a tqdm progress bar. Defaults to True.

    Returns:
        ExtractionSummary: This rank's counts.

    Raises:
        InputError: If ``items`` is empty (naming ``source``, else
            ``out_dir``), before anything is written.
        FileNotFoundError: If the CLIP weights or model config are missing.
        ValueError: On duplicate image ids, mixed captioned/uncaptioned
            items, another input list, decode mode or other CLIP settings
            in ``out_dir``, or ``decode='device'`` with a model whose
            transform :func:`device_preprocess` does not copy.
    """
    out_dir = os.fspath(out_dir)
    _check_items(items, source or out_dir)
    info = rank_info or get_rank_info()
    device = device_for_rank(info, config.device)
    extractor = CLIPFeatureExtractor(spec, device, config.amp)
    if config.decode == 'device':
        device_transform_size(extractor.transform)  # refuse before writing
        if device.type == 'cpu':
            logger.warning("decode='device' on the CPU decodes in the main "
                           'process, not in the workers: slower than '
                           "decode='cpu' there; it is meant for CUDA")
    if _is_merged(out_dir):
        return _check_merged(out_dir, items, extractor.clip_info)
    _check_world_size(out_dir, info)
    os.makedirs(out_dir, exist_ok=True)
    source_info = _source_info(items, source, config.decode)
    _write_or_check_source(out_dir, source_info)
    part = part_dir(out_dir, info)
    run = _RankRun(items, part, extractor, config)
    block = contiguous_block(len(items), info)
    done = run.stored_ids()
    todo = [p for p in block if items[p].image_id not in done]
    summary = ExtractionSummary(assigned=len(block),
                                already_done=len(block) - len(todo),
                                part_dir=part)
    logger.info(f'rank {info.rank}/{info.world_size} on {device}: '
                f'{len(block)} images, {summary.already_done} already done, '
                f'{len(todo)} to encode; decode={config.decode}')
    run.run(todo, summary, tqdm(
        total=len(todo), unit='img', disable=not progress,
        desc=f'extract [rank {info.rank}/{info.world_size}]'))
    summary.failed = list(run.failed.values())
    _finish_part(part, run, source_info, spec, extractor)
    if summary.truncated_captions:
        logger.warning(
            f'{summary.truncated_captions} caption(s) were longer than '
            f'CLIP\'s context ({extractor.context_length} tokens) and were '
            'truncated (flagged caption_truncated in their records)')
    if info.world_size == 1 and config.merge:
        summary.merged_dir = merge_feature_parts(out_dir).root
    return summary


def _check_items(items: Sequence[ExtractionItem], source: str) -> None:
    """Refuse an empty, mixed or id-repeating item list, before writing.

    Args:
        items (Sequence[ExtractionItem]): The items of every rank.
        source (str): Where they come from (or the output folder), for the
            error.

    Raises:
        InputError: If there is no item: a store of 0 items would look
            finished to a later run.
        ValueError: On repeated ids, or captioned and uncaptioned items.
    """
    if not items:
        raise InputError(
            source, 'no images to extract (an empty folder or list file, or '
            'a generation folder without a finished image)',
            'check the input path; nothing was written')
    _check_unique_ids(items)
    captioned = {it.caption is not None for it in items}
    if len(captioned) > 1:
        raise ValueError('either every item has a caption or none has: a '
                         'feature store has text embeddings for all or none')


def _finish_part(part: str, run: _RankRun, source_info: Dict[str, Any],
                 spec: CLIPSpec, extractor: CLIPFeatureExtractor) -> None:
    """Write ``done.json``: the part is complete."""
    store = FeatureStore(part)
    truncated = sum(bool(r.get('caption_truncated')) for r in store.records)
    atomic_write_json(osp.join(part, DONE_FILE), dict(
        num_items=len(store), num_failed=len(run.failed),
        num_captions_truncated=truncated, source=source_info,
        clip=dict(model_name=spec.model_name, pretrained=spec.pretrained,
                  model_cfg=spec.load_model_cfg(),
                  patch_pool=spec.patch_pool,
                  context_length=extractor.context_length),
        versions=_versions()))


def _find_parts(out_dir: str) -> Dict[Tuple[int, int], str]:
    """``(rank, world_size) -> folder`` of every rank part in ``out_dir``."""
    if not osp.isdir(out_dir):
        return {}
    parts = {}
    for name in sorted(os.listdir(out_dir)):
        match = _PART_RE.match(name)
        if match and osp.isdir(osp.join(out_dir, name)):
            parts[int(match.group(1)), int(match.group(2))] = osp.join(
                out_dir, name)
    return parts


def _is_merged(out_dir: str) -> bool:
    return osp.isfile(osp.join(out_dir, META_FILE)) and not _find_parts(
        out_dir)


def _check_merged(out_dir: str, items: Sequence[ExtractionItem],
                  clip_info: CLIPFeatureInfo) -> ExtractionSummary:
    """A rerun into a merged store: fine if it holds every readable item."""
    store = FeatureStore(out_dir)
    diff = store.clip_info.diff(clip_info)
    if diff:
        raise ValueError(f'{store.meta_path}: written with other CLIP '
                         f'settings {diff}; use a new output folder')
    captioned = bool(items) and items[0].caption is not None
    if captioned and store.clip_score_text != CLIP_SCORE_TEXT:
        raise ValueError(
            f'{store.meta_path}: clip_score_text is '
            f'{store.clip_score_text!r}, not {CLIP_SCORE_TEXT!r}: its CLIP '
            'scores were not computed on captions normalised as the '
            'release does (None: as written); extract into a new output '
            'folder')
    stored = {r['image_id'] for r in store.records}
    failed = _read_failed(osp.join(out_dir, FAILED_FILE))
    missing = [it for it in items if it.image_id not in stored
               and str(it.image_id) not in failed]
    if missing:
        raise ValueError(
            f'{out_dir} is a finished (merged) feature store without '
            f'{len(missing)} of the input images (first: {missing[0].path}); '
            'extract into a new output folder')
    logger.info(f'{out_dir}: merged store already holds every input image')
    return ExtractionSummary(assigned=len(items), already_done=len(stored),
                             failed=list(failed.values()),
                             merged_dir=out_dir)


def _check_world_size(out_dir: str, info: RankInfo) -> None:
    worlds = {w for _, w in _find_parts(out_dir)}
    if worlds - {info.world_size}:
        raise ValueError(
            f'{out_dir} holds rank parts of a run with WORLD_SIZE='
            f'{sorted(worlds)}; ranks split the items by world size, so '
            f'resume with that WORLD_SIZE (now {info.world_size}) or use a '
            'new output folder')


# --------------------------------------------------------------------------
# merge
# --------------------------------------------------------------------------
def _ready_parts(out_dir: str) -> List[str]:
    """The rank parts in rank order; raise unless all are finished."""
    parts = _find_parts(out_dir)
    worlds = sorted({w for _, w in parts})
    if len(worlds) != 1:
        raise ValueError(f'{out_dir}: rank parts of several world sizes '
                         f'{worlds}; keep the parts of one run only')
    world = worlds[0]
    missing = [r for r in range(world) if (r, world) not in parts]
    unfinished = [r for (r, _), p in parts.items()
                  if not osp.isfile(osp.join(p, DONE_FILE))]
    if missing or unfinished:
        raise ValueError(
            f'{out_dir}: cannot merge: rank(s) {sorted(missing + unfinished)}'
            f' of {world} have not finished (no {DONE_FILE}); rerun the '
            f'extraction with WORLD_SIZE={world} for them, then merge')
    return [parts[r, world] for r in range(world)]


def _merged_meta(parts: List[str]) -> Tuple[FeatureStoreMeta, List[Tuple[
        str, str]]]:
    """The merged meta and the ``(source, destination)`` shard moves."""
    metas = [read_meta(p) for p in parts]
    clip = metas[0].clip
    for part, meta in zip(parts, metas):
        if meta.clip.diff(clip):
            raise ValueError(f'{part}: CLIP settings {meta.clip.diff(clip)} '
                             f'differ from {parts[0]}')
    texts = {m.has_text_embeds for m in metas if m.shards}
    if len(texts) > 1:
        raise ValueError('some rank parts have text embeddings, others not')
    for part, meta in zip(parts, metas):
        if meta.clip_score_text != metas[0].clip_score_text:
            raise ValueError(
                f'{part}: clip_score_text {meta.clip_score_text!r} differs '
                f'from {parts[0]}\'s {metas[0].clip_score_text!r}; the '
                'parts were scored on differently normalised captions')
    shards, moves = [], []
    for part, meta in zip(parts, metas):
        for shard in meta.shards:
            name = f'shard_{len(shards):05d}'
            shards.append(ShardInfo(name, shard.count))
            moves.append((osp.join(part, shard.name), name))
    merged = FeatureStoreMeta(clip=clip, shards=shards,
                              has_text_embeds=texts == {True},
                              clip_score_text=metas[0].clip_score_text)
    return merged, moves


def _combine_info(parts: List[str],
                  meta: FeatureStoreMeta) -> Dict[str, Any]:
    done = []
    for part in parts:
        with open(osp.join(part, DONE_FILE), encoding='utf-8') as f:
            done.append(json.load(f))
    return dict(
        source=done[0]['source'], clip=done[0]['clip'],
        clip_info=meta.clip.to_dict(), world_size=len(parts),
        num_items=sum(d['num_items'] for d in done),
        num_failed=sum(d['num_failed'] for d in done),
        num_captions_truncated=sum(d['num_captions_truncated'] for d in done),
        versions=done[0]['versions'])


def merge_feature_parts(out_dir: PathLike) -> FeatureStore:
    """Merge the finished rank parts of ``out_dir`` into one feature store.

    Shards are moved (not copied) into ``out_dir`` in rank order, then
    ``failed.txt``, ``extraction_info.json`` and last ``meta.json`` are
    written, and the rank folders removed. Safe to rerun after an
    interruption at any point.

    Args:
        out_dir (str | PathLike): The extraction output folder.

    Returns:
        FeatureStore: The merged store.

    Raises:
        FileNotFoundError: If there are neither parts nor a merged store.
        ValueError: If a rank is missing or unfinished, parts disagree, or
            an image id appears twice.
    """
    out_dir = os.fspath(out_dir)
    parts = _find_parts(out_dir)
    if not parts:
        if osp.isfile(osp.join(out_dir, META_FILE)):
            return FeatureStore(out_dir)
        raise FileNotFoundError(f'{out_dir}: no rank parts (rank_*-of-*) and '
                                'no merged meta.json: nothing to merge')
    if not osp.isfile(osp.join(out_dir, META_FILE)):  # not merged yet
        ordered = _ready_parts(out_dir)
        meta, moves = _merged_meta(ordered)
        _move_shards(out_dir, moves)
        _check_unique_ids_in_shards(out_dir, meta)
        failed = [f for p in ordered
                  for f in _read_failed(osp.join(p, FAILED_FILE)).values()]
        _write_failed(osp.join(out_dir, FAILED_FILE), failed)
        atomic_write_json(osp.join(out_dir, INFO_FILE),
                          _combine_info(ordered, meta))
        write_meta(out_dir, meta)  # last: from here on the store is complete
    for part in parts.values():  # the merge is complete: drop the parts
        shutil.rmtree(part)
    store = FeatureStore(out_dir)
    logger.info(f'merged {len(parts)} rank part(s) into {out_dir}: '
                f'{len(store)} items')
    return store


def _move_shards(out_dir: str, moves: List[Tuple[str, str]]) -> None:
    for src, name in moves:
        dst = osp.join(out_dir, name)
        if osp.isdir(src):
            if osp.exists(dst):  # left by an interrupted merge
                shutil.rmtree(dst)
            os.replace(src, dst)
        elif not osp.isdir(dst):
            raise FileNotFoundError(f'{src} is listed in its part\'s '
                                    f'meta.json but is missing, and {dst} '
                                    'does not exist either')


def _check_unique_ids_in_shards(out_dir: str,
                                meta: FeatureStoreMeta) -> None:
    """Refuse to finish a merge whose shards repeat an image id."""
    seen = set()
    for shard in meta.shards:
        path = osp.join(out_dir, shard.name, RECORDS_FILE)
        with open(path, encoding='utf-8') as f:
            for lineno, line in enumerate(f, start=1):
                image_id = json.loads(line)['image_id']
                if image_id in seen:
                    raise ValueError(f'{path} line {lineno}: image id '
                                     f'{image_id!r} is already in an earlier '
                                     'shard; the rank parts overlap')
                seen.add(image_id)
