"""PCMCaptionMetric: COCO caption metrics (BLEU, METEOR, ROUGE-L, CIDEr-D,
SPICE) by pycocoevalcap, with no writes outside a private temporary folder.

How it differs from ``COCOEvalCap``: ``docs/evaluation.md``. The tokenizer,
the scorers, SPICE and the references live in the sibling modules; their
names are importable from here too.
"""
import warnings
from typing import (Any, Dict, Hashable, List, Mapping, NamedTuple,
                    Optional, Sequence, Union)

from mmengine.dist import is_main_process
from mmengine.evaluator import BaseMetric

from mmpcm.registry import METRICS
from . import spice as _spice
from .coco_scorers import (SCORERS, FewImagesCIDErWarning, bleu_scores,
                           cider_per_image, cider_score, meteor_score,
                           rouge_score)
from .ptb_tokenizer import (Captions, IsolatedPTBTokenizer, find_java,
                            run_ptb_tokenizer)
from .predictions import read_prediction, unique_image_ids
from .references import load_references, plain_image_id
from .spice import (CORENLP_JARS, CORENLP_URL, SPICE_MAIN_CLASS,
                    SpiceUnavailableWarning, corenlp_missing_message,
                    default_corenlp_dir, find_corenlp_jars,
                    parse_spice_summary, run_spice, spice_command)

SUPPORTED_METRICS = ('BLEU', 'METEOR', 'ROUGE_L', 'CIDEr', 'SPICE')
# What ``metrics=None`` means: these, plus SPICE when CoreNLP is present.
DEFAULT_METRICS = ('BLEU', 'METEOR', 'ROUGE_L', 'CIDEr')
_spice_warning_issued = False

__all__ = [
    'PCMCaptionMetric', 'MetricSelection', 'select_metrics',
    'SUPPORTED_METRICS', 'DEFAULT_METRICS', 'PartialTestSetWarning',
    'Captions', 'IsolatedPTBTokenizer', 'find_java', 'run_ptb_tokenizer',
    'load_references', 'plain_image_id', 'bleu_scores', 'meteor_score',
    'rouge_score', 'cider_score', 'FewImagesCIDErWarning',
    'SpiceUnavailableWarning', 'SPICE_MAIN_CLASS', 'CORENLP_JARS',
    'CORENLP_URL', 'default_corenlp_dir', 'find_corenlp_jars',
    'corenlp_missing_message', 'spice_command', 'parse_spice_summary',
    'run_spice'
]


