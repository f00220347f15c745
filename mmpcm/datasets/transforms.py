"""Image loading: files and in-memory images to upright 8-bit RGB.

One loader for every path that reads image files: testing from images
(:class:`~mmpcm.datasets.ImageFolderCaptionDataset`), the caption
inferencer and ``tools/caption.py``
(:class:`~mmpcm.apis.PCMCaptionInferencer`), and feature extraction
(:mod:`mmpcm.preprocessing.extraction`). :func:`load_image` decodes a file
and :func:`to_rgb` turns it into 8-bit RGB *before* any resizing, so every
tool feeds the model the same pixels:

* EXIF orientation is applied (``PIL.ImageOps.exif_transpose``): a photo
  taken upright comes out upright, width and height swapped for
  orientations 5-8. A malformed EXIF block is ignored (the pixels as
  stored).
* Transparency (``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa``/``La``, a
  palette or grey/RGB image with a ``transparency`` key) is composited over
  :data:`BACKGROUND`, opaque white: a fully transparent pixel becomes
  (255, 255, 255) whatever colour it hides.
* 16-bit and 32-bit integer greyscale (``I;16``, ``I;16B``, ``I;16L``,
  ``I;16N``, ``I``) is scaled from the 16-bit range: ``round(v / 257)``,
  so 65535 -> 255 and 32768 -> 128 (``I`` values outside [0, 65535] are
  clipped: PIL holds 16-bit PNG/PGM/TIFF data in it).
* Float greyscale (``F``, e.g. a float TIFF) is read as intensities in
  [0, 1]: ``round(255 * v)``, values outside [0, 1] clipped, NaN -> 0.
  A fixed range, not the image's own min/max, so a flat image stays flat
  and the same value always gives the same pixel.
* ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``HSV``, ``RGBX`` and other
  modes go through PIL's conversion to RGB.
* Multi-frame files (animated GIF, APNG, multi-page TIFF, MPO): the first
  frame.

CLIP's resize and crop follow in :mod:`mmpcm.datasets.clip_transforms`.

:func:`check_image` is the cheap check of a file before a run (header,
format integrity), for reporting every bad file of a test set at once.
"""
import os
from typing import Tuple, Union

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from mmpcm.utils.cli import UserError

ImageLike = Union[Image.Image, np.ndarray]

BACKGROUND: Tuple[int, int, int] = (255, 255, 255)
"""RGB colour transparent pixels are composited over (opaque white)."""

_SIXTEEN_BIT_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I')
_ALPHA_MODES = ('RGBA', 'LA', 'PA', 'RGBa', 'La')
_JPEG_EOI = b'\xff\xd9'  # a complete JPEG's end-of-image marker
_JPEG_TAIL = 4096  # bytes at a JPEG's end searched for it (trailing data)


