"""Stanford's PTB tokenizer as pycocoevalcap runs it, in a private folder.

pycocoevalcap's ``PTBTokenizer`` writes its input next to its jar (in the
installed package); :class:`IsolatedPTBTokenizer` writes it into a private
temporary directory and checks Java's exit status and output length
(``docs/evaluation.md``).
"""
import os
import shutil
import subprocess
import tempfile
from typing import Dict, Hashable, List, Optional, Sequence

from pycocoevalcap.tokenizer import ptbtokenizer
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

Captions = Dict[Hashable, List[str]]
"""Captions per image id: ``{image_id: [caption, ...]}``."""

_PTB_JAR = os.path.join(
    os.path.dirname(os.path.abspath(ptbtokenizer.__file__)),
    ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
_PTB_CLASS = 'edu.stanford.nlp.process.PTBTokenizer'

__all__ = ['Captions', 'find_java', 'run_ptb_tokenizer',
           'IsolatedPTBTokenizer']


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


def run_java(command: List[str], cwd: str, name: str,
             keep_last: Optional[int] = None) -> bytes:
    """Run a java command (no stdin) and return its standard output.

    Args:
        command (list[str]): The command, java first.
        cwd (str): Its working folder.
        name (str): What runs, for the error (``'SPICE'``).
        keep_last (int, optional): Keep only the last characters of its
            standard error in the error. Defaults to None (all).

    Returns:
        bytes: Its standard output.

    Raises:
        RuntimeError: If it exits non-zero, with its standard error.
    """
    proc = subprocess.run(command, cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors='replace')
        raise RuntimeError(
            f'{name} (java) failed with exit status {proc.returncode}: '
            f'{err[-keep_last:] if keep_last else err}')
    return proc.stdout


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
        stdout = run_java(
            [java, '-cp', _PTB_JAR, _PTB_CLASS, '-preserveLines',
             '-lowerCase', path], tmp_dir, 'The PTB tokenizer')
    lines = stdout.decode('utf-8').split('\n')
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
