"""Predicted captions as the caption metrics read them from model outputs."""
from typing import Any, Hashable, Iterable, Mapping, Set

from mmengine.structures import BaseDataElement

from .references import plain_image_id


def read_prediction(sample: Any, metric: str) -> dict:
    """The image id and predicted caption of one output data sample.

    Args:
        sample (dict | BaseDataElement): A model output with
            ``pred_caption`` and, in its metainfo, ``image_id``.
        metric (str): The metric's name, for errors.

    Returns:
        dict: ``image_id`` (:func:`plain_image_id`), ``caption`` (str) and
        every other field of the sample under its own name.

    Raises:
        KeyError: If the sample has no ``image_id`` or ``pred_caption``.
        TypeError: If ``pred_caption`` is not a str, or the id is neither str
            nor int.
    """
    if isinstance(sample, BaseDataElement):
        sample = sample.to_dict()
    missing = [k for k in ('image_id', 'pred_caption') if k not in sample]
    if missing:
        raise KeyError(f'{metric} needs {missing} in each output data '
                       f'sample; got keys {sorted(sample)}.')
    if not isinstance(sample['pred_caption'], str):
        raise TypeError(
            'pred_caption must be a str, got '
            f'{type(sample["pred_caption"]).__name__} for image id '
            f'{sample["image_id"]!r}.')
    return dict(sample, image_id=plain_image_id(sample['image_id']),
                caption=sample['pred_caption'])


def unique_image_ids(results: Iterable[Mapping], metric: str) -> Set[Hashable]:
    """The image ids of a metric's collected results, each once.

    Args:
        results (Iterable[Mapping]): Items with an ``image_id``, from all
            ranks.
        metric (str): The metric's name, for errors.

    Returns:
        set: The ids.

    Raises:
        ValueError: If there are no results or an id repeats (the evaluated
            dataset must yield each image once).
    """
    seen: Set[Hashable] = set()
    for item in results:
        if item['image_id'] in seen:
            raise ValueError(
                f'Image id {item["image_id"]!r} was predicted more than '
                'once; the evaluated dataset must yield each image once.')
        seen.add(item['image_id'])
    if not seen:
        raise ValueError(f'{metric} got no predictions.')
    return seen
