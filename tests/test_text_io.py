"""Users' text files in every encoding mmpcm meets: one decoding rule.

Every reader (caption corpora, the generation caption file, image lists,
Karpathy JSON, noun lists and prompt templates) is fed the same files, written in UTF-8 with a byte-order
mark, UTF-16 LE/BE with and without one and UTF-32 with one: each must give
the captions a UTF-8 file gives, and none may hold a NUL character.
"""
import json

import pytest

from mmpcm.preprocessing.concepts import NounList, read_templates
from mmpcm.preprocessing.corpus import (read_image_list, read_karpathy,
                                        read_text_corpus)
from mmpcm.preprocessing.extraction import items_from_list
from mmpcm.preprocessing.generation import read_caption_file
from mmpcm.utils.cli import InputError, error_line
from mmpcm.utils.text_io import (decode_text, detect_encoding, read_text,
                                 read_text_lines)

CAPTION_TEXT = 'A dog on a sofa.\r\ncafé table\n\n  two  cats \n日本の猫\n'
CAPTIONS = ['A dog on a sofa.', 'café table', 'two cats', '日本の猫']
ENCODINGS = {  # name -> (codec, byte-order mark)
    'utf-8': ('utf-8', b''),
    'utf-8-sig': ('utf-8', b'\xef\xbb\xbf'),
    'utf-16-le-bom': ('utf-16-le', b'\xff\xfe'),
    'utf-16-be-bom': ('utf-16-be', b'\xfe\xff'),
    'utf-16-le-no-bom': ('utf-16-le', b''),
    'utf-16-be-no-bom': ('utf-16-be', b''),
    'utf-32-le-bom': ('utf-32-le', b'\xff\xfe\x00\x00'),
    'utf-32-be-bom': ('utf-32-be', b'\x00\x00\xfe\xff'),
}


def _encode(text: str, name: str) -> bytes:
    codec, bom = ENCODINGS[name]
    return bom + text.encode(codec)


@pytest.mark.parametrize('name', sorted(ENCODINGS))
def test_every_caption_reader_decodes_every_encoding(tmp_path, name):
    path = tmp_path / 'captions.txt'
    path.write_bytes(_encode(CAPTION_TEXT, name))
    corpus = read_text_corpus(path)
    assert corpus.captions == CAPTIONS
    assert [s.lineno for s in corpus.skipped] == [3]  # the empty line
    items = read_caption_file(path).items
    assert [it.caption for it in items] == CAPTIONS
    assert [it.index for it in items] == [0, 1, 3, 4]
    assert not any('\x00' in c for c in corpus.captions)


@pytest.mark.parametrize('name', sorted(ENCODINGS))
def test_lists_and_json_decode_every_encoding(tmp_path, name):
    paths = tmp_path / 'images.txt'
    paths.write_bytes(_encode('a/COCO_1.jpg\r\n\nb/COCO_2.jpg\n', name))
    assert [(it.image_id, it.relpath) for it in items_from_list(paths)] == [
        ('COCO_1', 'a/COCO_1.jpg'), ('COCO_2', 'b/COCO_2.jpg')]
    typed = tmp_path / 'images.jsonl'
    typed.write_bytes(_encode(
        '{"image_id": 1, "file_name": "a.jpg"}\n'
        '{"image_id": "x", "file_name": "b.jpg"}\n', name))
    assert [(e.image_id, e.file_name) for e in read_image_list(typed)] == [
        (1, 'a.jpg'), ('x', 'b.jpg')]
    karpathy = tmp_path / 'dataset.json'
    karpathy.write_bytes(_encode(json.dumps({'images': [{
        'filename': '1.jpg', 'split': 'train',
        'sentences': [{'raw': c} for c in CAPTIONS]}]}, ensure_ascii=False),
        name))
    assert read_karpathy(karpathy).train_captions() == CAPTIONS
    nouns = tmp_path / 'nouns.txt'
    nouns.write_bytes(_encode('# nouns\r\ndog dogs\ncafé\n', name))
    assert NounList.load(nouns).nouns == ('dog', 'café')
    templates = tmp_path / 'templates.txt'
    templates.write_bytes(_encode('a photo of a {}.\r\n# x\n{} 日本\n',
                                  name))
    assert read_templates(templates) == ('a photo of a {}.', '{} 日本')


