"""CLIP's image preprocessing, built from the model's own open_clip config.

Every path that turns an image into CLIP's input reads the model's
:class:`open_clip.transform.PreprocessCfg` (size, mean, std, interpolation,
resize mode) through this module:

* on the host, :class:`CLIPImageTransform`: a PIL image -> ``(3, S, S)``
  uint8 in [0, 255] (:func:`~mmpcm.datasets.transforms.to_rgb`, then
  open_clip's evaluation resize and crop);
* on the device, :func:`device_preprocess`: encoded JPEGs -> the same
  ``(B, 3, S, S)`` uint8 batch, for the transforms
  :func:`device_transform_size` accepts;
* the normalisation the image encoder applies to [0, 255] inputs
  (:func:`pixel_mean_std`, :func:`normalize_pixels`).

Image datasets, the caption inferencer, feature extraction, the backbone and
CLIP-S use it; it imports only open_clip, torchvision and the image loader.
"""
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple, Union

import open_clip
import torch
import torch.nn as nn
from open_clip.transform import (MaybeConvertMode, Normalize, PreprocessCfg,
                                 ToTensor, image_transform_v2)
from torchvision.transforms import (CenterCrop, Compose, InterpolationMode,
                                    PILToTensor, Resize)

from .transforms import ImageLike, as_pil_image, to_rgb

_CFG_KEYS = frozenset(f.name for f in dataclasses.fields(PreprocessCfg))

__all__ = [
    'CLIPImageTransform', 'clip_image_tensor', 'clip_image_transform',
    'default_preprocess_cfg', 'device_preprocess', 'device_transform_size',
    'normalize_pixels', 'pixel_mean_std', 'preprocess_cfg_from_dict',
    'preprocess_cfg_of', 'resize_crop_steps'
]


# --------------------------------------------------------------------------
# the preprocess config
# --------------------------------------------------------------------------
def preprocess_cfg_from_dict(cfg: Dict) -> PreprocessCfg:
    """A :class:`PreprocessCfg` from a dict (keys it does not know dropped).

    Args:
        cfg (dict): E.g. an ``open_clip_config.json``'s ``preprocess_cfg``.

    Returns:
        PreprocessCfg: open_clip's defaults for the keys ``cfg`` lacks.
    """
    return PreprocessCfg(**{k: v for k, v in cfg.items() if k in _CFG_KEYS})


def preprocess_cfg_of(model: nn.Module) -> PreprocessCfg:
    """The preprocess config open_clip keeps with ``model``.

    open_clip's :func:`~open_clip.get_model_preprocess_cfg`: the config the
    model was created with (``visual.preprocess_cfg``, set by
    ``open_clip.create_model`` from the model and pretrained tag), else the
    visual tower's ``image_size`` with open_clip's defaults (OpenAI mean and
    std, bicubic, shortest side), as for a ``CLIP`` built from a bare config.

    Args:
        model (nn.Module): An open_clip ``CLIP`` or its ``.visual``.

    Returns:
        PreprocessCfg: A copy; changing it leaves the model alone.
    """
    return preprocess_cfg_from_dict(
        dict(open_clip.get_model_preprocess_cfg(model)))


def default_preprocess_cfg(image_size: int) -> PreprocessCfg:
    """open_clip's default config at ``image_size`` (OpenAI CLIP's own).

    Args:
        image_size (int): CLIP's input side, e.g. 224.

    Returns:
        PreprocessCfg: Bicubic shortest-side resize, center crop, OpenAI
        mean and std.
    """
    return PreprocessCfg(size=image_size)


def _as_cfg(cfg: Union[int, PreprocessCfg, Dict]) -> PreprocessCfg:
    if isinstance(cfg, PreprocessCfg):
        return cfg
    if isinstance(cfg, dict):
        return preprocess_cfg_from_dict(cfg)
    return default_preprocess_cfg(cfg)


# --------------------------------------------------------------------------
# host: PIL -> uint8 tensor
# --------------------------------------------------------------------------
def resize_crop_steps(cfg: PreprocessCfg) -> List:
    """open_clip's evaluation transform of ``cfg`` without its colour steps.

    The resize and crop (or pad) steps of
    :func:`open_clip.transform.image_transform_v2`; its RGB conversion,
    ``ToTensor`` and ``Normalize`` are left out (:class:`CLIPImageTransform`
    converts before resizing, keeps uint8 and leaves normalising to the
    encoder).

    Args:
        cfg (PreprocessCfg): The model's preprocess config.

    Returns:
        list: The PIL transforms, in order.
    """
    return [
        t for t in image_transform_v2(cfg, is_train=False).transforms
        if not isinstance(t, (MaybeConvertMode, ToTensor, Normalize))
    ]


class CLIPImageTransform(Compose):
    """CLIP's host preprocessing: PIL image -> ``(3, S, S)`` uint8 tensor.

    :func:`~mmpcm.datasets.transforms.to_rgb` (any mode to upright 8-bit
    RGB, before resizing), open_clip's evaluation resize and crop for
    ``cfg`` (:func:`resize_crop_steps`), then ``PILToTensor``: values in
    [0, 255], the input of
    :class:`~mmpcm.models.backbones.OpenCLIPVisionBackbone`, which
    normalises with the same config's mean and std.

    Args:
        cfg (PreprocessCfg | dict | int): The model's preprocess config (a
            dict of its fields), or CLIP's input side for open_clip's
            defaults.

    Attributes:
        preprocess_cfg (PreprocessCfg): The config it was built from.

    Raises:
        ImageLoadError: (on call) for a mode without an RGB conversion.
    """

    def __init__(self, cfg: Union[PreprocessCfg, Dict, int]) -> None:
        self.preprocess_cfg = _as_cfg(cfg)
        super().__init__([to_rgb, *resize_crop_steps(self.preprocess_cfg),
                          PILToTensor()])


