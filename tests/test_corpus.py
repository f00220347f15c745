"""Corpus preparation: Karpathy files and text corpora in, every output out."""
import importlib.util
import json
import os.path as osp

import pytest

from mmpcm.evaluation.metrics.caption_metric import load_references
from mmpcm.text.vocab import WordVocabulary
from mmpcm.preprocessing.corpus import (ImageEntry, SkippedLine,
                                        load_corpus, prepare_corpus,
                                        read_image_list, read_karpathy,
                                        read_text_corpus)
from mmpcm.preprocessing.extraction import items_from_list

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _sent(raw, sentid):
    return {'raw': raw, 'tokens': raw.lower().split(), 'sentid': sentid}


COCO = {
    'dataset': 'coco',
    'images': [
        {'filepath': 'train2014',
         'filename': 'COCO_train2014_000000000009.jpg',
         'split': 'train', 'cocoid': 9, 'imgid': 0, 'sentids': [0, 1],
         'sentences': [_sent('A dog on\na sofa.', 0),
                       _sent('Two dogs play.', 1)]},
        {'filepath': 'val2014', 'filename': 'COCO_val2014_000000000042.jpg',
         'split': 'restval', 'cocoid': 42, 'imgid': 1, 'sentids': [2, 3],
         'sentences': [_sent('  A cat   sleeps. ', 2), _sent(' \n ', 3)]},
        {'filepath': 'val2014', 'filename': 'COCO_val2014_000000000073.jpg',
         'split': 'val', 'cocoid': 73, 'imgid': 2, 'sentids': [4, 5],
         'sentences': [_sent('A man rides a horse.', 4),
                       _sent('A horse\r\nin a field.', 5)]},
        {'filepath': 'val2014', 'filename': 'COCO_val2014_000000000074.jpg',
         'split': 'test', 'cocoid': 74, 'imgid': 3, 'sentids': [6],
         'sentences': [_sent('A red bus.', 6)]},
    ],
}
FLICKR = {
    'dataset': 'flickr30k',
    'images': [
        {'filename': '1000092795.jpg', 'split': 'train', 'imgid': 0,
         'sentences': [_sent('Two young guys with shaggy hair.', 0)]},
        {'filename': '10002456.jpg', 'split': 'val', 'imgid': 1,
         'sentences': [_sent('Several men in hard hats.', 1)]},
        {'filename': '1000268201.jpg', 'split': 'test', 'imgid': 2,
         'sentences': [_sent('A child in a pink dress.', 2),
                       _sent('A little girl climbing.', 3)]},
    ],
}
TRAIN_CAPTIONS = ['A dog on a sofa.', 'Two dogs play.', 'A cat sleeps.']


def _write_json(path, data):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    return str(path)


