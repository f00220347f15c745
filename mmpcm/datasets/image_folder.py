"""Real test images read from files, for the online CLIP mode."""
import os
import os.path as osp
from typing import Any, Callable, List, Mapping, Optional, Sequence, Union

import mmengine
from mmengine.dataset import BaseDataset
from mmpretrain.structures import DataSample

from mmpcm.registry import DATASETS
from mmpcm.utils.cli import InputError
from .transforms import (ImageLoadError, check_image, clip_image_tensor,
                         load_image)

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff',
                    '.webp')
SHOWN_BAD_IMAGES = 5
"""How many unreadable files a :func:`check_image_files` error names."""


def check_image_files(paths: Sequence[str], source: str,
                      remedy: str) -> None:
    """Check every file cheaply (:func:`check_image`); report all bad ones.

    Args:
        paths (Sequence[str]): The image files.
        source (str): The list file or folder they come from, for the
            error.
        remedy (str): What to do, for the error.

    Raises:
        InputError: If any file is missing, not an image or truncated:
            names ``source``, how many of how many files are bad, and the
            first :data:`SHOWN_BAD_IMAGES` with their reasons.
    """
    bad = []
    for path in paths:
        try:
            check_image(path)
        except ImageLoadError as error:
            bad.append(f'{path} ({error.reason})')
    if bad:
        shown = ', '.join(bad[:SHOWN_BAD_IMAGES])
        more = (f', and {len(bad) - SHOWN_BAD_IMAGES} more'
                if len(bad) > SHOWN_BAD_IMAGES else '')
        raise InputError(
            source, f'{len(bad)} of {len(paths)} images cannot be read: '
            f'{shown}{more}', remedy)


def scan_images(folder: str,
                extensions: Sequence[str] = IMAGE_EXTENSIONS) -> List[str]:
    """Image files under ``folder`` (recursive, sorted, hidden ones skipped).

    Args:
        folder (str): The folder.
        extensions (Sequence[str]): Lower-case suffixes to keep.
            Defaults to :data:`IMAGE_EXTENSIONS`.

    Returns:
        list[str]: Paths relative to ``folder``, POSIX separators.
    """
    if not osp.isdir(folder):
        raise FileNotFoundError(f'Image folder not found: {folder}')
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        for name in sorted(files):
            if not name.startswith('.') and name.lower().endswith(
                    tuple(extensions)):
                found.append(
                    osp.relpath(osp.join(root, name), folder).replace(
                        os.sep, '/'))
    return found


def read_list_file(path: str) -> List[str]:
    """Image paths from a list file: one per line; blanks and ``#`` skipped.

    Relative paths are relative to the list file's folder (as in
    ``tools/data`` feature extraction and ``tools/caption.py``).

    Args:
        path (str): The list file.

    Returns:
        list[str]: The paths.
    """
    folder = osp.dirname(path)
    with open(path, encoding='utf-8') as file:
        lines = [line.strip() for line in file]
    return [
        line if osp.isabs(line) else osp.join(folder, line) for line in lines
        if line and not line.startswith('#')
    ]


def stem_image_ids(paths: Sequence[str]) -> List[str]:
    """Image ids of listed or scanned files: their file stems, unique.

    The same rule as feature extraction from a folder or list, so features
    and images of one folder share their ids.

    Args:
        paths (Sequence[str]): Image paths.

    Returns:
        list[str]: ``'img_1'`` for ``'sub/img_1.jpg'``.

    Raises:
        ValueError: If two files share a stem.
    """
    ids: List[str] = []
    seen = {}
    for path in paths:
        image_id = osp.splitext(osp.basename(path))[0]
        if image_id in seen:
            raise ValueError(
                f'Image id {image_id!r} (the file stem) is used by both '
                f'{seen[image_id]} and {path}; image ids must be unique.')
        seen[image_id] = path
        ids.append(image_id)
    return ids


