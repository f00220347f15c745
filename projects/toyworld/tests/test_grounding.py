"""The world's grounding measurement (concept retrieval, patch placement,
CLIP-score AUC), the object masks it reads and the defect record."""
import dataclasses
import itertools
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmpcm.models.necks.pcm_neck import PCMNeck
from mmpcm.models.utils.concepts import ConceptVocabulary
from mmpcm_toyworld.generator import ToyDiffusionPipeline
from mmpcm_toyworld.clip_train import grounding_targets, hard_negative_caption
from mmpcm_toyworld.grounding import (concept_hits, measure_grounding,
                                      patch_object_cover, patch_objects,
                                      roc_auc)
from mmpcm_toyworld.render import (REAL_STYLE, SYNTHETIC_STYLE, render_scene,
                                   render_scene_with_masks)
from mmpcm_toyworld.scenes import (SHAPES, Scene, SceneObject, parse_caption,
                                   sample_scene)

WORDS = list(SHAPES) + ['grass', 'water', 'wall']


def _neck():
    table = torch.eye(len(WORDS), 16)  # orthonormal concepts
    return PCMNeck(ConceptVocabulary(WORDS, table, 'toy'), 'toy',
                   num_patches=16, patch_dim=8, embed_dim=16, model_dim=8)


def _unit(*words):
    v = sum(torch.eye(len(WORDS), 16)[WORDS.index(w)] for w in words)
    return F.normalize(v, dim=-1)


def test_masks_do_not_change_the_render():
    rng = random.Random(0)
    for seed in range(20):
        scene = sample_scene(rng)
        for style in (REAL_STYLE, SYNTHETIC_STYLE):
            plain = render_scene(scene, np.random.default_rng(seed), 48, style)
            image, masks = render_scene_with_masks(
                scene, np.random.default_rng(seed), 48, style)
            assert np.array_equal(np.asarray(plain), np.asarray(image))
            assert masks.shape == (len(scene.objects), 48, 48)
            assert masks.any(axis=(1, 2)).all()
            # a pixel belongs to one object at most
            assert (masks.sum(0) <= 1).all()


def test_masks_lie_on_the_object_colour():
    scene = Scene((SceneObject('square', 'red', 'big'), ), 'white')
    style = dataclasses.replace(SYNTHETIC_STYLE, colour_jitter=0.0)
    image, masks = render_scene_with_masks(scene, np.random.default_rng(0),
                                           48, style)
    pixels = np.asarray(image, dtype=float)
    inside = pixels[masks[0]].mean(0)
    outside = pixels[~masks[0]].mean(0)
    assert inside[0] > inside[1] + 80  # red
    assert abs(outside[0] - outside[1]) < 40  # white-ish background


def test_roc_auc_matches_the_pairwise_count():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=60), 1)  # with ties
    positive = rng.random(60) < 0.4
    pairs = [(p, n) for p, n in itertools.product(scores[positive],
                                                  scores[~positive])]
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0
                        for p, n in pairs])
    assert roc_auc(scores, positive) == pytest.approx(expected)
    assert roc_auc([3, 2, 1, 0], [True, True, False, False]) == 1.0
    assert roc_auc([0, 1, 2, 3], [True, True, False, False]) == 0.0
    with pytest.raises(ValueError, match='both classes'):
        roc_auc([1, 2], [True, True])


def test_patch_cover_marks_the_object_patches():
    masks = np.zeros((1, 48, 48), dtype=bool)
    masks[0, :12, :12] = True  # the top-left patch of a 4x4 grid
    masks[0, 12:14, 12:14] = True  # 4 of 144 pixels of patch 5: too few
    cover = patch_object_cover(masks, grid=4)
    assert cover.tolist() == [True] + [False] * 15
    assert patch_object_cover(masks, grid=4, min_cover=0.02)[5]
    with pytest.raises(ValueError, match='5x5 patch grid'):
        patch_object_cover(masks, grid=5)


def test_concept_retrieval_is_scored_against_the_true_shapes():
    neck = _neck()
    scenes = [Scene((SceneObject('star', 'red', 'big'), ), 'grass'),
              Scene((SceneObject('ring', 'red', 'big'),
                     SceneObject('bar', 'blue', 'big')), 'water', 'left')]
    right = torch.stack([_unit('star', 'grass'), _unit('ring', 'bar')])
    hits = concept_hits(right, neck, WORDS, scenes)
    assert hits['objects_in_top_k'] == 1.0
    assert hits['shape_top1'] == 1.0
    assert hits['shape_top1_chance'] == pytest.approx((1 / 8 + 2 / 8) / 2)
    wrong = torch.stack([_unit('circle'), _unit('cross', 'square')])
    hits = concept_hits(wrong, neck, WORDS, scenes)
    assert hits['shape_top1'] == 0.0


