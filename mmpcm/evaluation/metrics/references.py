"""COCO caption references and image ids, as the caption metrics read them.

Image ids are used exactly as given (str or int, never cast).
"""
import numbers
from typing import Any, Union

from mmpcm.utils.cli import InputError
from mmpcm.utils.text_io import read_json
from .ptb_tokenizer import Captions

__all__ = ['load_references', 'plain_image_id']


def load_references(ann_file: str) -> Captions:
    """Read COCO-format caption ground truth.

    Args:
        ann_file (str): JSON with ``images`` (each with ``id``) and
            ``annotations`` (each with ``image_id`` and ``caption``).

    Returns:
        dict: ``{image_id: [caption, ...]}`` with ids exactly as in the
        file, for every image in ``images`` (possibly with no caption).

    Raises:
        ValueError: If a section or field is missing, an image id repeats,
            or an annotation names an image id that is not in ``images``.
    """
    content = read_json(ann_file, 'fix the file, or pass the references '
                        'written by tools/data/prepare_corpus.py')
    if not isinstance(content, dict) or not all(
            isinstance(content.get(k), list)
            for k in ('images', 'annotations')):
        raise InputError(ann_file, 'not a COCO caption file (a dict with '
                         '"images" and "annotations" lists)',
                         'pass the references written by '
                         'tools/data/prepare_corpus.py '
                         '(karpathy_<split>_gt.json)')
    references: Captions = {}
    for index, image in enumerate(content['images']):
        if 'id' not in image:
            raise ValueError(f'images[{index}] in {ann_file} has no "id".')
        if image['id'] in references:
            raise ValueError(
                f'Image id {image["id"]!r} appears twice in {ann_file}.')
        references[image['id']] = []
    for index, ann in enumerate(content['annotations']):
        if 'image_id' not in ann or 'caption' not in ann:
            raise ValueError(f'annotations[{index}] in {ann_file} needs '
                             '"image_id" and "caption".')
        if ann['image_id'] not in references:
            raise ValueError(
                f'annotations[{index}] in {ann_file} refers to image id '
                f'{ann["image_id"]!r}, which is missing from "images" (ids '
                'are compared as given: 1 and "1" differ).')
        references[ann['image_id']].append(ann['caption'])
    return references


def plain_image_id(image_id: Any) -> Union[int, str]:
    """An image id as a plain ``int`` or ``str`` (picklable, JSON-ready).

    Args:
        image_id (Any): A str, an int, a numpy integer or a 0-d integer
            tensor.

    Returns:
        int | str: The id; strings stay strings, integers become ``int``.

    Raises:
        TypeError: For any other type (e.g. float or bool).
    """
    if hasattr(image_id, 'item') and getattr(image_id, 'ndim', 1) == 0:
        image_id = image_id.item()  # numpy / torch scalar
    if isinstance(image_id, str):
        return image_id
    if isinstance(image_id, numbers.Integral) and not isinstance(
            image_id, bool):
        return int(image_id)
    raise TypeError(f'Image ids must be str or int, got {image_id!r} '
                    f'({type(image_id).__name__}).')