@DATASETS.register_module()
class ImageFolderCaptionDataset(BaseDataset):
    """Real images from files, preprocessed for the online CLIP backbone.

    Each item is ``dict(inputs=dict(images=(3, S, S) uint8 tensor),
    data_samples=DataSample)`` with ``image_id``, ``sample_idx`` and
    ``img_path`` in the metainfo; batch with
    ``collate_fn=dict(type='pcm_collate')``. Files are read by the loader
    every tool shares (:func:`~mmpcm.datasets.transforms.load_image`: EXIF
    orientation, transparency on white, 16-bit / float scaled, 8-bit RGB
    before resizing), then open_clip's evaluation transform up to
    ``ToTensor`` (see :func:`~mmpcm.datasets.transforms.clip_image_tensor`);
    the backbone normalises.

    Where the images come from (``ann_file``, relative to ``data_root``):

    * ``''``: every image file under the image folder (recursive, sorted);
      the image id is the file stem (``'img_1'`` for ``sub/img_1.jpg``),
      which must be unique, as in feature extraction from a folder.
    * a ``.json`` file: COCO format, ``images`` with ``id`` and
      ``file_name`` (relative to the image folder); ids are kept as given
      (str or int), so the captions match a COCO-format reference file
      such as the Karpathy test split.
    * any other file: a list file, one image path per line, relative to
      the list file's folder unless absolute; ids as for a folder.

    Args:
        data_root (str): Root of ``ann_file`` and ``data_prefix``.
            Defaults to ''.
        ann_file (str): See above. Defaults to ''.
        data_prefix (dict): ``img_path``: the image folder. Defaults to
            ``dict(img_path='')``.
        image_size (int): CLIP's input size. Defaults to 224.
        extensions (Sequence[str]): Suffixes scanned in folder mode.
            Defaults to :data:`IMAGE_EXTENSIONS`.
        metainfo (dict, optional): Extra meta information. Defaults to None.
        pipeline (Sequence[dict | Callable]): Transforms applied to each
            item dict. Defaults to ().
        test_mode (bool): Defaults to True.
        indices (int | Sequence[int], optional): Use only these items.
            Defaults to None (all).
        check_images (bool): When the images are listed (at init, or at
            ``full_init`` with ``lazy_init``), check every file with
            :func:`~mmpcm.datasets.transforms.check_image` (header, PNG
            checksums, JPEG end marker; about 0.1 ms a file) and report all
            bad files in one error, before a runner loads a checkpoint or
            runs the model. Defaults to True.
        lazy_init (bool): Defer listing the images. Defaults to False.
        serialize_data (bool): Keep the list as one shared buffer.
            Defaults to True.
        max_refetch (int): Retries when the pipeline returns None.
            Defaults to 1000.

    Raises:
        FileNotFoundError: If the folder or the ann/list file is missing.
        InputError: If no image is found, or (``check_images``) some files
            are missing, not images or truncated: one error naming the
            folder or file, the count and the first bad files.
        ValueError: If a COCO file lacks ``file_name``/``id`` or repeats an
            id, or two files share a stem.
        ImageLoadError: (on access) for an image file that passed the check
            but does not decode (e.g. JPEG data corrupted inside).
    """

    def __init__(self,
                 data_root: str = '',
                 ann_file: str = '',
                 data_prefix: Optional[Mapping[str, str]] = None,
                 image_size: int = 224,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS,
                 metainfo: Optional[Mapping] = None,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 test_mode: bool = True,
                 indices: Optional[Union[int, Sequence[int]]] = None,
                 check_images: bool = True,
                 lazy_init: bool = False,
                 serialize_data: bool = True,
                 max_refetch: int = 1000) -> None:
        self.image_size = image_size
        self.extensions = tuple(e.lower() for e in extensions)
        self.check_images = check_images
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=dict(data_prefix or dict(img_path='')),
            indices=indices,
            serialize_data=serialize_data,
            pipeline=list(pipeline),
            test_mode=test_mode,
            lazy_init=lazy_init,
            max_refetch=max_refetch)

    @property
    def image_folder(self) -> str:
        """The folder image paths are relative to."""
        return self.data_prefix.get('img_path', '')

    def load_data_list(self) -> List[dict]:
        """List the images: ``img_path`` and ``image_id`` per item.

        Returns:
            list[dict]: One dict per image.

        Raises:
            InputError: If there is no image, or some are unreadable
                (``check_images``).
        """
        if not self.ann_file:
            folder = self.image_folder or '.'
            paths = [osp.join(folder, p)
                     for p in scan_images(folder, self.extensions)]
            items = list(zip(paths, stem_image_ids(paths)))
        elif not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'Image list not found: {self.ann_file}')
        elif self.ann_file.lower().endswith('.json'):
            items = [(osp.join(self.image_folder, name), image_id)
                     for name, image_id in self._read_coco_images()]
        else:
            paths = read_list_file(self.ann_file)
            items = list(zip(paths, stem_image_ids(paths)))
        source = self.ann_file or self.image_folder or '.'
        if not items:
            raise InputError(
                source, 'no images found',
                'check the path (an image folder, or a COCO-format or list '
                'file naming images)')
        if self.check_images:
            check_image_files(
                [path for path, _ in items], source,
                'fix or remove them (from the list or COCO file when there '
                'is one) and rerun: nothing was run')
        return [
            dict(sample_idx=i, img_path=path, image_id=image_id)
            for i, (path, image_id) in enumerate(items)
        ]

    def _read_coco_images(self) -> List[tuple]:
        """``(file_name, id)`` of every image of a COCO-format file."""
        content = mmengine.load(self.ann_file)
        images = content.get('images') if isinstance(content, dict) else None
        if not isinstance(images, list):
            raise ValueError(f'{self.ann_file} has no "images" list.')
        items, seen = [], set()
        for index, image in enumerate(images):
            if 'file_name' not in image or 'id' not in image:
                raise ValueError(f'images[{index}] in {self.ann_file} needs '
                                 '"file_name" and "id" to read images.')
            if image['id'] in seen:
                raise ValueError(f'Image id {image["id"]!r} appears twice in '
                                 f'{self.ann_file}.')
            seen.add(image['id'])
            items.append((image['file_name'], image['id']))
        return items

    def prepare_data(self, idx: int) -> Any:
        """Read and preprocess image ``idx``.

        Args:
            idx (int): Index in the dataset.

        Returns:
            dict: ``inputs=dict(images=...)`` and ``data_samples``, after
            the pipeline.
        """
        info = self.get_data_info(idx)
        image = clip_image_tensor(load_image(info['img_path']),
                                  self.image_size)  # (3, S, S) uint8
        sample = DataSample()
        sample.set_metainfo(
            dict(
                image_id=info['image_id'],
                sample_idx=info['sample_idx'],
                img_path=info['img_path']))
        return self.pipeline(dict(inputs=dict(images=image),
                                  data_samples=sample))