class ImageLoadError(UserError, ValueError):
    """An input could not be read as an image.

    Args:
        image (str): The file (or a name for an in-memory input).
        reason (str): Why, in one line.
    """

    def __init__(self, image: str, reason: str) -> None:
        super().__init__(f'{image}: {reason}')
        self.image = image
        self.reason = reason

    def __reduce__(self):
        return type(self), (self.image, self.reason)


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag of an opened image.

    Args:
        image (Image.Image): The image (its header read).

    Returns:
        int: 1 (upright as stored) to 8; 1 when absent or unreadable.
    """
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001  a malformed EXIF block: as stored
        return 1
    return orientation if isinstance(orientation, int) else 1


def _scaled_to_l(array: np.ndarray) -> Image.Image:
    """An ``(H, W)`` float array of 0-255 values as an 8-bit ``L`` image."""
    array = np.nan_to_num(array, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(
        np.round(np.clip(array, 0, 255)).astype(np.uint8), 'L')


def to_rgb(image: Image.Image, name: str = 'image') -> Image.Image:
    """Any PIL image as 8-bit RGB, upright, transparency on :data:`BACKGROUND`.

    The conversion rules are in the module docstring. Call it before any
    resizing: resampling a palette, 1-bit, 16-bit or transparent image in
    its own mode gives other pixels.

    Args:
        image (Image.Image): A decoded image, any mode.
        name (str): The file (or input name) for errors. Defaults to
            'image'.

    Returns:
        Image.Image: Mode ``RGB``, ``(W, H)`` of the upright image. An
        upright RGB input is returned as is (not copied).

    Raises:
        ImageLoadError: For a mode PIL cannot convert to RGB.
    """
    if exif_orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == 'RGB' and 'transparency' not in image.info:
        return image
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float64)  # (H, W)
        return _scaled_to_l(values / 257.0).convert('RGB')
    if mode == 'F':
        values = np.asarray(image).astype(np.float64)  # (H, W)
        return _scaled_to_l(values * 255.0).convert('RGB')
    try:
        if mode in _ALPHA_MODES or 'transparency' in image.info:
            rgba = image.convert('RGBA')
            background = Image.new('RGBA', rgba.size, BACKGROUND + (255, ))
            return Image.alpha_composite(background, rgba).convert('RGB')
        return image.convert('RGB')
    except (ValueError, OSError) as error:
        raise ImageLoadError(
            name, f'cannot convert image mode {mode} to RGB ({error})'
        ) from None


def _open_error(path: str, error: BaseException) -> ImageLoadError:
    """The :class:`ImageLoadError` for what opening or decoding raised."""
    if isinstance(error, FileNotFoundError):
        return ImageLoadError(path, 'no such file')
    if isinstance(error, IsADirectoryError):
        return ImageLoadError(path, 'a folder, not an image file')
    if isinstance(error, PermissionError):
        return ImageLoadError(path, 'permission denied')
    if isinstance(error, UnidentifiedImageError):
        return ImageLoadError(path, 'not an image file (unknown or '
                              'unsupported format)')
    return ImageLoadError(path, f'truncated or corrupt image ({error})')


_OPEN_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
                EOFError)


def load_image(path: Union[str, 'os.PathLike[str]']) -> Image.Image:
    """Open, fully decode and convert an image file to 8-bit RGB.

    The one loader of every tool (see the module docstring for the
    conversion: EXIF orientation, transparency on :data:`BACKGROUND`,
    16-bit and float scaling, first frame). Truncated files are errors
    (PIL's ``LOAD_TRUNCATED_IMAGES`` is left off).

    Args:
        path (str | PathLike): The file.

    Returns:
        Image.Image: Mode ``RGB``, upright, not yet resized.

    Raises:
        ImageLoadError: If the file is missing, not an image, truncated or
            otherwise undecodable, or of a mode without an RGB conversion;
            the message names the file and why.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            image.load()  # the first frame of a multi-frame file
            rgb = to_rgb(image, path)
            # An RGB file's own image is closed with the file: keep a copy.
            return rgb.copy() if rgb is image else rgb
    except ImageLoadError:
        raise
    except _OPEN_ERRORS as error:
        raise _open_error(path, error) from None


def check_image(path: Union[str, 'os.PathLike[str]']) -> None:
    """Cheap check that ``path`` is a complete image file, without decoding.

    Reads the header (PIL identifies the format; missing files, folders and
    non-images fail here), then what each format allows without decoding
    the pixels: PNG's chunk checksums up to its end chunk (PIL's
    ``verify``; catches truncation and corrupt bytes) and a JPEG's
    end-of-image marker in its last 4 KiB (a truncated JPEG lacks it and
    fails to decode): a small fraction of a decode's cost (figures in
    docs/benchmarks.md). Not caught: a JPEG corrupted inside its compressed
    data, and truncated files of formats other than PNG and JPEG; those still
    fail, naming the file, when :func:`load_image` decodes them. Stricter
    than decoding in one case: a PNG cut within its last chunks (checksum
    or end chunk missing) is refused, though PIL decodes its pixels.

    Args:
        path (str | PathLike): The file.

    Raises:
        ImageLoadError: With the same reasons as :func:`load_image`.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            fmt = image.format
            if fmt == 'PNG':
                image.verify()
        if fmt in ('JPEG', 'MPO'):
            with open(path, 'rb') as file:
                size = file.seek(0, os.SEEK_END)
                file.seek(max(0, size - _JPEG_TAIL))
                if _JPEG_EOI not in file.read():
                    raise ImageLoadError(
                        path, 'truncated or corrupt image (the JPEG has no '
                        'end-of-image marker)')
    except ImageLoadError:
        raise
    except _OPEN_ERRORS as error:
        raise _open_error(path, error) from None


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


__all__ = [
    'BACKGROUND', 'ImageLoadError', 'ImageLike', 'as_pil_image',
    'check_image', 'exif_orientation', 'load_image', 'to_rgb'
]
