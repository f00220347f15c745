"""PCMCHAIRMetric: object hallucination of captions (CHAIR-i, CHAIR-s) and
the recall of the images' objects."""
import warnings
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

from mmengine.evaluator import BaseMetric

from mmpcm.registry import METRICS
from mmpcm.utils.cli import InputError
from .object_truth import load_objects_file
from .object_vocabulary import COCO_SYNONYMS_FILE, ObjectVocabulary
from .predictions import read_prediction, unique_image_ids

__all__ = ['CaptionObjects', 'PCMCHAIRMetric']


class CaptionObjects(NamedTuple):
    """The objects one caption mentions, judged against its image.

    Attributes:
        mentioned (set[str]): Object names the caption mentions.
        hallucinated (set[str]): Of those, the ones not in the image.
        spans (dict): ``{(first word, end word): name}``, the mentions'
            positions among the words of
            :func:`mmpcm.text.tokenize_caption` of the caption.
    """
    mentioned: Set[str]
    hallucinated: Set[str]
    spans: Dict[Tuple[int, int], str]


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
        """Keep each output's image id and caption
        (:func:`~mmpcm.evaluation.metrics.predictions.read_prediction`,
        whose errors it raises); ``data_batch`` is not read."""
        for sample in data_samples:
            prediction = read_prediction(sample, 'PCMCHAIRMetric')
            self.results.append({k: prediction[k]
                                 for k in ('image_id', 'caption')})

    def caption_objects(self, image_id: Any, caption: str) -> CaptionObjects:
        """What one caption mentions and which of it is hallucinated.

        Args:
            image_id: The image's id (looked up as ``str(image_id)``).
            caption (str): The caption.

        Returns:
            CaptionObjects: Mentioned and hallucinated objects, and where.

        Raises:
            InputError: If the image id is not in ``objects_file``.
        """
        if str(image_id) not in self.objects:
            raise InputError(self.objects_file, f'no entry for image id '
                             f'{image_id!r}', 'write the objects of the test '
                             'images with tools/data/coco_objects.py')
        truth = set(self.objects[str(image_id)])
        mentioned = self.vocabulary.mentions(caption)
        return CaptionObjects(mentioned, mentioned - truth,
                              self.vocabulary.mention_spans(caption))

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
        seen = unique_image_ids(results, 'PCMCHAIRMetric')
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
            found = self.caption_objects(item['image_id'], item['caption'])
            mentioned, hallucinated = found.mentioned, found.hallucinated
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
