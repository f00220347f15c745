"""Real test images read from files, for the online CLIP mode."""
import os.path as osp
from typing import Any, Callable, List, Mapping, Optional, Sequence, Union

import mmengine
from mmengine.dataset import BaseDataset
from mmpretrain.structures import DataSample

from mmpcm.registry import DATASETS
from mmpcm.utils.cli import InputError, MissingInputError
from .clip_transforms import CLIPImageTransform
from .image_lists import (IMAGE_EXTENSIONS, read_path_list, scan_folder,
                          stem_image_ids)
from .transforms import ImageLoadError, check_image, load_image

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
    ``ToTensor`` for the CLIP's preprocess config
    (:class:`~mmpcm.datasets.clip_transforms.CLIPImageTransform`); the
    backbone normalises.

    Where the images come from (``ann_file``, relative to ``data_root``):

    * ``''``: every image file under the image folder
      (:func:`~mmpcm.datasets.image_lists.scan_folder`: recursive, sorted,
      hidden files and folders skipped, extensions matched ignoring case);
      the image id is the file stem (``'img_1'`` for ``sub/img_1.jpg``),
      which must be unique, as in feature extraction from a folder.
    * a ``.json`` file: COCO format, ``images`` with ``id`` and
      ``file_name`` (relative to the image folder); ids are kept as given
      (str or int), so the captions match a COCO-format reference file
      such as the Karpathy test split.
    * any other file: a plain list file
      (:func:`~mmpcm.datasets.image_lists.read_path_list`: one image path
      per line, relative to the list file's folder unless absolute; blank
      lines and ``#`` comments skipped; a ``.jsonl`` typed list is
      refused); ids as for a folder.

    Args:
        data_root (str): Root of ``ann_file`` and ``data_prefix``.
            Defaults to ''.
        ann_file (str): See above. Defaults to ''.
        data_prefix (dict): ``img_path``: the image folder. Defaults to
            ``dict(img_path='')``.
        image_size (int): CLIP's input size, with open_clip's default
            transform (OpenAI CLIP's: bicubic resize of the shortest side,
            center crop). Defaults to 224.
        preprocess_cfg (dict, optional): The CLIP's own open_clip
            preprocess config (``size``, ``interpolation``,
            ``resize_mode``, ...; ``visual.preprocess_cfg`` of the model)
            instead of ``image_size``. Defaults to None.
        extensions (Sequence[str]): Suffixes scanned in folder mode
            (compared ignoring case). Defaults to
            :data:`~mmpcm.datasets.image_lists.IMAGE_EXTENSIONS`.
        metainfo (dict, optional): Extra meta information. Defaults to None.
        pipeline (Sequence[dict | Callable]): Transforms applied to each
            item dict. Defaults to ().
        test_mode (bool): Defaults to True.
        indices (int | Sequence[int], optional): Use only these items.
            Defaults to None (all).
        check_images (bool): When the images are listed (at init, or at
            ``full_init`` with ``lazy_init``), check every file with
            :func:`~mmpcm.datasets.transforms.check_image` (header, PNG
            checksums, JPEG end marker; no decoding) and report all
            bad files in one error, before a runner loads a checkpoint or
            runs the model. Defaults to True.
        lazy_init (bool): Defer listing the images. Defaults to False.
        serialize_data (bool): Keep the list as one shared buffer.
            Defaults to True.
        max_refetch (int): Retries when the pipeline returns None.
            Defaults to 1000.

    Attributes:
        transform (CLIPImageTransform): PIL image -> ``(3, S, S)`` uint8,
            built from ``preprocess_cfg`` or ``image_size``.

    Raises:
        MissingInputError: If the folder or the ann/list file is missing.
        InputError: If no image is found, two files share a stem, or
            (``check_images``) some files are missing, not images or
            truncated: one error naming the folder or file, the count and
            the first bad files.
        ValueError: If a COCO file lacks ``file_name``/``id`` or repeats an
            id.
        ImageLoadError: (on access) for an image file that passed the check
            but does not decode (e.g. JPEG data corrupted inside).
    """

    def __init__(self,
                 data_root: str = '',
                 ann_file: str = '',
                 data_prefix: Optional[Mapping[str, str]] = None,
                 image_size: int = 224,
                 preprocess_cfg: Optional[Mapping[str, Any]] = None,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS,
                 metainfo: Optional[Mapping] = None,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 test_mode: bool = True,
                 indices: Optional[Union[int, Sequence[int]]] = None,
                 check_images: bool = True,
                 lazy_init: bool = False,
                 serialize_data: bool = True,
                 max_refetch: int = 1000) -> None:
        self.transform = CLIPImageTransform(
            dict(preprocess_cfg) if preprocess_cfg is not None else image_size)
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
        source = self.ann_file or self.image_folder or '.'
        if not self.ann_file:
            paths = [osp.join(source, p)
                     for p in scan_folder(source, self.extensions).files]
            items = list(zip(paths, stem_image_ids(paths, source)))
        elif self.ann_file.lower().endswith('.json'):
            if not osp.isfile(self.ann_file):
                raise MissingInputError(self.ann_file, 'no such COCO file',
                                        'check ann_file and data_root')
            items = [(osp.join(self.image_folder, name), image_id)
                     for name, image_id in self._read_coco_images()]
        else:
            paths = [image.path for image in read_path_list(self.ann_file)]
            items = list(zip(paths, stem_image_ids(paths, source)))
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
        image = self.transform(load_image(info['img_path']))  # (3, S, S)
        sample = DataSample()
        sample.set_metainfo(
            dict(
                image_id=info['image_id'],
                sample_idx=info['sample_idx'],
                img_path=info['img_path']))
        return self.pipeline(dict(inputs=dict(images=image),
                                  data_samples=sample))