def _read_json(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def _read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def _tool(name):
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, 'tools', 'data', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------
# Karpathy -> outputs
# --------------------------------------------------------------------------
def test_prepare_coco_default_stem_ids(tmp_path):
    src = _write_json(tmp_path / 'dataset_coco.json', COCO)
    out = tmp_path / 'ann'
    result = prepare_corpus(src, out, min_count=1)
    assert result.id_scheme == 'stem'
    assert result.num_empty_sentences == 1
    assert _read(out / 'train_captions.txt') == ''.join(
        f'{c}\n' for c in TRAIN_CAPTIONS)
    assert result.num_train_captions == 3
    assert _read_json(out / 'karpathy_val_gt.json') == {
        'images': [{'id': 'COCO_val2014_000000000073',
                    'file_name': 'val2014/COCO_val2014_000000000073.jpg'}],
        'annotations': [
            {'id': 4, 'image_id': 'COCO_val2014_000000000073',
             'caption': 'A man rides a horse.'},
            {'id': 5, 'image_id': 'COCO_val2014_000000000073',
             'caption': 'A horse in a field.'}]}
    assert _read_json(out / 'karpathy_test_gt.json') == {
        'images': [{'id': 'COCO_val2014_000000000074',
                    'file_name': 'val2014/COCO_val2014_000000000074.jpg'}],
        'annotations': [{'id': 6, 'image_id': 'COCO_val2014_000000000074',
                         'caption': 'A red bus.'}]}
    assert _read(out / 'karpathy_val_images.txt') == (
        'val2014/COCO_val2014_000000000073.jpg\n')
    assert read_image_list(out / 'karpathy_test_images.jsonl') == [
        ImageEntry('COCO_val2014_000000000074',
                   'val2014/COCO_val2014_000000000074.jpg')]
    assert _read_json(out / 'vocab.json') == [
        '<pad>', '<bos>', '<eos>', '<unk>', 'a', 'cat', 'dog', 'dogs', 'on',
        'play', 'sleeps', 'sofa', 'two']
    assert result.vocab_size == 13
    assert result.splits['val'].num_images == 1
    assert result.splits['val'].num_captions == 2


def test_prepare_coco_cocoid_int_ids_work_with_the_metric(tmp_path):
    src = _write_json(tmp_path / 'dataset_coco.json', COCO)
    result = prepare_corpus(src, tmp_path / 'ann', id_scheme='cocoid',
                            min_count=1)
    gt = _read_json(result.splits['val'].ground_truth)
    assert [im['id'] for im in gt['images']] == [73]
    assert [a['image_id'] for a in gt['annotations']] == [73, 73]
    assert load_references(result.splits['val'].ground_truth) == {
        73: ['A man rides a horse.', 'A horse in a field.']}
    assert read_image_list(result.splits['test'].typed_list) == [
        ImageEntry(74, 'val2014/COCO_val2014_000000000074.jpg')]


@pytest.mark.parametrize('scheme,val_id,test_id', [
    ('stem', '10002456', '1000268201'),
    ('stem-int', 10002456, 1000268201),
    ('imgid', 1, 2),
    ('filename', '10002456.jpg', '1000268201.jpg'),
])
def test_prepare_flickr_id_schemes(tmp_path, scheme, val_id, test_id):
    src = _write_json(tmp_path / 'dataset_flickr30k.json', FLICKR)
    result = prepare_corpus(src, tmp_path / 'ann', id_scheme=scheme,
                            min_count=1)
    assert load_references(result.splits['val'].ground_truth) == {
        val_id: ['Several men in hard hats.']}
    assert load_references(result.splits['test'].ground_truth) == {
        test_id: ['A child in a pink dress.', 'A little girl climbing.']}
    assert read_image_list(result.splits['test'].typed_list) == [
        ImageEntry(test_id, '1000268201.jpg')]
    assert _read(result.train_captions) == 'Two young guys with shaggy hair.\n'


def test_image_root_and_extraction_tool_agree(tmp_path):
    """The .txt list resolves to the images and gives the references' ids."""
    src = _write_json(tmp_path / 'dataset_coco.json', COCO)
    image_root = tmp_path / 'images'
    result = prepare_corpus(src, tmp_path / 'ann', image_root=image_root,
                            min_count=1)
    assert _read(result.splits['val'].path_list) == (
        '../images/val2014/COCO_val2014_000000000073.jpg\n')
    items = items_from_list(result.splits['val'].path_list)
    gt = _read_json(result.splits['val'].ground_truth)
    assert [it.image_id for it in items] == [im['id'] for im in gt['images']]
    assert osp.normpath(items[0].path) == osp.normpath(
        image_root / 'val2014' / 'COCO_val2014_000000000073.jpg')


def test_train_includes_restval_and_load_corpus(tmp_path):
    src = _write_json(tmp_path / 'dataset_coco.json', COCO)
    dataset = read_karpathy(src)
    assert [im.split for im in dataset.split('train')] == ['train', 'restval']
    assert load_corpus(src).captions == TRAIN_CAPTIONS


# --------------------------------------------------------------------------
# text corpora
# --------------------------------------------------------------------------
def test_text_corpus_skips_empty_and_non_utf8_lines(tmp_path):
    path = tmp_path / 'corpus.txt'
    path.write_bytes(b'\xef\xbb\xbfA dog.\r\n\n  \nbad \xff byte\n'
                     b'caf\xc3\xa9 table\n\xc3\n  two  cats \n')
    corpus = read_text_corpus(path)
    assert corpus.captions == ['A dog.', 'caf\u00e9 table', 'two cats']
    assert [(s.lineno, s.reason == 'empty') for s in corpus.skipped] == [
        (2, True), (3, True), (4, False), (6, False)]
    assert corpus.num_empty == 2 and corpus.num_invalid == 2
    report = corpus.report()
    assert '3 captions read; skipped 2 empty and 2 non-UTF-8' in report
    assert f'{path}:4: not UTF-8' in report and f'{path}:6:' in report
    assert str(SkippedLine('f.txt', 7, 'empty')) == 'f.txt:7: empty'
    assert load_corpus(path).captions == corpus.captions


def test_prepare_from_text_corpus(tmp_path):
    path = tmp_path / 'corpus.txt'
    path.write_bytes(b'a dog\n\xff\n\na cat\n')
    result = prepare_corpus(path, tmp_path / 'out', min_count=1)
    assert _read(result.train_captions) == 'a dog\na cat\n'
    assert _read_json(result.vocab) == [
        '<pad>', '<bos>', '<eos>', '<unk>', 'a', 'cat', 'dog']
    assert result.splits == {}
    assert [s.lineno for s in result.skipped] == [2, 3]
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == [
        'train_captions.txt', 'vocab.json']


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------
def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.json'):
        prepare_corpus(tmp_path / 'nope.json', tmp_path / 'out')
    with pytest.raises(FileNotFoundError) as info:
        read_text_corpus(tmp_path / 'nope.txt')
    assert str(info.value) == (f'{tmp_path / "nope.txt"}: no such caption '
                               'corpus; check the path')
    with pytest.raises(FileNotFoundError, match='no such image list'):
        read_image_list(tmp_path / 'nope.jsonl')
    with pytest.raises(ValueError, match='a folder, not a caption corpus'):
        read_text_corpus(tmp_path)


def _broken(tmp_path, mutate):
    data = json.loads(json.dumps(COCO))
    mutate(data)
    return _write_json(tmp_path / 'broken.json', data)


@pytest.mark.parametrize('mutate,message', [
    (lambda d: d.pop('images'), "missing key 'images'"),
    (lambda d: d['images'][1].pop('split'), r"images\[1\]: missing key "
     "'split'"),
    (lambda d: d['images'][2].pop('filename'), r"images\[2\]: missing key "
     "'filename'"),
    (lambda d: d['images'][0].pop('sentences'), "missing key 'sentences'"),
    (lambda d: d['images'][3]['sentences'][0].pop('raw'),
     r"images\[3\].sentences\[0\]: missing key 'raw'"),
    (lambda d: d['images'][0].update(split='dev'), "split 'dev' is not one"),
    (lambda d: d['images'].__setitem__(0, 'x'), 'expected a JSON object'),
])
def test_not_karpathy_format(tmp_path, mutate, message):
    with pytest.raises(ValueError, match=message):
        prepare_corpus(_broken(tmp_path, mutate), tmp_path / 'out')


def test_scheme_key_missing_and_duplicate_ids(tmp_path):
    flickr = _write_json(tmp_path / 'flickr.json', FLICKR)
    with pytest.raises(ValueError, match="missing key 'cocoid'"):
        read_karpathy(flickr, 'cocoid')
    with pytest.raises(ValueError, match='is not an integer'):
        read_karpathy(_broken(tmp_path, lambda d: None), 'stem-int')
    dup = _broken(tmp_path, lambda d: d['images'][3].update(
        split='val', filename='COCO_val2014_000000000073.jpg'))
    with pytest.raises(ValueError, match='appears twice'):
        read_karpathy(dup)
    with pytest.raises(ValueError, match='not valid JSON'):
        (tmp_path / 'bad.json').write_text('{"images": [')
        read_karpathy(tmp_path / 'bad.json')
    with pytest.raises(ValueError, match='no training caption'):
        prepare_corpus(_broken(tmp_path, lambda d: [
            im.update(split='val') for im in d['images']]), tmp_path / 'o',
            id_scheme='imgid')


def test_bad_image_list_line(tmp_path):
    path = tmp_path / 'list.jsonl'
    path.write_text('{"image_id": 1, "file_name": "a.jpg"}\n\n'
                    '{"image_id": [1], "file_name": "b.jpg"}\n')
    with pytest.raises(ValueError, match=r'list.jsonl:3: image_id must be'):
        read_image_list(path)
    path.write_text('{"file_name": "a.jpg"}\n')
    with pytest.raises(ValueError, match="list.jsonl:1: missing key "
                       "'image_id'"):
        read_image_list(path)


# --------------------------------------------------------------------------
# the tool
# --------------------------------------------------------------------------
def test_prepare_corpus_tool(tmp_path, capsys):
    src = _write_json(tmp_path / 'dataset_coco.json', COCO)
    out = tmp_path / 'annotations'
    _tool('prepare_corpus').main([src, str(out), '--id-scheme', 'cocoid',
                                  '--min-count', '1', '--splits', 'test'])
    printed = capsys.readouterr()
    assert '3 training captions' in printed.out
    assert "image ids follow 'cocoid'" in printed.err
    assert '<unk> at --min-count' not in printed.err  # min count 1: none
    _tool('prepare_corpus').main([src, str(tmp_path / 'again'), '--id-scheme',
                                  'cocoid', '--min-count', '2'])
    assert ('become <unk> at --min-count 2; a small corpus may want a lower '
            'one') in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        'karpathy_test_gt.json', 'karpathy_test_images.jsonl',
        'karpathy_test_images.txt', 'train_captions.txt', 'vocab.json']
    assert WordVocabulary.load(str(out / 'vocab.json')) == (
        WordVocabulary.from_captions(TRAIN_CAPTIONS, min_count=1))


def test_an_empty_vocabulary_is_refused_before_anything_is_written(
        tmp_path, capsys):
    """No word reaches --min-count: one error line naming the corpus and the
    remedy, and no train_captions.txt left behind."""
    src = tmp_path / 'captions.txt'
    src.write_text('a red ball\ntwo dogs play\n', encoding='utf-8')
    out = tmp_path / 'out'
    status = _tool('prepare_corpus').main([str(src), str(out)])
    assert status == 1
    assert capsys.readouterr().err == (
        f'error: {src}: no word occurs 5 times or more in the training '
        'captions, so the vocabulary would be empty; lower --min-count '
        '(e.g. --min-count 1) or give a larger corpus\n')
    assert not (out / 'train_captions.txt').exists()
