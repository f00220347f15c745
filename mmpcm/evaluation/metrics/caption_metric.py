"""COCO caption metrics (BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE), no writes.

Wraps pycocoevalcap the way ``COCOEvalCap`` uses it, with these differences:

* pycocoevalcap's ``PTBTokenizer`` writes its input into a temporary file in
  the installed package folder and runs Java there;
  :class:`IsolatedPTBTokenizer` writes it into a private
  ``tempfile.TemporaryDirectory`` instead (the jar is only read), and checks
  Java's exit status and output length.
* Image ids are used exactly as given (str or int; never cast), and unknown,
  duplicate or missing ids are errors.
* Java is looked up when the metric is built, before any model work.
* SPICE runs only when Stanford CoreNLP 3.6.0 is already there (it is never
  downloaded): see :func:`find_corenlp_jars`. It runs in a private temporary
  directory (working directory, Java's ``java.io.tmpdir``, input file) and
  uses no parse cache unless one is named, so nothing is written into the
  installed package. Its score is read from the scorer's summary, see
  :func:`run_spice`.
"""
import json
import numbers
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from typing import (Any, Callable, Dict, Hashable, List, NamedTuple, Optional,
                    Sequence, Union)

from mmengine.dist import is_main_process
from mmengine.evaluator import BaseMetric
from mmengine.structures import BaseDataElement
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.spice import spice as pycocoevalcap_spice
from pycocoevalcap.tokenizer import ptbtokenizer
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from mmpcm.registry import METRICS
from mmpcm.utils.cli import InputError
from mmpcm.utils.text_io import read_text

Captions = Dict[Hashable, List[str]]

SUPPORTED_METRICS = ('BLEU', 'METEOR', 'ROUGE_L', 'CIDEr', 'SPICE')
# What ``metrics=None`` means: these, plus SPICE when CoreNLP is present.
DEFAULT_METRICS = ('BLEU', 'METEOR', 'ROUGE_L', 'CIDEr')
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
    try:
        content = json.loads(read_text(ann_file))
    except json.JSONDecodeError as error:
        raise InputError(ann_file, f'not valid JSON ({error})',
                         'fix the file, or pass the references written by '
                         'tools/data/prepare_corpus.py') from None
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


class FewImagesCIDErWarning(UserWarning):
    """CIDEr of fewer than two images, which is 0 whatever the captions."""


class PartialTestSetWarning(UserWarning):
    """Reference images without a prediction: the scores cover fewer."""


def cider_score(gts: Captions, res: Captions) -> Dict[str, float]:
    """CIDEr-D (n = 1..4, sigma 6), document frequencies from ``gts``.

    As pycocoevalcap computes it (Vedantam et al., CVPR 2015), the inverse
    document frequency of an n-gram is ``log(N / df)`` over the ``N`` scored
    images' references: with one image every idf is 0, so CIDEr is 0 by
    construction (a :class:`FewImagesCIDErWarning` says so).

    Args:
        gts (dict): Tokenized references per image id.
        res (dict): One tokenized candidate per image id.

    Returns:
        dict: ``CIDEr`` (CIDEr-D, about 0..10).
    """
    if len(res) < 2:
        warnings.warn(
            f'CIDEr of {len(res)} scored image(s) is 0 by construction: its '
            'document frequencies come from the references of the scored '
            'images; score at least two images (a whole split) for a '
            'meaningful CIDEr.', FewImagesCIDErWarning, stacklevel=2)
    score, _ = Cider().compute_score(gts, res)
    return {'CIDEr': float(score)}


# --------------------------------------------------------------------------
# SPICE
# --------------------------------------------------------------------------
SPICE_DIR = os.path.dirname(os.path.abspath(pycocoevalcap_spice.__file__))
SPICE_JAR = os.path.join(SPICE_DIR, pycocoevalcap_spice.SPICE_JAR)
SPICE_MAIN_CLASS = 'edu.anu.spice.SpiceScorer'
CORENLP_JARS = ('stanford-corenlp-3.6.0.jar',
                'stanford-corenlp-3.6.0-models.jar')
