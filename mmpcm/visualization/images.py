"""Which image file each test item shows, for pictures of the results."""
import os.path as osp
from typing import Any, Dict, Optional

from mmpcm.datasets.feature_store import source_images
from mmpcm.datasets.image_lists import scan_folder

__all__ = ['dataset_image_files']


def dataset_image_files(dataset: Any,
                        image_root: Optional[str] = None) -> Dict[str, str]:
    """``{str(image_id): image file}`` of a test or validation dataset.

    Args:
        dataset: An image-mode dataset (items with ``img_path``) or a
            feature-mode one (``SynthImgCapDataset``: the files its store's
            extraction recorded, :func:`source_images`).
        image_root (str, optional): A folder whose images are named by
            image id (file stem = id, the default id scheme); when given it
            is used instead of what the dataset knows. Defaults to None.

    Returns:
        dict[str, str]: The files known (possibly none: a caller says so).

    Raises:
        MissingInputError: If ``image_root`` does not exist.
    """
    if image_root is not None:
        scan = scan_folder(image_root)
        return {osp.splitext(osp.basename(rel))[0]: osp.join(image_root, rel)
                for rel in scan.files}
    store = getattr(dataset, 'store', None)
    if store is not None:
        return source_images(store.root)
    files = {}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        if info.get('img_path'):
            files[str(info['image_id'])] = info['img_path']
    return files
