"""BLEU, METEOR, ROUGE-L and CIDEr-D: pycocoevalcap's scorers, one call each.

Each scorer's pycocoevalcap module is imported when it is first used.
"""
import warnings
from typing import Callable, Dict, Hashable

import numpy as np

from .ptb_tokenizer import Captions

__all__ = [
    'bleu_scores', 'meteor_score', 'rouge_score', 'cider_score',
    'cider_per_image', 'FewImagesCIDErWarning', 'SCORERS'
]


def bleu_scores(gts: Captions, res: Captions) -> Dict[str, float]:
    """BLEU-1..4 (corpus level, 'closest' reference length).

    Args:
        gts (dict): Tokenized references per image id.
        res (dict): One tokenized candidate per image id.

    Returns:
        dict: ``Bleu_1`` .. ``Bleu_4`` in [0, 1].
    """
    from pycocoevalcap.bleu.bleu import Bleu
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
    from pycocoevalcap.meteor.meteor import Meteor
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
    from pycocoevalcap.rouge.rouge import Rouge
    score, _ = Rouge().compute_score(gts, res)
    return {'ROUGE_L': float(score)}


class FewImagesCIDErWarning(UserWarning):
    """CIDEr of fewer than two images, which is 0 whatever the captions."""


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
    per_image = cider_per_image(gts, res)
    return {'CIDEr': float(np.mean(list(per_image.values())))}


def cider_per_image(gts: Captions, res: Captions) -> Dict[Hashable, float]:
    """CIDEr-D of each image (the values :func:`cider_score` averages).

    Document frequencies come from the references of all images in ``gts``,
    so an image's score depends on which images are scored with it.

    Args:
        gts (dict): Tokenized references per image id.
        res (dict): One tokenized candidate per image id.

    Returns:
        dict: ``{image_id: CIDEr-D}`` (about 0..10), for the ids of ``res``.
    """
    from pycocoevalcap.cider.cider import Cider
    _, scores = Cider().compute_score(gts, res)
    # pycocoevalcap scores the images in the order of gts' keys
    return {i: float(s) for i, s in zip(gts.keys(), scores)}


SCORERS: Dict[str, Callable[[Captions, Captions], Dict[str, float]]] = {
    'BLEU': bleu_scores,
    'METEOR': meteor_score,
    'ROUGE_L': rouge_score,
    'CIDEr': cider_score,
}
