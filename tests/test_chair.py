"""PCMCHAIRMetric and its object vocabulary: hand-computed CHAIR-i, CHAIR-s
and object recall, the shipped COCO synonym table, the COCO instances path
and tools/data/coco_objects.py."""
import json

import pytest

from mmpcm.evaluation.metrics import ObjectVocabulary, PCMCHAIRMetric
from mmpcm.evaluation.metrics.object_truth import (
    coco_objects_from_instances, objects_from_references)
from mmpcm.evaluation.metrics.object_vocabulary import (COCO_SYNONYMS_FILE,
                                                        plural_of)
from mmpcm.utils.cli import InputError

from tool_loader import load_tool

# The 80 category names of COCO's instance annotations (pycocotools).
COCO_CATEGORIES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
    'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
    'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard',
    'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard',
    'surfboard', 'tennis racket', 'bottle', 'wine glass', 'cup', 'fork',
    'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv',
    'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave',
    'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase',
    'scissors', 'teddy bear', 'hair drier', 'toothbrush')


@pytest.fixture(scope='module')
def coco():
    return ObjectVocabulary.coco()


def _metric(tmp_path, objects, synonyms=None):
    path = tmp_path / 'objects.json'
    path.write_text(json.dumps({'objects': objects}))
    return PCMCHAIRMetric(str(path), synonyms=synonyms)


def _score(metric, predictions):
    metric.process(None, [dict(image_id=i, pred_caption=c)
                          for i, c in predictions.items()])
    return metric.compute_metrics(metric.results)


@pytest.mark.parametrize('word,plural', [
    ('dog', 'dogs'), ('bus', 'buses'), ('bench', 'benches'),
    ('box', 'boxes'), ('brush', 'brushes'), ('puppy', 'puppies'),
    ('toy', 'toys'), ('man', 'men'), ('woman', 'women'),
    ('child', 'children'), ('person', 'people'), ('knife', 'knives'),
    ('mouse', 'mice'), ('sheep', 'sheep'), ('skis', 'skis'),
    ('scissors', 'scissors'), ('hot-dog', 'hot-dogs'), ('tv', 'tvs')])
def test_plural_rule(word, plural):
    assert plural_of(word) == plural


def test_the_coco_table_has_the_80_categories_once(coco):
    assert sorted(coco.objects) == sorted(COCO_CATEGORIES)
    table = json.load(open(COCO_SYNONYMS_FILE))['objects']
    owners = {}
    for name in table:
        for phrase in coco.phrases_of(name):
            assert owners.setdefault(phrase, name) == name, phrase


def test_a_phrase_of_two_objects_is_refused():
    with pytest.raises(ValueError, match="'dogs'"):
        ObjectVocabulary({'dog': ['dog'], 'animal': ['dogs']})
    with pytest.raises(ValueError, match='no words'):
        ObjectVocabulary({'dog': ['...']})


def test_mentions(coco):
    assert coco.mentions('Two men eat hot dogs near a teddy bear.') == {
        'person', 'hot dog', 'teddy bear'}
    assert coco.mentions('A dog and a puppy chase dogs.') == {'dog'}
    assert coco.mentions('A TV on a table beside a cell phone') == {
        'tv', 'dining table', 'cell phone'}
    # not_objects: the cap is no sports ball, the tracks no train
    assert coco.mentions('A baseball player in a baseball cap on the train '
                         'tracks') == {'person'}
    assert coco.mentions('Empty sky over a quiet field') == set()


def test_hand_computed_chair(tmp_path):
    metric = _metric(tmp_path, {
        '1': ['person', 'dog'],
        '2': ['cat', 'couch'],
        '3': ['hot dog', 'dining table'],
    })
    scores = _score(metric, {
        # mentions person, dog (said twice: once), frisbee (hallucinated)
        1: 'A man throws a frisbee to his dog while a dog barks.',
        # mentions cat (plural, synonym): nothing hallucinated
        2: 'Two kittens sleeping.',
        # hot dog (two words) on a table; "dog" alone is not mentioned
        3: 'A hot dog on a table next to a teddy bear.',
    })
    # mentioned: {person, dog, frisbee} + {cat} + {hot dog, table, teddy}
    assert scores['num_mentioned'] == 7
    assert scores['num_hallucinated'] == 2  # frisbee, teddy bear
    assert scores['CHAIR-i'] == pytest.approx(100 * 2 / 7)
    assert scores['CHAIR-s'] == pytest.approx(100 * 2 / 3)
    # recalled: person, dog; cat; hot dog, dining table = 5 of 6
    assert scores['object_recall'] == pytest.approx(100 * 5 / 6)
    assert scores['num_captions'] == 3
    assert scores['num_hallucinating_captions'] == 2
    assert (scores['num_gt_objects'], scores['num_recalled']) == (6, 5)


def test_the_ground_truth_matters(tmp_path):
    caption = {'7': 'A cat on a bed.'}
    right = _score(_metric(tmp_path, {'7': ['cat', 'bed']}), caption)
    wrong = _score(_metric(tmp_path, {'7': ['dog', 'bed']}), caption)
    assert (right['CHAIR-i'], right['CHAIR-s']) == (0.0, 0.0)
    assert right['object_recall'] == 100.0
    assert wrong['CHAIR-i'] == 50.0 and wrong['CHAIR-s'] == 100.0
    assert wrong['object_recall'] == 50.0


def test_missing_image_is_refused(tmp_path):
    metric = _metric(tmp_path, {'1': ['cat']})
    with pytest.raises(InputError, match='objects.json: 1 predicted image'):
        _score(metric, {1: 'A cat.', 2: 'A dog.'})


def test_an_unknown_object_name_is_refused(tmp_path):
    with pytest.raises(InputError, match='does not name'):
        _metric(tmp_path, {'1': ['unicorn']})


