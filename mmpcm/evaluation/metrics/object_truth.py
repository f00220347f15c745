"""The objects in each test image, as the CHAIR metric reads them.

The file is ``{"objects": {image_id: [object name, ...]}}``. JSON keys are
strings, so an image id is looked up as ``str(image_id)``: the caption
metric's int id 42 and str id ``"42"`` both find key ``"42"``. Object names
are the canonical names of an :class:`ObjectVocabulary`.

For COCO the objects of an image are its instance annotations' categories
(:func:`coco_objects_from_instances`), as in Rohrbach et al., "Object
Hallucination in Image Captioning" (EMNLP 2018, Sec. 2); for a world
without instance annotations (the offline toy world),
:func:`objects_from_references` takes the objects its reference captions
mention.
"""
import contextlib
import io
import os
from typing import Dict, List, Optional, Union

from mmpcm.utils.cli import InputError, MissingInputError
from mmpcm.utils.fileio import atomic_write_json
from mmpcm.utils.text_io import read_json
from .object_vocabulary import ObjectVocabulary
from .references import load_references

__all__ = ['ID_SCHEMES', 'load_objects_file', 'coco_objects_from_instances',
           'objects_from_references', 'write_objects_file']

ObjectsByImage = Dict[str, List[str]]
#: Image ids :func:`coco_objects_from_instances` can write.
ID_SCHEMES = ('stem', 'cocoid')
_REMEDY = ('write it with tools/data/coco_objects.py: {"objects": '
           '{image_id: [object name, ...]}}')


def load_objects_file(path: str,
                      vocabulary: ObjectVocabulary) -> ObjectsByImage:
    """Read the ground-truth objects of each image.

    Args:
        path (str): ``{"objects": {image_id: [name, ...]}}``.
        vocabulary (ObjectVocabulary): The names must be its objects.

    Returns:
        dict: ``{str(image_id): sorted unique names}``; an image may have
        none (an empty list).

    Raises:
        InputError: If the file is not such a mapping or names an object
            that is not in ``vocabulary`` (e.g. another synonym table).
        OSError: If it cannot be read.
    """
    content = read_json(path, _REMEDY)
    if not isinstance(content, dict) or not isinstance(
            content.get('objects'), dict):
        raise InputError(path, 'not an objects file (a dict with an '
                         '"objects" mapping)', _REMEDY)
    objects: ObjectsByImage = {}
    for image_id, names in content['objects'].items():
        if not isinstance(names, list) or not all(
                isinstance(n, str) for n in names):
            raise InputError(path, f'the objects of image {image_id!r} are '
                             'not a list of names', _REMEDY)
        unknown = sorted({n for n in names if n not in vocabulary})
        if unknown:
            raise InputError(
                path, f'image {image_id!r} has objects {unknown[:5]} that '
                'the synonym table does not name', 'pass the synonym table '
                'the file was written with (synonyms=...)')
        objects[image_id] = sorted(set(names))
    return objects


def coco_objects_from_instances(
        instances_json: str,
        out_json: Optional[str] = None,
        id_scheme: str = 'stem') -> ObjectsByImage:
    """The category names of each image of a COCO instances file.

    Read with ``pycocotools.coco.COCO`` (category id -> name, image id ->
    the names of its annotations' categories). Images without an
    annotation get an empty list.

    Args:
        instances_json (str): COCO ``instances_*.json``.
        out_json (str, optional): Where to write the objects file
            (:func:`write_objects_file`). Defaults to None (nothing written).
        id_scheme (str): The ids to write, as the caption references'
            (``ImageIdScheme`` of ``tools/data/prepare_corpus.py``):
            ``'stem'`` (default), the image's ``file_name`` without its
            extension (``'COCO_val2014_000000391895'``, what the configs'
            test sets use), or ``'cocoid'``, COCO's image id.

    Returns:
        dict: ``{str(image_id): sorted unique category names}``.

    Raises:
        MissingInputError: If the file does not exist.
        InputError: If it is not COCO instances JSON (or an image has no
            ``file_name`` for ``'stem'``).
        ValueError: For another ``id_scheme``.
    """
    from pycocotools.coco import COCO
    if id_scheme not in ID_SCHEMES:
        raise ValueError(f'id_scheme must be one of {ID_SCHEMES}, got '
                         f'{id_scheme!r}.')
    if not os.path.isfile(instances_json):
        raise MissingInputError(instances_json, 'no such file',
                                'pass a COCO instances_<split>.json')
    remedy = 'pass a COCO instances_<split>.json'
    dataset = read_json(instances_json, remedy)
    if not isinstance(dataset, dict) or not all(
            isinstance(dataset.get(k), list)
            for k in ('images', 'annotations', 'categories')):
        raise InputError(instances_json, 'not COCO instances JSON (a dict '
                         'with "images", "annotations" and "categories" '
                         'lists)', remedy)
    coco = COCO()
    coco.dataset = dataset
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its progress
            coco.createIndex()
        names = {c['id']: c['name'] for c in coco.loadCats(coco.getCatIds())}
        objects = {}
        for image_id in coco.getImgIds():
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
            key = (image_id if id_scheme == 'cocoid' else
                   os.path.splitext(coco.imgs[image_id]['file_name'])[0])
            objects[str(key)] = sorted(
                {names[a['category_id']] for a in anns})
    except KeyError as error:
        raise InputError(instances_json, f'an entry lacks {error} or names '
                         'an unknown category or image', remedy) from None
    if out_json is not None:
        write_objects_file(objects, out_json)
    return objects


def objects_from_references(ann_file: str,
                            vocabulary: ObjectVocabulary) -> ObjectsByImage:
    """The objects any reference caption of each image mentions.

    For test sets without instance annotations, e.g. the toy world's
    ``test_gt.json`` with a synonym table of its shapes.

    Args:
        ann_file (str): COCO-format caption references (the caption
            metric's ``ann_file``).
        vocabulary (ObjectVocabulary): Which words name objects.

    Returns:
        dict: ``{str(image_id): sorted unique names}``.
    """
    references = load_references(ann_file)
    return {
        str(image_id): sorted(set().union(
            *(vocabulary.mentions(c) for c in captions)))
        for image_id, captions in references.items()
    }


def write_objects_file(objects: ObjectsByImage,
                       out_json: Union[str, 'os.PathLike[str]']) -> None:
    """Write ``{"objects": objects}`` atomically (UTF-8 JSON)."""
    atomic_write_json(out_json, {'objects': objects})
