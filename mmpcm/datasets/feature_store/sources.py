"""Where a store's features came from: the image file of each item.

Extraction records its input folder in ``extraction_source.json``
(``root``) and each item's file relative to it in the records (``image``);
see ``docs/feature_format.md``.
"""
import os.path as osp
from typing import Dict, Optional

from mmpcm.utils.cli import InputError
from mmpcm.utils.fileio import PathLike
from mmpcm.utils.text_io import read_json
from .reader import FeatureStore

__all__ = ['SOURCE_FILE', 'source_root', 'source_images']

SOURCE_FILE = 'extraction_source.json'


def source_root(store_root: PathLike) -> Optional[str]:
    """The folder the records' ``image`` paths are relative to.

    Args:
        store_root (str | PathLike): The feature store folder.

    Returns:
        str | None: ``root`` of ``extraction_source.json``, or its folder
        when the extraction read a list file; None when the store has no
        readable source record (made by another tool).
    """
    path = osp.join(store_root, SOURCE_FILE)
    if not osp.isfile(path):
        return None
    try:
        source = read_json(path, 'extract the features again')
    except InputError:
        return None
    root = source.get('root') if isinstance(source, dict) else None
    if not isinstance(root, str) or not root:
        return None
    return osp.dirname(root) if osp.isfile(root) else root


def source_images(store_root: PathLike) -> Dict[str, str]:
    """The image file of every item, as recorded by the extraction.

    Args:
        store_root (str | PathLike): The feature store folder.

    Returns:
        dict[str, str]: ``{str(image_id): path}`` (:func:`source_root`
        joined with the record's ``image``; whether the file still exists is
        not checked). Empty when the store has no source record (made by
        another tool) or its items name no file.

    Raises:
        InputError: If a records file is damaged.
    """
    root = source_root(store_root)
    if root is None:
        return {}
    files = {}
    for _, _, record in FeatureStore(store_root).iter_records():
        image = record.get('image')
        if isinstance(image, str) and image:
            files[str(record['image_id'])] = osp.join(root, image)
    return files