def test_own_synonym_table(tmp_path):
    table = tmp_path / 'shapes.json'
    table.write_text(json.dumps({'objects': {'circle': [], 'star': []}}))
    metric = _metric(tmp_path, {'a': ['circle']}, synonyms=str(table))
    scores = _score(metric, {'a': 'a red circle left of two stars'})
    assert scores['CHAIR-i'] == 50.0 and scores['object_recall'] == 100.0


def test_built_from_a_config(tmp_path):
    from mmpretrain.registry import METRICS

    from mmpcm.setup_env import register_all_modules
    register_all_modules()
    objects = tmp_path / 'objects.json'
    objects.write_text(json.dumps({'objects': {'1': ['dog']}}))
    metric = METRICS.build(dict(type='PCMCHAIRMetric',
                                objects_file=str(objects)))
    assert isinstance(metric, PCMCHAIRMetric) and metric.prefix == 'chair'


def _instances(tmp_path):
    path = tmp_path / 'instances_tiny.json'
    path.write_text(json.dumps({
        'images': [{'id': i, 'file_name': f'COCO_val2014_{i:012d}.jpg'}
                   for i in (1, 2, 3)],
        'categories': [{'id': 18, 'name': 'dog'}, {'id': 1, 'name': 'person'},
                       {'id': 58, 'name': 'hot dog'}],
        'annotations': [
            {'id': 10, 'image_id': 1, 'category_id': 18},
            {'id': 11, 'image_id': 1, 'category_id': 1},
            {'id': 12, 'image_id': 1, 'category_id': 1},
            {'id': 13, 'image_id': 2, 'category_id': 58}],
    }))
    return path


def test_coco_instances(tmp_path):
    out = tmp_path / 'objects.json'
    stems = coco_objects_from_instances(str(_instances(tmp_path)))
    assert stems['COCO_val2014_000000000001'] == ['dog', 'person']
    assert len(stems) == 3 and not out.exists()
    objects = coco_objects_from_instances(str(_instances(tmp_path)),
                                          str(out), id_scheme='cocoid')
    assert objects == {'1': ['dog', 'person'], '2': ['hot dog'], '3': []}
    assert json.loads(out.read_text()) == {'objects': objects}
    metric = PCMCHAIRMetric(str(out))
    scores = _score(metric, {1: 'A man and his dog.', 2: 'A dog.', 3: 'A '
                             'cat.'})
    assert scores['CHAIR-i'] == pytest.approx(100 * 2 / 4)
    assert scores['CHAIR-s'] == pytest.approx(100 * 2 / 3)
    assert scores['object_recall'] == pytest.approx(100 * 2 / 3)


def test_objects_from_references(tmp_path, coco):
    refs = tmp_path / 'gt.json'
    refs.write_text(json.dumps({
        'images': [{'id': 'a'}, {'id': 5}],
        'annotations': [{'image_id': 'a', 'caption': 'A man with a dog.'},
                        {'image_id': 'a', 'caption': 'Two people.'},
                        {'image_id': 5, 'caption': 'A hot dog.'}]}))
    assert objects_from_references(str(refs), coco) == {
        'a': ['dog', 'person'], '5': ['hot dog']}


def test_tool(tmp_path, capsys):
    tool = load_tool('data/coco_objects')
    out = tmp_path / 'out' / 'objects.json'
    assert tool.main([str(_instances(tmp_path)), str(out)]) == 0
    assert '3 images (1 without objects)' in capsys.readouterr().out
    assert json.loads(out.read_text())['objects'][
        'COCO_val2014_000000000002'] == ['hot dog']
    assert tool.main([str(_instances(tmp_path)), str(out), '--id-scheme',
                      'cocoid']) == 0
    assert json.loads(out.read_text())['objects']['2'] == ['hot dog']
    missing = tmp_path / 'nope.json'
    assert tool.main([str(missing), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f'error: {missing}: no such file; pass a COCO '
                   'instances_<split>.json')


def test_beside_the_caption_metrics(tmp_path):
    """A test_evaluator list naming both: tools/test.py's checks build it,
    both report, the paper row stays the caption metrics'."""
    from mmengine.config import Config
    from mmengine.evaluator import Evaluator

    from mmpcm.apis import check_test_evaluator, paper_row
    from mmpcm.setup_env import register_all_modules
    register_all_modules()
    refs = tmp_path / 'gt.json'
    refs.write_text(json.dumps({
        'images': [{'id': 1}, {'id': 2}],
        'annotations': [{'image_id': 1, 'caption': 'a man with a dog'},
                        {'image_id': 2, 'caption': 'a cat on a bed'}]}))
    objects = tmp_path / 'objects.json'
    objects.write_text(json.dumps({'objects': {'1': ['dog', 'person'],
                                               '2': ['bed', 'cat']}}))
    evaluator = [dict(type='PCMCaptionMetric', ann_file=str(refs),
                      metrics=['BLEU']),
                 dict(type='PCMCHAIRMetric', objects_file=str(objects))]
    check_test_evaluator(Config(dict(default_scope='mmpretrain',
                                     test_evaluator=evaluator)))
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        built = Evaluator(evaluator)
    built.process([dict(image_id=1, pred_caption='a man with a dog'),
                   dict(image_id=2, pred_caption='a dog on a bed')])
    metrics = built.evaluate(2)
    assert metrics['chair/CHAIR-s'] == 50.0
    assert metrics['chair/CHAIR-i'] == pytest.approx(100 / 4)
    assert 'coco-caption/Bleu_4' in metrics
    row = paper_row(metrics)
    assert row.startswith('B4 / M / R / C / S: ') and row.endswith(
        ' / - / - / - / -')
