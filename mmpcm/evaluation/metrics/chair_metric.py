"""PCMCHAIRMetric: object hallucination of captions (CHAIR-i, CHAIR-s) and
the recall of the images' objects."""
import warnings
from typing import Any, Dict, List, Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.structures import BaseDataElement

from mmpcm.registry import METRICS
from mmpcm.utils.cli import InputError
from .object_truth import load_objects_file
from .object_vocabulary import COCO_SYNONYMS_FILE, ObjectVocabulary
from .references import plain_image_id

__all__ = ['PCMCHAIRMetric']


@METRICS.register_module()
class PCMCHAIRMetric(BaseMetric):
    """CHAIR object hallucination: CHAIR-i, CHAIR-s and object recall.

    From Rohrbach et al., "Object Hallucination in Image Captioning" (EMNLP
    2018, Sec. 2). The objects a caption mentions are found by a synonym
    table (:class:`ObjectVocabulary`; the default is our own table of the
    80 COCO instance categories), each counted once per caption however
    often it is said. Over the evaluated images, summed, not averaged per
    image:

    * ``CHAIR-i`` = mentioned objects not in the image / all mentioned
      objects;
    * ``CHAIR-s`` = captions with at least one such object / captions;
    * ``object_recall`` = the image's objects the caption mentions / the
      images' objects.

    All three are percentages (x100, the scale of :class:`PCMCaptionMetric`).
    The counts behind them are reported too: ``num_captions``,
    ``num_hallucinating_captions``, ``num_mentioned``,
    ``num_hallucinated``, ``num_gt_objects``, ``num_recalled``. When no
    caption mentions an object ``CHAIR-i`` is 0 (and a warning says so); when
    the images have no objects ``object_recall`` is 0 (with a warning).

    An image id missing from ``objects_file`` is refused (an
    :class:`InputError` naming the file): CHAIR needs the objects of every
    captioned image. An image listed with no objects is evaluated (every
    object its caption mentions is hallucinated).

    Args:
        objects_file (str): ``{"objects": {image_id: [name, ...]}}``, ids
            looked up as ``str(image_id)`` (see
            :mod:`mmpcm.evaluation.metrics.object_truth`; written by
            ``tools/data/coco_objects.py``).
        synonyms (str, optional): Synonym table JSON (see
            :meth:`ObjectVocabulary.from_file`). Defaults to None: the
            shipped COCO table.
        collect_device (str): Device for collecting results across ranks,
            'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names. Defaults to
            'chair'.

    Raises:
        InputError: If ``objects_file`` or ``synonyms`` is not a valid file,
            or the objects file names objects the table does not.
        OSError: If a file cannot be read.
    """
    default_prefix: Optional[str] = 'chair'

    def __init__(self,
                 objects_file: str,
                 synonyms: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = 'chair') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.synonyms = synonyms or COCO_SYNONYMS_FILE
        self.vocabulary = ObjectVocabulary.from_file(self.synonyms)
        self.objects_file = objects_file
        self.objects = load_objects_file(objects_file, self.vocabulary)

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Store ``image_id`` and ``pred_caption`` of each output sample.

        Args:
            data_batch (Any): The input batch (unused).
            data_samples (Sequence[dict | BaseDataElement]): Model outputs
                with ``pred_caption`` and, in their metainfo, ``image_id``.

        Raises:
            KeyError: If a sample has no ``image_id`` or ``pred_caption``.
            TypeError: If ``pred_caption`` is not a str or the id is neither
                str nor int.
        """
        for sample in data_samples:
            if isinstance(sample, BaseDataElement):
                sample = sample.to_dict()
            missing = [
                k for k in ('image_id', 'pred_caption') if k not in sample
            ]
            if missing:
                raise KeyError(
                    f'PCMCHAIRMetric needs {missing} in each output data '
                    f'sample; got keys {sorted(sample)}.')
            if not isinstance(sample['pred_caption'], str):
                raise TypeError(
                    'pred_caption must be a str, got '
                    f'{type(sample["pred_caption"]).__name__} for image id '
                    f'{sample["image_id"]!r}.')
            self.results.append(
                dict(image_id=plain_image_id(sample['image_id']),
                     caption=sample['pred_caption']))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """CHAIR-i, CHAIR-s, object recall (x100) and their counts.

        Args:
            results (list[dict]): Items stored by :meth:`process`, from all
                ranks.

        Returns:
            dict: ``CHAIR-i``, ``CHAIR-s``, ``object_recall`` (percent) and
            the counts listed in the class docstring.

        Raises:
            ValueError: If there are no results or an image id repeats.
            InputError: If an image id is not in ``objects_file``.
        """
        if not results:
            raise ValueError('PCMCHAIRMetric got no predictions.')
        seen = set()
        for item in results:
            if item['image_id'] in seen:
                raise ValueError(
                    f'Image id {item["image_id"]!r} was predicted more than '
                    'once; the evaluated dataset must yield each image once.')
            seen.add(item['image_id'])
        unknown = [i for i in seen if str(i) not in self.objects]
        if unknown:
            raise InputError(
                self.objects_file, f'{len(unknown)} predicted image ids have '
                f'no entry, e.g. {sorted(map(str, unknown))[:5]}',
                'write the objects of the test images with '
                'tools/data/coco_objects.py')
        counts = dict(num_captions=0, num_hallucinating_captions=0,
                      num_mentioned=0, num_hallucinated=0, num_gt_objects=0,
                      num_recalled=0)
        for item in results:
            truth = set(self.objects[str(item['image_id'])])
            mentioned = self.vocabulary.mentions(item['caption'])
            hallucinated = mentioned - truth
            counts['num_captions'] += 1
            counts['num_hallucinating_captions'] += bool(hallucinated)
            counts['num_mentioned'] += len(mentioned)
            counts['num_hallucinated'] += len(hallucinated)
            counts['num_gt_objects'] += len(truth)
            counts['num_recalled'] += len(mentioned & truth)
        if not counts['num_mentioned']:
            warnings.warn('No caption mentions an object of the synonym '
                          f'table {self.synonyms}; CHAIR-i is reported as 0.')
        if not counts['num_gt_objects']:
            warnings.warn(f'The evaluated images have no objects in '
                          f'{self.objects_file}; object_recall is reported '
                          'as 0.')
        metrics: Dict[str, float] = {
            'CHAIR-i': _percent(counts['num_hallucinated'],
                                counts['num_mentioned']),
            'CHAIR-s': _percent(counts['num_hallucinating_captions'],
                                counts['num_captions']),
            'object_recall': _percent(counts['num_recalled'],
                                      counts['num_gt_objects']),
        }
        metrics.update(counts)
        return metrics


def _percent(part: int, whole: int) -> float:
    """``100 * part / whole``, 0.0 when ``whole`` is 0."""
    return 100.0 * part / whole if whole else 0.0
