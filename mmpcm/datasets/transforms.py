"""Image loading and CLIP preprocessing for captioning real images.

:func:`clip_image_tensor` does what open_clip's evaluation transform does up
to ``ToTensor``: resize the shorter side to CLIP's input size (bicubic),
center crop, convert to RGB; it returns a ``(3, S, S)`` uint8 tensor with
values in ``[0, 255]``. :class:`~mmpcm.models.OpenCLIPVisionBackbone`
applies CLIP's mean/std normalisation itself.
"""
import os
from typing import Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms as T

ImageLike = Union[Image.Image, np.ndarray]


class ImageLoadError(ValueError):
    """An input could not be read as an image.

    Args:
        image (str): The file (or a name for an in-memory input).
        reason (str): Why, in one line.
    """

    def __init__(self, image: str, reason: str) -> None:
        super().__init__(f'{image}: {reason}')
        self.image = image
        self.reason = reason


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert('RGB')


def clip_transform(image_size: int) -> T.Compose:
    """open_clip's evaluation resize/crop/RGB steps on PIL images.

    Args:
        image_size (int): CLIP's input size, e.g. 224.

    Returns:
        T.Compose: PIL image -> ``(3, S, S)`` uint8 tensor.
    """
    return T.Compose([
        T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(image_size),
        _to_rgb,
        T.PILToTensor(),
    ])


def load_image(path: Union[str, 'os.PathLike[str]']) -> Image.Image:
    """Open and fully decode an image file.

    Truncated files are errors (PIL's ``LOAD_TRUNCATED_IMAGES`` is left
    off).

    Args:
        path (str | PathLike): The file.

    Returns:
        Image.Image: The decoded image, in its own mode.

    Raises:
        ImageLoadError: If the file is missing, not an image, truncated or
            otherwise undecodable; the message names the file and why.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise ImageLoadError(path, 'no such file') from None
    except IsADirectoryError:
        raise ImageLoadError(path, 'a folder, not an image file') from None
    except UnidentifiedImageError:
        raise ImageLoadError(path, 'not an image file (unknown or '
                             'unsupported format)') from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            EOFError) as error:
        raise ImageLoadError(path,
                             f'truncated or corrupt image ({error})') from None


def as_pil_image(image: ImageLike) -> Image.Image:
    """Accept a PIL image or an ``(H, W, 3)`` RGB / ``(H, W)`` uint8 array.

    Args:
        image (Image.Image | np.ndarray): The image.

    Returns:
        Image.Image: A PIL image.

    Raises:
        ImageLoadError: For arrays of another shape or dtype.
    """
    if isinstance(image, Image.Image):
        return image
    array = np.asarray(image)
    if array.dtype != np.uint8 or not (
            array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ImageLoadError(
            'array', 'numpy images must be uint8 (H, W, 3) RGB or (H, W) '
            f'grayscale, got {array.dtype} {array.shape}')
    return Image.fromarray(np.ascontiguousarray(array))


def clip_image_tensor(image: ImageLike, image_size: int) -> torch.Tensor:
    """Preprocess one image for CLIP: resize, center crop, RGB, uint8 CHW.

    Args:
        image (Image.Image | np.ndarray): A PIL image or an RGB uint8
            array.
        image_size (int): CLIP's input size.

    Returns:
        torch.Tensor: ``(3, image_size, image_size)`` uint8.
    """
    return clip_transform(image_size)(as_pil_image(image))


__all__ = [
    'ImageLoadError', 'clip_image_tensor', 'clip_transform', 'load_image',
    'as_pil_image'
]
