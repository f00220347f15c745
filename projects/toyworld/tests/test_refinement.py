"""Judging a refined pairing against what the toy generator drew."""
import numpy as np
import pytest

from mmpcm_toyworld.refinement import judge_pairing, scene_content
from mmpcm_toyworld.scenes import Scene, SceneObject, parse_caption

CAPTIONS = [
    'a red star on the grass',
    'a big red star on green grass',
    'a blue ring on the water',
    'a small green square on white',
]


def _drawn(*captions):
    return [scene_content(parse_caption(c)) for c in captions]


def test_content_ignores_size_and_order():
    a = Scene((SceneObject('star', 'red', 'big'),
               SceneObject('ring', 'blue', None)), 'grass', 'above')
    b = Scene((SceneObject('ring', 'blue', 'small'),
               SceneObject('star', 'red', 'small')), 'grass', 'below')
    assert scene_content(a) == scene_content(b)
    assert scene_content(a) != scene_content(
        Scene(a.objects, 'water', 'above'))


def test_judge_counts_fixes_harm_and_drops():
    # Row 0's image was drawn wrong (a red circle); row 1's image shows
    # caption 0's content; row 3's image is wrong too.
    drawn = _drawn('a red circle on the grass', CAPTIONS[1], CAPTIONS[2],
                   'a green star on white')
    # Caption 0 -> image 1 (fixed by re-pairing), caption 1 keeps its own,
    # caption 2 -> image 0 (harmed: a faithful pair made unfaithful),
    # caption 3 dropped (fixed by dropping).
    report = judge_pairing(CAPTIONS, drawn, np.array([0, 1, 2]),
                           np.array([1, 1, 0]))
    assert (report.num_pairs, report.kept, report.dropped,
            report.repaired) == (4, 3, 1, 2)
    assert report.faithful_before == pytest.approx(2 / 4)
    assert report.faithful_after == pytest.approx(2 / 3)
    assert report.fix_recall == pytest.approx(1.0)
    # changed: captions 0, 2, 3; of them 0 and 3 had an unfaithful image
    assert report.change_precision == pytest.approx(2 / 3)
    assert report.harmed == 1
    assert 'faithful images 50.0% -> 66.7%' in report.summary()


def test_identity_pairing_changes_nothing():
    drawn = _drawn('a red circle on the grass', *CAPTIONS[1:])
    rows = np.arange(4)
    report = judge_pairing(CAPTIONS, drawn, rows, rows)
    assert report.repaired == report.dropped == report.harmed == 0
    assert report.faithful_after == report.faithful_before == 0.75
    assert report.fix_recall == 0.0


def test_a_caption_kept_twice_is_refused():
    with pytest.raises(ValueError, match='more than once'):
        judge_pairing(CAPTIONS, _drawn(*CAPTIONS), np.array([0, 0]),
                      np.array([0, 1]))