def test_detected_encodings():
    assert detect_encoding(b'abc', 'f') == ('utf-8', 0, False)
    assert detect_encoding(b'\xef\xbb\xbfabc', 'f') == ('utf-8', 3, False)
    assert detect_encoding(_encode('ab', 'utf-32-le-bom'), 'f') == (
        'utf-32-le', 4, False)  # not UTF-16-LE, whose mark it starts with
    assert detect_encoding('ab\n'.encode('utf-16-le'), 'f') == (
        'utf-16-le', 0, True)
    assert detect_encoding('ab\n'.encode('utf-16-be'), 'f') == (
        'utf-16-be', 0, True)


def _one_line_error(call, *args) -> str:
    with pytest.raises(InputError) as err:
        call(*args)
    line, user_error = error_line(err.value)
    assert user_error and '\n' not in line
    return line


def test_refused_files_get_one_line(tmp_path):
    path = tmp_path / 'captions.txt'
    # UTF-32 without a byte-order mark: NULs on both parities
    path.write_bytes('a dog\nthe cat\n'.encode('utf-32-le'))
    line = _one_line_error(read_text_corpus, path)
    assert line.startswith(f'{path}: not text: 42 of its first 56 bytes are '
                           'NUL')
    assert line.endswith('; save it as UTF-8 text (or UTF-16/UTF-32 with a '
                         'byte-order mark)')
    for call in (read_caption_file, read_text, items_from_list):
        _one_line_error(call, path)
    # UTF-16 cut in the middle of a character
    path.write_bytes(b'\xff\xfe' + 'a dog\n'.encode('utf-16-le') + b'a')
    assert _one_line_error(read_text_corpus, path) == (
        f'{path}: not valid UTF-16-LE (byte-order mark) text (byte 14: '
        'truncated data); save it as UTF-8 text')
    # strict readers name the line of a NUL or of a non-UTF-8 byte
    path.write_bytes(b'a.jpg\nb\x00.jpg\n')
    assert _one_line_error(read_text, path) == (
        f'{path}: line 2 contains a NUL byte (binary data or mixed '
        'encodings); remove it, or save it as UTF-8 text')
    path.write_bytes(b'a.jpg\nb.jpg\ncaf\xe9.jpg\n')
    assert _one_line_error(items_from_list, path).startswith(
        f'{path}: not valid UTF-8 text (line 3, byte 15: invalid '
        'continuation byte)')


def test_a_stray_nul_skips_its_line_only(tmp_path):
    path = tmp_path / 'captions.txt'
    path.write_bytes(b'a dog\na c\x00t\n\xff\na bird')
    lines = read_text_lines(path)
    assert [(ln.lineno, ln.text, ln.problem) for ln in lines] == [
        (1, 'a dog', None), (2, None, 'contains a NUL byte'),
        (3, None, 'not UTF-8 (invalid start byte at byte 0)'),
        (4, 'a bird', None)]
    corpus = read_text_corpus(path)
    assert corpus.captions == ['a dog', 'a bird']
    assert corpus.num_lines == 4 and corpus.num_invalid == 2
    assert 'skipped 0 empty and 2 non-UTF-8 or NUL-byte line(s)' in (
        corpus.report())
    assert f'{path}:2: contains a NUL byte' in corpus.report()
    assert read_text_lines(tmp_path / 'captions.txt') == lines
    (tmp_path / 'empty.txt').write_bytes(b'')
    assert read_text_lines(tmp_path / 'empty.txt') == []


def test_json_nul_escape_is_refused(tmp_path):
    path = tmp_path / 'dataset.json'
    path.write_text('{"images": [{"filename": "1.jpg", "split": "train",\n'
                    '"sentences": [{"raw": "a d\\u0000g"}]}]}')
    assert _one_line_error(read_karpathy, path) == (
        f'{path}: line 2 holds a NUL character (a \\u0000 escape); remove '
        'it')
    # an escaped backslash before 'u0000' is text, not a NUL
    path.write_text('{"images": [{"filename": "1.jpg", "split": "train", '
                    '"sentences": [{"raw": "a \\\\u0000 b"}]}]}')
    assert read_karpathy(path).train_captions() == ['a \\u0000 b']


def test_decode_text_drops_the_mark():
    assert decode_text(b'\xef\xbb\xbf{"a": 1}', 'f.json') == '{"a": 1}'
    assert decode_text(_encode('x', 'utf-16-be-bom'), 'f') == 'x'
