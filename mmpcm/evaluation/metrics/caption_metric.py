"""COCO caption metrics (BLEU, METEOR, ROUGE-L, CIDEr-D) without side effects.

Wraps pycocoevalcap the way ``COCOEvalCap`` uses it, with three differences:

* pycocoevalcap's ``PTBTokenizer`` writes its input into a temporary file in
  the installed package folder and runs Java there;
  :class:`IsolatedPTBTokenizer` writes it into a private
  ``tempfile.TemporaryDirectory`` instead (the jar is only read), and checks
  Java's exit status and output length.
* Image ids are used exactly as given (str or int; never cast), and unknown,
  duplicate or missing ids are errors.
* Java is looked up when the metric is built, before any model work.
"""
import os
import shutil
import subprocess
import tempfile
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence

import mmengine
from mmengine.evaluator import BaseMetric
from mmengine.structures import BaseDataElement
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer import ptbtokenizer
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from mmpcm.registry import METRICS

Captions = Dict[Hashable, List[str]]

SUPPORTED_METRICS = ('BLEU', 'METEOR', 'ROUGE_L', 'CIDEr')
_PTB_JAR = os.path.join(
    os.path.dirname(os.path.abspath(ptbtokenizer.__file__)),
    ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
_PTB_CLASS = 'edu.stanford.nlp.process.PTBTokenizer'


def find_java() -> str:
    """Locate the ``java`` executable the tokenizer and METEOR need.

    Returns:
        str: Path of ``java`` on ``PATH``.

    Raises:
        RuntimeError: If there is no ``java`` on ``PATH``.
    """
    java = shutil.which('java')
    if java is None:
        raise RuntimeError(
            'PCMCaptionMetric needs Java: pycocoevalcap runs the Stanford PTB '
            'tokenizer and METEOR as Java programs, and no `java` executable '
            'is on PATH. Install a Java runtime (e.g. OpenJDK 17) and put '
            '`java` on PATH, or evaluate on a machine that has one.')
    return java


def run_ptb_tokenizer(java: str, sentences: Sequence[str]) -> List[str]:
    """Tokenize sentences with Stanford's PTBTokenizer, one line each.

    The input file lives in a private temporary directory, which is also
    Java's working directory; nothing is written next to the jar.

    Args:
        java (str): Path of the ``java`` executable.
        sentences (Sequence[str]): Sentences without line breaks.

    Returns:
        list[str]: The lower-cased, tokenized lines, in input order.

    Raises:
        RuntimeError: If Java fails or returns a different number of lines.
    """
    with tempfile.TemporaryDirectory(prefix='mmpcm_ptb_') as tmp_dir:
        path = os.path.join(tmp_dir, 'sentences.txt')
        with open(path, 'w', encoding='utf-8') as file:
            file.write('\n'.join(sentences))
        proc = subprocess.run(
            [java, '-cp', _PTB_JAR, _PTB_CLASS, '-preserveLines',
             '-lowerCase', path],
            cwd=tmp_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f'The PTB tokenizer (java) failed with exit status '
            f'{proc.returncode}: {proc.stderr.decode(errors="replace")}')
    lines = proc.stdout.decode('utf-8').split('\n')
    if len(lines) == len(sentences) + 1 and lines[-1] == '':
        lines.pop()
    if len(lines) != len(sentences):
        raise RuntimeError(
            f'The PTB tokenizer returned {len(lines)} lines for '
            f'{len(sentences)} sentences.')
    return lines


class IsolatedPTBTokenizer(PTBTokenizer):
    """pycocoevalcap's PTB tokenizer, writing only into a temp directory.

    Same command line, punctuation removal and output as
    :class:`pycocoevalcap.tokenizer.ptbtokenizer.PTBTokenizer`; see
    :func:`run_ptb_tokenizer` for where files go. Whitespace inside a caption
    (including line breaks) is collapsed to single spaces first, so every
    caption stays on one line.

    Args:
        java (str): Path of the ``java`` executable. Defaults to 'java'.
    """

    def __init__(self, java: str = 'java') -> None:
        self.java = java

    def tokenize(self, captions_for_image: Dict[Hashable, List[dict]]
                 ) -> Captions:
        """Tokenize ``{image_id: [{'caption': str}, ...]}``.

        Args:
            captions_for_image (dict): Captions per image id.

        Returns:
            dict: ``{image_id: [tokenized caption, ...]}``, same ids.
        """
        image_ids = [k for k, v in captions_for_image.items() for _ in v]
        sentences = [
            ' '.join(c['caption'].split())
            for v in captions_for_image.values() for c in v
        ]
        lines = run_ptb_tokenizer(self.java, sentences) if sentences else []
        tokenized: Captions = {}
        for image_id, line in zip(image_ids, lines):
            words = [
                w for w in line.rstrip().split(' ')
                if w not in ptbtokenizer.PUNCTUATIONS
            ]
            tokenized.setdefault(image_id, []).append(' '.join(words))
        return tokenized


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
    content = mmengine.load(ann_file)
    if not isinstance(content, dict) or not all(
            isinstance(content.get(k), list)
            for k in ('images', 'annotations')):
        raise ValueError(f'{ann_file} must be a COCO caption file: a dict '
                         'with "images" and "annotations" lists.')
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


def bleu_scores(gts: Captions, res: Captions) -> Dict[str, float]:
    """BLEU-1..4 (corpus level, 'closest' reference length).

    Args:
        gts (dict): Tokenized references per image id.
        res (dict): One tokenized candidate per image id.

    Returns:
        dict: ``Bleu_1`` .. ``Bleu_4`` in [0, 1].
    """
    scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {f'Bleu_{n}': float(s) for n, s in enumerate(scores, start=1)}


def meteor_score(gts: Captions, res: Captions) -> Dict[str, float]:
    """METEOR 1.5, running (and then stopping) its Java process.

    Args:
        gts (dict): Tokenized references per image id.
        res (dict): One tokenized candidate per image id.

    Returns:
        dict: ``METEOR`` in [0, 1].
    """
    meteor = Meteor()
    try:
        score, _ = meteor.compute_score(gts, res)
    finally:
        with meteor.lock:
            meteor.meteor_p.stdin.close()
            meteor.meteor_p.kill()
            meteor.meteor_p.wait()
    return {'METEOR': float(score)}


def rouge_score(gts: Captions, res: Captions) -> Dict[str, float]:
    """ROUGE-L (beta 1.2).

    Args:
        gts (dict): Tokenized references per image id.
        res (dict): One tokenized candidate per image id.

    Returns:
        dict: ``ROUGE_L`` in [0, 1].
    """
    score, _ = Rouge().compute_score(gts, res)
    return {'ROUGE_L': float(score)}


def cider_score(gts: Captions, res: Captions) -> Dict[str, float]:
    """CIDEr-D (n = 1..4, sigma 6), document frequencies from ``gts``.

    Args:
        gts (dict): Tokenized references per image id.
        res (dict): One tokenized candidate per image id.

    Returns:
        dict: ``CIDEr`` (CIDEr-D, about 0..10).
    """
    score, _ = Cider().compute_score(gts, res)
    return {'CIDEr': float(score)}


_SCORERS: Dict[str, Callable[[Captions, Captions], Dict[str, float]]] = {
    'BLEU': bleu_scores,
    'METEOR': meteor_score,
    'ROUGE_L': rouge_score,
    'CIDEr': cider_score,
}


def _check_metric_names(metrics: Sequence[str]) -> List[str]:
    """Validate the requested metric names.

    Args:
        metrics (Sequence[str]): Names from :data:`SUPPORTED_METRICS`.

    Returns:
        list[str]: The names, duplicates removed, order kept.

    Raises:
        NotImplementedError: For 'SPICE'.
        ValueError: For an unknown name or an empty list.
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    names = list(dict.fromkeys(metrics))
    if 'SPICE' in names:
        raise NotImplementedError(
            'SPICE is not supported by PCMCaptionMetric yet (pycocoevalcap\'s '
            'SPICE downloads Stanford CoreNLP at first use and writes into '
            f'its package folder). Use metrics from {SUPPORTED_METRICS}.')
    unknown = [m for m in names if m not in SUPPORTED_METRICS]
    if unknown or not names:
        raise ValueError(f'Unknown caption metrics {unknown}; choose from '
                         f'{SUPPORTED_METRICS}.')
    return names


@METRICS.register_module()
class PCMCaptionMetric(BaseMetric):
    """COCO caption metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D.

    Scores are pycocoevalcap's (the COCO caption evaluation code), scaled by
    100. Unlike mmpretrain's ``COCOCaption`` it keeps image ids as given,
    never runs SPICE, and writes nothing outside a private temp directory.

    Args:
        ann_file (str): COCO-format caption ground truth: ``{"images":
            [{"id": ...}], "annotations": [{"image_id": ..., "caption":
            ...}]}``. Ids may be str or int and are never cast.
        metrics (Sequence[str]): Any of 'BLEU', 'METEOR', 'ROUGE_L', 'CIDEr'.
            Defaults to ('BLEU', 'METEOR', 'ROUGE_L', 'CIDEr').
        collect_device (str): Device for collecting results across ranks,
            'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names. Defaults to
            'coco-caption'.

    Raises:
        RuntimeError: If ``java`` is not on PATH.
        NotImplementedError: If 'SPICE' is requested.
        ValueError: For unknown metrics or an invalid ``ann_file``.
    """
    default_prefix: Optional[str] = 'coco-caption'

    def __init__(self,
                 ann_file: str,
                 metrics: Sequence[str] = SUPPORTED_METRICS,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = 'coco-caption') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.metrics = _check_metric_names(metrics)
        self.java = find_java()
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
            TypeError: If ``pred_caption`` is not a str.
        """
        for sample in data_samples:
            if isinstance(sample, BaseDataElement):
                sample = sample.to_dict()
            missing = [
                k for k in ('image_id', 'pred_caption') if k not in sample
            ]
            if missing:
                raise KeyError(
                    f'PCMCaptionMetric needs {missing} in each output data '
                    f'sample; got keys {sorted(sample)}.')
            if not isinstance(sample['pred_caption'], str):
                raise TypeError(
                    'pred_caption must be a str, got '
                    f'{type(sample["pred_caption"]).__name__} for image id '
                    f'{sample["image_id"]!r}.')
            self.results.append(
                dict(
                    image_id=sample['image_id'],
                    caption=sample['pred_caption']))

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
        if not results:
            raise ValueError('PCMCaptionMetric got no predictions.')
        predictions: Dict[Hashable, str] = {}
        for item in results:
            image_id = item['image_id']
            if image_id in predictions:
                raise ValueError(
                    f'Image id {image_id!r} was predicted more than once; '
                    'the evaluated dataset must yield each image once.')
            predictions[image_id] = item['caption']
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
        return predictions

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Tokenize and score the predictions against their references.

        Only images with a prediction are scored (as ``COCOEvalCap`` does).

        Args:
            results (list[dict]): Items stored by :meth:`process`, from all
                ranks.

        Returns:
            dict: ``Bleu_1``..``Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``
            (those requested), each x100.
        """
        predictions = self._predictions(results)
        tokenizer = IsolatedPTBTokenizer(self.java)
        gts = tokenizer.tokenize({
            i: [{'caption': c} for c in self.references[i]]
            for i in predictions
        })
        res = tokenizer.tokenize(
            {i: [{'caption': c}] for i, c in predictions.items()})
        scores: Dict[str, float] = {}
        for name in self.metrics:
            scores.update(_SCORERS[name](gts, res))
        return {name: 100.0 * value for name, value in scores.items()}