CORENLP_URL = ('https://nlp.stanford.edu/software/'
               'stanford-corenlp-full-2015-12-09.zip')
# FST (SPICE's parse cache) reflects into java.base; allowed on Java >= 9,
# ignored by Java 8 thanks to IgnoreUnrecognizedVMOptions.
_JAVA_OPENS = tuple(
    f'--add-opens=java.base/{pkg}=ALL-UNNAMED'
    for pkg in ('java.lang', 'java.util', 'java.math', 'java.net',
                'java.text', 'java.io', 'java.util.concurrent'))
_SPICE_F_SCORE = re.compile(r'f-score:\s*(\S+)\s*\(SPICE metric\)')
_spice_warning_issued = False


class SpiceUnavailableWarning(UserWarning):
    """SPICE is skipped because Stanford CoreNLP 3.6.0 is not installed."""


def default_corenlp_dir() -> str:
    """The folder pycocoevalcap's SPICE expects CoreNLP in (``spice/lib``)."""
    return os.path.join(SPICE_DIR, 'lib')


def find_corenlp_jars(corenlp_dir: Optional[str] = None
                      ) -> Optional[List[str]]:
    """Locate the two Stanford CoreNLP 3.6.0 jars SPICE needs.

    Args:
        corenlp_dir (str, optional): Folder holding
            ``stanford-corenlp-3.6.0.jar`` and
            ``stanford-corenlp-3.6.0-models.jar``. Defaults to None
            (pycocoevalcap's ``spice/lib``).

    Returns:
        list[str] | None: Both jar paths, or None if either is missing.
    """
    folder = corenlp_dir or default_corenlp_dir()
    jars = [os.path.join(folder, name) for name in CORENLP_JARS]
    return jars if all(os.path.isfile(jar) for jar in jars) else None


def corenlp_missing_message(corenlp_dir: Optional[str] = None) -> str:
    """How to make SPICE available: which jars, from where, to where.

    Args:
        corenlp_dir (str, optional): The folder that was searched.
            Defaults to None (pycocoevalcap's ``spice/lib``).

    Returns:
        str: The explanation.
    """
    folder = corenlp_dir or default_corenlp_dir()
    return (
        f'SPICE needs Stanford CoreNLP 3.6.0: {" and ".join(CORENLP_JARS)} '
        f'in {folder}, and they are not there (pycocoevalcap would download '
        'them at first use; mmpcm never downloads). To enable SPICE, take '
        f'both jars from {CORENLP_URL} and copy them into {folder}, or put '
        'them in a folder of your choice and pass it as the metric\'s '
        'corenlp_dir.')


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


def spice_command(java: str, corenlp_jars: Sequence[str], input_file: str,
                  tmp_dir: str, max_memory: str = '8G',
                  cache_dir: Optional[str] = None) -> List[str]:
    """The Java command line that runs SPICE on ``input_file``.

    The class path names the SPICE jar and the CoreNLP jars explicitly (the
    SPICE jar's manifest adds its other libraries from pycocoevalcap's
    ``spice/lib``); Java's temporary files go to ``tmp_dir``; the number
    format is fixed to English so the summary parses.

    Args:
        java (str): Path of the ``java`` executable.
        corenlp_jars (Sequence[str]): The two CoreNLP jars.
        input_file (str): SPICE's JSON input.
        tmp_dir (str): Private temporary directory.
        max_memory (str): Java heap limit (``-Xmx``). Defaults to '8G'.
        cache_dir (str, optional): Folder for SPICE's parse cache. Defaults
            to None (no cache).

    Returns:
        list[str]: The command.
    """
    cmd = [
        java, f'-Xmx{max_memory}', f'-Djava.io.tmpdir={tmp_dir}',
        '-Duser.language=en', '-Duser.country=US',
        '-XX:+IgnoreUnrecognizedVMOptions', *_JAVA_OPENS, '-cp',
        os.pathsep.join([SPICE_JAR, *corenlp_jars]), SPICE_MAIN_CLASS,
        input_file
    ]
    if cache_dir is not None:
        cmd += ['-cache', cache_dir]
    return cmd


