"""Users' text files, decoded by one rule: byte-order marks, UTF-16, NULs.

Every mmpcm reader of a text file a user supplies (corpora, image lists,
JSON) decodes it here; the rules: ``docs/inputs_and_errors.md``.
"""
import json
import os
from typing import Any, List, NamedTuple, Optional, Union

from .cli import InputError

PathLike = Union[str, 'os.PathLike[str]']

__all__ = ['TextEncoding', 'TextLine', 'detect_encoding', 'decode_text',
           'read_text', 'read_text_lines']

# Longest first: the UTF-32-LE mark starts with the UTF-16-LE one.
_BOMS = ((b'\x00\x00\xfe\xff', 'utf-32-be'), (b'\xff\xfe\x00\x00',
                                              'utf-32-le'),
         (b'\xef\xbb\xbf', 'utf-8'), (b'\xfe\xff', 'utf-16-be'),
         (b'\xff\xfe', 'utf-16-le'))
_SAMPLE_BYTES = 1 << 20
_UTF16_MIN_NUL_SHARE = 0.25
_BINARY_MIN_NUL_SHARE = 0.10
_REMEDY = 'save it as UTF-8 text'


class TextEncoding(NamedTuple):
    """How a file is decoded.

    Attributes:
        codec (str): Python codec name (``'utf-8'``, ``'utf-16-le'``...).
        bom (int): Bytes of byte-order mark at the start (dropped).
        guessed (bool): True for UTF-16 recognised by its NUL bytes (no
            byte-order mark).
    """
    codec: str
    bom: int = 0
    guessed: bool = False

    def describe(self) -> str:
        """``'UTF-16-LE (byte-order mark)'`` and the like, for messages."""
        how = ('no byte-order mark, recognised by its NUL bytes'
               if self.guessed else 'byte-order mark' if self.bom else '')
        name = self.codec.upper()
        return f'{name} ({how})' if how else name


class TextLine(NamedTuple):
    """One line of a file read by :func:`read_text_lines`.

    Attributes:
        lineno (int): 1-based line number.
        text (str, optional): The line without its ``'\\n'`` (a ``'\\r'``
            is kept), or None when it could not be read.
        problem (str, optional): Why ``text`` is None (``'not UTF-8
            (...)'``, ``'contains a NUL byte'``); None for a good line.
    """
    lineno: int
    text: Optional[str]
    problem: Optional[str] = None


def _utf16_without_bom(sample: bytes) -> Optional[str]:
    """``'utf-16-le'``/``'utf-16-be'`` when the NULs say so, else None."""
    even_nuls = sample[0::2].count(0)
    odd_nuls = sample[1::2].count(0)
    half = len(sample) / 2
    if even_nuls == 0 and odd_nuls >= _UTF16_MIN_NUL_SHARE * half:
        return 'utf-16-le'  # 'a\0': the high byte of Latin text is 0
    if odd_nuls == 0 and even_nuls >= _UTF16_MIN_NUL_SHARE * half:
        return 'utf-16-be'
    return None


def detect_encoding(data: bytes, path: PathLike) -> TextEncoding:
    """The encoding of a file's bytes (rules in the module docstring).

    Args:
        data (bytes): The file's content (or at least its first MiB).
        path (str | PathLike): The file, for the error message.

    Returns:
        TextEncoding: Codec and byte-order mark length.

    Raises:
        InputError: If the bytes have many NULs but are not UTF-16 (UTF-32
            without a byte-order mark, or not text at all).
    """
    for mark, codec in _BOMS:
        if data.startswith(mark):
            return TextEncoding(codec, len(mark))
    sample = data[:_SAMPLE_BYTES]
    nuls = sample.count(0)
    if not nuls:
        return TextEncoding('utf-8')
    codec = _utf16_without_bom(sample)
    if codec is not None:
        return TextEncoding(codec, 0, guessed=True)
    if nuls >= _BINARY_MIN_NUL_SHARE * len(sample):
        raise InputError(
            path, f'not text: {nuls} of its first {len(sample)} bytes are '
            'NUL (UTF-32 or UTF-16 without a byte-order mark, or a binary '
            'file?)', f'{_REMEDY} (or UTF-16/UTF-32 with a byte-order mark)')
    return TextEncoding('utf-8')  # a stray NUL: its line is reported


