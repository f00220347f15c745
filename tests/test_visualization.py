"""PCM's picture as data (ConceptView) and drawn on CLIP's view."""
import numpy as np
import pytest
import torch
from PIL import Image

from mmpcm.datasets.clip_transforms import clip_image_tensor
from mmpcm.visualization import (clip_view, concept_colours, concept_view,
                                 draw_concept_picture)

# 2 x 2 grid; concepts: table rows 4 (kept) and 1 (masked); patches 1 and 2
# selected, patch 2 more similar.
PICTURE = dict(
    concept_ids=torch.tensor([4, 1]),
    concept_probs=torch.tensor([0.9, 0.1]),
    concept_kept=torch.tensor([True, False]),
    selected=torch.tensor([False, True, True, False]),
    patch_concept=torch.tensor([0, 0, 0, 0]),
    patch_similarity=torch.tensor([0.1, 0.3, 0.5, 0.2]))
WORDS = ['a', 'b', 'c', 'd', 'dog']


def test_concept_view_by_hand():
    view = concept_view(PICTURE, WORDS)
    assert view.grid == 2
    assert view.concepts == [
        dict(word='dog', id=4, prob=pytest.approx(0.9), kept=True),
        dict(word='b', id=1, prob=pytest.approx(0.1), kept=False)]
    assert view.patches == [
        dict(index=2, row=1, col=0, concept='dog',
             similarity=pytest.approx(0.5)),
        dict(index=1, row=0, col=1, concept='dog',
             similarity=pytest.approx(0.3))]
    assert concept_view(PICTURE).concepts[0]['word'] == '#4'
    assert view.to_dict()['patches'][0]['index'] == 2


def test_concept_view_needs_a_square_grid():
    bad = dict(PICTURE, selected=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match='3 patches'):
        concept_view(bad, WORDS)


def test_clip_view_is_what_clip_sees():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (40, 64, 3), np.uint8))
    view = clip_view(image, 32, 32)
    want = clip_image_tensor(image, 32).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(view), want)
    assert clip_view(image, 32, 96).size == (96, 96)


def test_drawing_outlines_exactly_the_selected_cells():
    view = concept_view(PICTURE, WORDS)
    image = Image.new('RGB', (64, 64), (128, 128, 128))
    drawn = np.asarray(draw_concept_picture(image, view, labels=False))
    changed = (drawn != 128).any(-1)  # (64, 64)
    cells = changed.reshape(2, 32, 2, 32).any((1, 3))
    assert cells.tolist() == [[False, True], [True, False]]
    colour = concept_colours(view)['dog']
    rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    assert tuple(drawn[32, 0]) == rgb  # top-left corner of patch 2
    assert np.asarray(image).max() == 128  # the input is left as it was