def parse_spice_summary(stdout: str) -> float:
    """Read the SPICE F-score from ``SpiceScorer``'s printed summary.

    Args:
        stdout (str): What SPICE printed (without ``-silent``).

    Returns:
        float: The "All tuples" F-score in [0, 1] (NaN if SPICE printed NaN).

    Raises:
        RuntimeError: If the summary has no F-score line.
    """
    match = _SPICE_F_SCORE.search(stdout)
    if match is None:
        raise RuntimeError('SPICE printed no "f-score: ... (SPICE metric)" '
                           f'line; its output ended with: {stdout[-2000:]}')
    return float(match.group(1))


def run_spice(java: str, gts: Captions, res: Captions,
              corenlp_jars: Sequence[str], max_memory: str = '8G',
              cache_dir: Optional[str] = None) -> float:
    """SPICE of tokenized candidates against tokenized references.

    Same input as pycocoevalcap's ``Spice.compute_score`` (which tokenized
    captions ``COCOEvalCap`` passes), run without pycocoevalcap's side
    effects: the input file, Java's working directory and ``java.io.tmpdir``
    are a private temporary directory, removed afterwards. Images are
    numbered 0..n-1 in SPICE's input, so ids of any type work.

    The score is read from the scorer's summary (3 decimals, the macro
    average of the per-image F-scores, skipping images whose F-score is
    NaN) rather than from its ``-out`` JSON, because SPICE 1.0 pretty-prints
    that JSON with Java's JavaScript engine, which Java >= 15 no longer has.

    Args:
        java (str): Path of the ``java`` executable.
        gts (dict): Tokenized references per image id.
        res (dict): One tokenized candidate per image id.
        corenlp_jars (Sequence[str]): The two CoreNLP 3.6.0 jars.
        max_memory (str): Java heap limit. Defaults to '8G'.
        cache_dir (str, optional): SPICE's parse cache folder. Defaults to
            None (no cache).

    Returns:
        float: SPICE in [0, 1].

    Raises:
        RuntimeError: If Java fails or prints no score.
    """
    ids = list(res)
    items = [
        dict(image_id=index, test=res[i][0], refs=gts[i])
        for index, i in enumerate(ids)
    ]
    with tempfile.TemporaryDirectory(prefix='mmpcm_spice_') as tmp_dir:
        input_file = os.path.join(tmp_dir, 'spice_input.json')
        with open(input_file, 'w', encoding='utf-8') as file:
            json.dump(items, file)
        proc = subprocess.run(
            spice_command(java, corenlp_jars, input_file, tmp_dir,
                          max_memory, cache_dir),
            cwd=tmp_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f'SPICE (java) failed with exit status {proc.returncode}: '
            f'{proc.stderr.decode(errors="replace")[-3000:]}')
    return parse_spice_summary(proc.stdout.decode('utf-8', errors='replace'))


_SCORERS: Dict[str, Callable[[Captions, Captions], Dict[str, float]]] = {
    'BLEU': bleu_scores,
    'METEOR': meteor_score,
    'ROUGE_L': rouge_score,
    'CIDEr': cider_score,
}


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
                    image_id=plain_image_id(sample['image_id']),
                    caption=str(sample['pred_caption'])))

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
        tokenizer = IsolatedPTBTokenizer(self.java)
        gts = tokenizer.tokenize({
            i: [{'caption': c} for c in self.references[i]]
            for i in predictions
        })
        res = tokenizer.tokenize(
            {i: [{'caption': c}] for i, c in predictions.items()})
        scores: Dict[str, float] = {}
        for name in self.metrics:
            if name == 'SPICE':
                scores['SPICE'] = run_spice(
                    self.java, gts, res, self.spice_jars,
                    self.spice_max_memory, self.spice_cache_dir)
            else:
                scores.update(_SCORERS[name](gts, res))
        return {name: 100.0 * value for name, value in scores.items()}