def test_patch_placement_sees_where_selection_lands():
    neck = _neck()
    scene = Scene((SceneObject('star', 'red', 'big'), ), 'grass')
    masks = np.zeros((1, 1, 48, 48), dtype=bool)
    masks[0, 0, :12, :24] = True  # patches 0 and 1 of the 4x4 grid
    global_embed = _unit('star', 'grass')[None]
    # background patches: grass, less and less so from patch 15 down
    patches = torch.stack([F.normalize(
        _unit('grass') + (0.5 + 0.01 * (15 - n)) * _unit('water'), dim=-1)
        for n in range(16)])[None]  # (1, 16, D)
    grounded = patches.clone()
    grounded[0, :2] = _unit('star')
    report = measure_grounding(global_embed, grounded, neck, WORDS, [scene],
                               list(masks))
    # the star's two entries, then grass on patches 15, 14, 13
    assert report.patches_on_objects == pytest.approx(2 / 5)
    misplaced = patches.clone()
    misplaced[0, 10:12] = _unit('star')
    report_off = measure_grounding(global_embed, misplaced, neck, WORDS,
                                   [scene], list(masks))
    assert report_off.patches_on_objects == 0.0
    assert report.object_pixel_share == pytest.approx(2 / 16)
    assert report.clip_score_auc is None
    with pytest.raises(ValueError, match='together'):
        measure_grounding(global_embed, grounded, neck, WORDS, [scene],
                          list(masks), pair_scores=[0.5])


def test_draw_scene_says_what_generate_one_draws():
    pipe = ToyDiffusionPipeline(0.5, image_size=48)
    caption = 'a red star to the left of a blue ring on the grass'
    kinds = set()
    for seed in range(30):
        scene, defect, rng = pipe.draw_scene(caption, seed)
        image, got = pipe.generate_one(caption, seed, 48)
        assert got == defect
        kinds.add(defect)
        again = render_scene(scene, rng, 48, pipe.style)
        assert np.array_equal(np.asarray(image), np.asarray(again))
    assert None in kinds and len(kinds) > 2


def test_a_foreign_world_record_is_one_clear_error(tmp_path):
    from mmpcm.utils.cli import InputError
    from mmpcm_toyworld.world import build_world
    (tmp_path / 'world.json').write_text('{}')
    with pytest.raises(InputError, match='world.json: not a toy-world record'):
        build_world(str(tmp_path))


def test_patch_objects_names_the_largest_object_of_each_patch():
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, :2, :2] = True  # object 0 fills patch 0
    masks[1, 2:, 2:] = True  # object 1 fills patch 3
    masks[1, 0, 3] = True  # a quarter of patch 1
    masks[0, 3, 0] = True  # a quarter of patch 2 ...
    masks[1, 2, 0] = True  # ... and a quarter more of another object
    assert patch_objects(masks, 2).tolist() == [0, 1, 0, 1]
    assert patch_objects(masks, 2, min_cover=0.3).tolist() == [0, -1, -1, 1]
    # the union cover agrees with the per-object shares summed
    assert patch_object_cover(masks, 2, min_cover=0.5).tolist() == [
        True, False, True, True]


def test_grounding_targets_say_what_captions_and_masks_say():
    scene = Scene((SceneObject('star', 'red', 'big'),
                   SceneObject('ring', 'blue', 'small')), 'grass', 'left')
    image, masks = render_scene_with_masks(scene, np.random.default_rng(0),
                                           48, REAL_STYLE)
    nouns = list(SHAPES) + ['grass', 'lawn', 'water']
    t = grounding_targets([scene], [masks], nouns, 6, seed=0,
                          captions_per_target=20)
    share = dict(zip(t.words, t.word_share[0].tolist()))
    # every caption names both objects and their colours
    assert share['star'] == share['ring'] == share['red'] == share['blue'] == 1
    assert share['circle'] == share['water'] == share['purple'] == 0
    # the background is named by one of three phrases
    assert 0 < share['grass'] < 1 and 0 < share['lawn'] < 1
    assert t.groups[0] == list(range(len(SHAPES)))
    labels = t.patch_word[0]
    on = patch_objects(masks, 6)
    assert (labels[on < 0] == len(t.words)).all()
    star, ring = t.words.index('star'), t.words.index('ring')
    assert set(labels[on >= 0].tolist()) == {star, ring}


def test_hard_negative_captions_get_a_salient_fact_wrong():
    rng = random.Random(0)
    kinds = set()
    for _ in range(200):
        scene = sample_scene(rng)
        negative = parse_caption(hard_negative_caption(scene, rng))
        truth = {(o.shape, o.colour) for o in scene.objects}
        said = {(o.shape, o.colour) for o in negative.objects}
        assert said != truth
        kinds.add((len(said) > len(truth), len(said) < len(truth)))
    assert kinds == {(False, False), (True, False), (False, True)}