def _decode_whole(data: bytes, encoding: TextEncoding,
                  path: PathLike) -> str:
    """Decode all of ``data`` (after the mark) or raise an InputError."""
    body = data[encoding.bom:]
    try:
        return body.decode(encoding.codec)
    except UnicodeDecodeError as err:
        where = ''
        if encoding.codec == 'utf-8':
            lineno = body.count(b'\n', 0, err.start) + 1
            where = f'line {lineno}, '
        raise InputError(
            path, f'not valid {encoding.describe()} text ({where}byte '
            f'{err.start + encoding.bom}: {err.reason})', _REMEDY) from None


def _nul_line_error(path: PathLike, text: str) -> InputError:
    lineno = text.count('\n', 0, text.index('\x00')) + 1
    return InputError(path, f'line {lineno} contains a NUL byte (binary '
                      'data or mixed encodings)', f'remove it, or {_REMEDY}')


def decode_text(data: bytes, path: PathLike) -> str:
    """Decode a whole file's bytes: every character must decode.

    Args:
        data (bytes): The file's content.
        path (str | PathLike): The file, for error messages.

    Returns:
        str: The text, without byte-order mark and without NUL characters.

    Raises:
        InputError: If the bytes do not decode in their encoding, hold a
            NUL character, or are not text (:func:`detect_encoding`).
    """
    encoding = detect_encoding(data, path)
    text = _decode_whole(data, encoding, path)
    if '\x00' in text:
        raise _nul_line_error(path, text)
    return text


def read_text(path: PathLike) -> str:
    """Read a whole text file (JSON, a list of paths) strictly.

    Args:
        path (str | PathLike): The file.

    Returns:
        str: Its text (:func:`decode_text`).

    Raises:
        OSError: If the file cannot be read (``FileNotFoundError``...).
        InputError: If it is not text in a supported encoding, or holds a
            NUL character.
    """
    with open(path, 'rb') as f:
        return decode_text(f.read(), path)


def read_json(path: PathLike, remedy: str) -> Any:
    """Read a whole JSON file (:func:`read_text`, then ``json.loads``).

    Args:
        path (str | PathLike): The file.
        remedy (str): What to do when it is not JSON, for the error.

    Returns:
        Any: The parsed value.

    Raises:
        OSError: If the file cannot be read.
        InputError: If it is not text (:func:`read_text`) or not valid
            JSON (naming the line).
    """
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise InputError(path, f'not valid JSON ({error.msg}, line '
                         f'{error.lineno})', remedy) from None


def read_text_lines(path: PathLike) -> List[TextLine]:
    """Read a text file line by line; bad lines are reported, not fatal.

    Lines end at ``'\\n'``; a final line without one counts, an empty file
    has no lines. In a UTF-8 file each line is decoded on its own, so a
    line in another 8-bit encoding becomes a :class:`TextLine` with a
    ``problem`` and the others are kept. A line holding a NUL character
    always has a problem, never text.

    Args:
        path (str | PathLike): The file.

    Returns:
        list[TextLine]: Every line, in order.

    Raises:
        OSError: If the file cannot be read.
        InputError: If it is UTF-16/UTF-32 that does not decode, or not
            text (:func:`detect_encoding`).
    """
    with open(path, 'rb') as f:
        data = f.read()
    encoding = detect_encoding(data, path)
    if encoding.codec == 'utf-8':
        chunks = data[encoding.bom:].split(b'\n')
    else:
        chunks = _decode_whole(data, encoding, path).split('\n')
    if chunks and not chunks[-1]:
        chunks.pop()  # after the final '\n'
    lines = []
    for lineno, chunk in enumerate(chunks, start=1):
        if isinstance(chunk, bytes):
            try:
                chunk = chunk.decode('utf-8')
            except UnicodeDecodeError as err:
                lines.append(TextLine(lineno, None, f'not UTF-8 ({err.reason}'
                                      f' at byte {err.start})'))
                continue
        if '\x00' in chunk:
            lines.append(TextLine(lineno, None, 'contains a NUL byte'))
        else:
            lines.append(TextLine(lineno, chunk))
    return lines
