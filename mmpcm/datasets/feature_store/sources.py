"""Where a store's features came from: the image file of each item.

Extraction records its input folder in ``extraction_source.json``
(``root``) and each item's file relative to it in the records (``image``);
see ``docs/feature_format.md``.
"""
import os.path as osp
from typing import Dict

from mmpcm.utils.fileio import PathLike
from mmpcm.utils.text_io import read_json
from .reader import FeatureStore

__all__ = ['SOURCE_FILE', 'source_images']

SOURCE_FILE = 'extraction_source.json'


def source_images(store_root: PathLike) -> Dict[str, str]:
    """The image file of every item, as recorded by the extraction.

    Args:
        store_root (str | PathLike): The feature store folder.

    Returns:
        dict[str, str]: ``{str(image_id): path}`` (``root`` of
        ``extraction_source.json`` joined with the record's ``image``;
        whether the file still exists is not checked). Empty when the store
        has no source record (made by another tool) or its items name no
        file.

    Raises:
        InputError: If ``extraction_source.json`` is not valid JSON, or a
            records file is damaged.
    """
    path = osp.join(store_root, SOURCE_FILE)
    if not osp.isfile(path):
        return {}
    source = read_json(path, 'extract the features again')
    root = source.get('root') if isinstance(source, dict) else None
    if not isinstance(root, str):
        return {}
    files = {}
    for _, _, record in FeatureStore(store_root).iter_records():
        image = record.get('image')
        if isinstance(image, str) and image:
            files[str(record['image_id'])] = osp.join(root, image)
    return files