def __getattr__(name: str) -> Any:
    """``SPICE_DIR`` and ``SPICE_JAR`` of :mod:`.spice`, found when first
    asked for (pycocoevalcap's SPICE module is imported then)."""
    if name in ('SPICE_DIR', 'SPICE_JAR'):
        return getattr(_spice, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


class PartialTestSetWarning(UserWarning):
    """Reference images without a prediction: the scores cover fewer."""


def _warn_spice_skipped(corenlp_dir: Optional[str]) -> None:
    """Warn once per process (main rank only) that SPICE is skipped."""
    global _spice_warning_issued
    if _spice_warning_issued or not is_main_process():
        return
    _spice_warning_issued = True
    warnings.warn(
        f'{corenlp_missing_message(corenlp_dir)} SPICE is skipped; list '
        '"SPICE" in the metric\'s metrics to make its absence an error.',
        SpiceUnavailableWarning, stacklevel=3)


class MetricSelection(NamedTuple):
    """Which caption metrics a :class:`PCMCaptionMetric` computes.

    Attributes:
        names (list[str]): Metric names, SPICE included only if it runs.
        spice_jars (list[str] | None): The CoreNLP jars when SPICE runs.
    """
    names: List[str]
    spice_jars: Optional[List[str]]


def select_metrics(metrics: Optional[Union[str, Sequence[str]]],
                   corenlp_dir: Optional[str] = None) -> MetricSelection:
    """Validate the requested metric names and decide about SPICE.

    Args:
        metrics (str | Sequence[str], optional): Names from
            :data:`SUPPORTED_METRICS`; None means :data:`DEFAULT_METRICS`
            plus SPICE when CoreNLP is present (otherwise SPICE is skipped
            with one warning per process).
        corenlp_dir (str, optional): Where the CoreNLP jars are. Defaults
            to None (pycocoevalcap's ``spice/lib``).

    Returns:
        MetricSelection: The names (duplicates removed, order kept) and the
        CoreNLP jars when SPICE runs.

    Raises:
        ValueError: For an unknown name or an empty list.
        FileNotFoundError: If 'SPICE' is listed and CoreNLP is missing.
    """
    if metrics is None:
        jars = find_corenlp_jars(corenlp_dir)
        if jars is None:
            _warn_spice_skipped(corenlp_dir)
            return MetricSelection(list(DEFAULT_METRICS), None)
        return MetricSelection(list(DEFAULT_METRICS) + ['SPICE'], jars)
    if isinstance(metrics, str):
        metrics = [metrics]
    names = list(dict.fromkeys(metrics))
    unknown = [m for m in names if m not in SUPPORTED_METRICS]
    if unknown or not names:
        raise ValueError(f'Unknown caption metrics {unknown}; choose from '
                         f'{SUPPORTED_METRICS}.')
    jars = None
    if 'SPICE' in names:
        jars = find_corenlp_jars(corenlp_dir)
        if jars is None:
            raise FileNotFoundError(
                'The config asks for SPICE (metrics lists it). '
                f'{corenlp_missing_message(corenlp_dir)} Or drop "SPICE" '
                'from metrics (metrics=None runs it only when available).')
    return MetricSelection(names, jars)


@METRICS.register_module()
class PCMCaptionMetric(BaseMetric):
    """COCO caption metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and SPICE.

    Scores are pycocoevalcap's (the COCO caption evaluation code), scaled by
    100. Unlike mmpretrain's ``COCOCaption`` it keeps image ids as given,
    runs SPICE only when Stanford CoreNLP is installed (never downloading
    it), and writes nothing outside a private temp directory. Per-sample
    results are plain ``{'image_id': int | str, 'caption': str}`` dicts, so
    BaseMetric gathers them across ranks.

    In a config that sets ``metrics``, give the metric in a list,
    ``test_evaluator = [dict(type='PCMCaptionMetric', metrics=[...])]``:
    mmengine reads a single dict with a ``metrics`` key as an Evaluator.

    Args:
        ann_file (str): COCO-format caption ground truth: ``{"images":
            [{"id": ...}], "annotations": [{"image_id": ..., "caption":
            ...}]}``. Ids may be str or int and are never cast.
        metrics (Sequence[str], optional): Any of 'BLEU', 'METEOR',
            'ROUGE_L', 'CIDEr', 'SPICE'; listing 'SPICE' makes a missing
            CoreNLP an error. Defaults to None: the first four, plus SPICE
            when CoreNLP is present (otherwise one warning says how to
            enable it).
        corenlp_dir (str, optional): Folder with
            ``stanford-corenlp-3.6.0.jar`` and
            ``stanford-corenlp-3.6.0-models.jar``. Defaults to None
            (pycocoevalcap's ``spice/lib``).
        spice_cache_dir (str, optional): Folder for SPICE's reference parse
            cache (speeds up repeated evaluations). Defaults to None (no
            cache, nothing written).
        spice_max_memory (str): Java heap limit for SPICE. Defaults to '8G'.
        collect_device (str): Device for collecting results across ranks,
            'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names. Defaults to
            'coco-caption'.

    Raises:
        RuntimeError: If ``java`` is not on PATH.
        FileNotFoundError: If 'SPICE' is listed and CoreNLP is missing.
        ValueError: For unknown metrics or an invalid ``ann_file``.
    """
    default_prefix: Optional[str] = 'coco-caption'

    def __init__(self,
                 ann_file: str,
                 metrics: Optional[Sequence[str]] = None,
                 corenlp_dir: Optional[str] = None,
                 spice_cache_dir: Optional[str] = None,
                 spice_max_memory: str = '8G',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = 'coco-caption') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.java = find_java()
        selection = select_metrics(metrics, corenlp_dir)
        self.metrics = selection.names
        self.spice_jars = selection.spice_jars
        self.spice_cache_dir = spice_cache_dir
        self.spice_max_memory = spice_max_memory
        self.ann_file = ann_file
        self.references = load_references(ann_file)

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
            prediction = read_prediction(sample, 'PCMCaptionMetric')
            self.results.append(dict(image_id=prediction['image_id'],
                                     caption=prediction['caption']))

    def _predictions(self, results: List[dict]) -> Dict[Hashable, str]:
        """Map image ids to predicted captions, checking them.

        Args:
            results (list[dict]): Items stored by :meth:`process`.

        Returns:
            dict: ``{image_id: caption}``.

        Raises:
            ValueError: If there are no results, an id repeats, is not in
                ``ann_file`` or has no reference caption there.
        """
        unique_image_ids(results, 'PCMCaptionMetric')
        predictions: Dict[Hashable, str] = {
            item['image_id']: item['caption'] for item in results}
        unknown = [i for i in predictions if i not in self.references]
        if unknown:
            raise ValueError(
                f'{len(unknown)} predicted image ids are not in '
                f'{self.ann_file}, e.g. {unknown[:5]!r} (ids are compared as '
                'given: 1 and "1" differ).')
        empty = [i for i in predictions if not self.references[i]]
        if empty:
            raise ValueError(
                f'{len(empty)} predicted image ids have no reference caption '
                f'in {self.ann_file}, e.g. {empty[:5]!r}.')
        missing = [i for i, refs in self.references.items()
                   if refs and i not in predictions]
        if missing:
            warnings.warn(
                f'{self.ann_file}: {len(missing)} of {len(self.references)} '
                f'reference images have no prediction (e.g. '
                f'{missing[:3]!r}); the scores cover the {len(predictions)} '
                'predicted images only: check that the test features or '
                'images are complete', PartialTestSetWarning)
        return predictions

    def per_image_cider(self, predictions: Mapping[Hashable, str]
                        ) -> Dict[Hashable, float]:
        """CIDEr-D (x100) of each predicted caption, tokenized as
        :meth:`compute_metrics` tokenizes (document frequencies from the
        references of the given images). No state is changed.

        Args:
            predictions (Mapping): ``{image_id: caption}``; every id must
                have references in ``ann_file``.

        Returns:
            dict: ``{image_id: CIDEr-D x100}``.

        Raises:
            ValueError: As :meth:`compute_metrics` for unknown ids.
        """
        checked = self._predictions(
            [dict(image_id=i, caption=c) for i, c in predictions.items()])
        gts, res = self._tokenized(checked)
        return {i: 100.0 * v for i, v in cider_per_image(gts, res).items()}

    def _tokenized(self, predictions: Dict[Hashable, str]) -> tuple:
        """PTB-tokenized references and predictions of the given ids."""
        tokenizer = IsolatedPTBTokenizer(self.java)
        gts = tokenizer.tokenize({
            i: [{'caption': c} for c in self.references[i]]
            for i in predictions
        })
        res = tokenizer.tokenize(
            {i: [{'caption': c}] for i, c in predictions.items()})
        return gts, res

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Tokenize and score the predictions against their references.

        Only images with a prediction are scored (as ``COCOEvalCap`` does).

        Args:
            results (list[dict]): Items stored by :meth:`process`, from all
                ranks.

        Returns:
            dict: ``Bleu_1``..``Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``,
            ``SPICE`` (those requested or available), each x100.
        """
        predictions = self._predictions(results)
        gts, res = self._tokenized(predictions)
        scores: Dict[str, float] = {}
        for name in self.metrics:
            if name == 'SPICE':
                scores['SPICE'] = run_spice(
                    self.java, gts, res, self.spice_jars,
                    self.spice_max_memory, self.spice_cache_dir)
            else:
                scores.update(SCORERS[name](gts, res))
        return {name: 100.0 * value for name, value in scores.items()}
