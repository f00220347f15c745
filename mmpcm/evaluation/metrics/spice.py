"""SPICE: run in a private folder, without downloading Stanford CoreNLP.

SPICE runs only when the CoreNLP 3.6.0 jars are already there
(:func:`find_corenlp_jars`); its score is read from the scorer's summary
(:func:`run_spice`). Details: ``docs/evaluation.md``.
"""
import json
import os
import re
import tempfile
from typing import Any, List, Optional, Sequence

from .ptb_tokenizer import Captions, run_java

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

__all__ = [
    'SPICE_MAIN_CLASS', 'CORENLP_JARS', 'CORENLP_URL',
    'SpiceUnavailableWarning', 'spice_dir', 'spice_jar',
    'default_corenlp_dir', 'find_corenlp_jars', 'corenlp_missing_message',
    'spice_command', 'parse_spice_summary', 'run_spice'
]


def spice_dir() -> str:
    """pycocoevalcap's ``spice`` folder (its jar and ``lib``).

    Returns:
        str: The absolute folder.
    """
    from pycocoevalcap.spice import spice as pycocoevalcap_spice
    return os.path.dirname(os.path.abspath(pycocoevalcap_spice.__file__))


def spice_jar() -> str:
    """The SPICE 1.0 jar pycocoevalcap ships.

    Returns:
        str: Its absolute path (in :func:`spice_dir`).
    """
    from pycocoevalcap.spice import spice as pycocoevalcap_spice
    return os.path.join(spice_dir(), pycocoevalcap_spice.SPICE_JAR)


def __getattr__(name: str) -> Any:
    """``SPICE_DIR`` and ``SPICE_JAR``: :func:`spice_dir` and
    :func:`spice_jar`, looked up when first asked for."""
    if name == 'SPICE_DIR':
        return spice_dir()
    if name == 'SPICE_JAR':
        return spice_jar()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


class SpiceUnavailableWarning(UserWarning):
    """SPICE is skipped because Stanford CoreNLP 3.6.0 is not installed."""


def default_corenlp_dir() -> str:
    """The folder pycocoevalcap's SPICE expects CoreNLP in (``spice/lib``)."""
    return os.path.join(spice_dir(), 'lib')


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
        os.pathsep.join([spice_jar(), *corenlp_jars]), SPICE_MAIN_CLASS,
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
        stdout = run_java(
            spice_command(java, corenlp_jars, input_file, tmp_dir,
                          max_memory, cache_dir), tmp_dir, 'SPICE',
            keep_last=3000)
    return parse_spice_summary(stdout.decode('utf-8', errors='replace'))