def clip_image_transform(model: nn.Module) -> CLIPImageTransform:
    """The host transform of an open_clip model (its own preprocess config).

    Args:
        model (nn.Module): An open_clip ``CLIP`` or its ``.visual``.

    Returns:
        CLIPImageTransform: PIL image -> ``(3, S, S)`` uint8 tensor.
    """
    return CLIPImageTransform(preprocess_cfg_of(model))


def clip_image_tensor(image: ImageLike,
                      cfg: Union[int, PreprocessCfg, Dict]) -> torch.Tensor:
    """Preprocess one image for CLIP (:class:`CLIPImageTransform`).

    Args:
        image (Image.Image | np.ndarray): A PIL image (any mode; as
            :func:`~mmpcm.datasets.transforms.load_image` returns it, or in
            memory) or an RGB / greyscale uint8 array.
        cfg (int | PreprocessCfg | dict): The model's preprocess config, or
            CLIP's input side for open_clip's defaults.

    Returns:
        torch.Tensor: ``(3, S, S)`` uint8.

    Raises:
        ImageLoadError: For arrays of another shape or dtype, or a mode
            without an RGB conversion.
    """
    return CLIPImageTransform(cfg)(as_pil_image(image))


# --------------------------------------------------------------------------
# device: encoded JPEG -> uint8 tensor
# --------------------------------------------------------------------------
def device_transform_size(
        preprocess: Union[PreprocessCfg, CLIPImageTransform]) -> int:
    """CLIP's input side, if :func:`device_preprocess` copies the transform.

    :func:`device_preprocess` reproduces open_clip's evaluation transform of
    a square model: bicubic resize of the shortest side to ``S``, center
    crop ``S`` x ``S``. Other transforms (``resize_mode`` 'longest' or
    'squash', bilinear, non-square) are refused.

    Args:
        preprocess (PreprocessCfg | CLIPImageTransform): The model's
            preprocess config, or the host transform built from it.

    Returns:
        int: ``S``, the side of the model's input.

    Raises:
        ValueError: If the transform is not such a resize + center crop.
    """
    cfg = getattr(preprocess, 'preprocess_cfg', preprocess)
    steps = resize_crop_steps(cfg)
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
        f'this model preprocesses with size={cfg.size}, interpolation='
        f'{cfg.interpolation!r}, resize_mode={cfg.resize_mode!r}; extract '
        "with decode='cpu'")


def device_preprocess(data: Sequence[torch.Tensor], size: int,
                      device: Union[str, torch.device]) -> torch.Tensor:
    """Decode JPEG files on ``device``, resize and center-crop them there.

    A copy of open_clip's evaluation transform (:func:`device_transform_size`)
    for tensors: the shortest side to ``size`` with antialiased bicubic
    resampling (PIL's kernel), the center ``size`` x ``size`` crop, rounded
    to uint8. The pixels differ from :class:`CLIPImageTransform`'s at
    rounding level: another bicubic implementation (float, no intermediate
    uint8 rounding) and, on CUDA, another JPEG decoder (nvJPEG). Images of
    one shape are resized together.

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


# --------------------------------------------------------------------------
# the encoder's normalisation
# --------------------------------------------------------------------------
def _per_channel(value: Union[float, Sequence[float]]) -> Tuple[float, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, ) * 3


def pixel_mean_std(cfg: PreprocessCfg,
                   device: Optional[Union[str, torch.device]] = None
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The config's mean and std on the 0-255 scale of uint8 pixels.

    Args:
        cfg (PreprocessCfg): The model's preprocess config (mean and std on
            the 0-1 scale, one per channel or one for all).
        device (str | torch.device, optional): Defaults to None (CPU).

    Returns:
        tuple[Tensor, Tensor]: ``(1, 3, 1, 1)`` float32 mean and std, times
        255.
    """
    mean = torch.tensor(_per_channel(cfg.mean), device=device)
    std = torch.tensor(_per_channel(cfg.std), device=device)
    return mean.view(1, 3, 1, 1) * 255, std.view(1, 3, 1, 1) * 255


def normalize_pixels(images: torch.Tensor, mean: torch.Tensor,
                     std: torch.Tensor) -> torch.Tensor:
    """CLIP's input normalisation of [0, 255] images.

    Args:
        images (torch.Tensor): ``(B, 3, H, W)`` RGB, any dtype, values in
            [0, 255].
        mean (torch.Tensor): ``(1, 3, 1, 1)`` from :func:`pixel_mean_std`.
        std (torch.Tensor): ``(1, 3, 1, 1)`` from :func:`pixel_mean_std`.

    Returns:
        torch.Tensor: ``(B, 3, H, W)`` float32, ``(images - mean) / std``.
    """
    return (images.float() - mean) / std
