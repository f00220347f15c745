"""Reading the images in DataLoader workers: PIL decoding with the shared
loader and CLIP's host transform, or only a JPEG's bytes for decoding on the
device; the collate that keeps failures aside."""
import io
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mmpcm.datasets.transforms import (ImageLoadError, exif_orientation,
                                       load_image)
from .items import ExtractionItem

_JPEG_EOI = b'\xff\xd9'  # the end-of-image marker, a complete JPEG's last
_DEVICE_FORMATS = ('JPEG', 'MPO')  # MPO: camera JPEGs, frame 0 decoded
_DEVICE_MODES = ('RGB', 'L')


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
    header only (no decoding), the EXIF orientation must be
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
