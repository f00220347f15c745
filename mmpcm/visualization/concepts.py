"""PCM's picture of one image as plain data (JSON-ready).

Turns the per-image tensors of
:meth:`PCMCaptioner.predict(..., return_concepts=True)
<mmpcm.models.PCMCaptioner.predict>` into words, probabilities and patch
grid cells, the one form the gallery, the inferencer, the caption tool,
the training visualizer and the demo show.
"""
import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import torch

__all__ = ['ConceptView', 'concept_view']


@dataclass
class ConceptView:
    """The concepts PCM retrieved for an image and the patches it selected.

    Attributes:
        grid (int): Side of the square patch grid (``N = grid * grid``).
        concepts (list[dict]): Top-K concepts, best first: ``word`` (the
            concept word, or ``'#<id>'`` when the words are unknown), ``id``
            (row of the concept table), ``prob`` (retrieval probability) and
            ``kept`` (above the threshold).
        patches (list[dict]): The selected patches, most similar first:
            ``index`` (row-major patch index), ``row``, ``col``, ``concept``
            (the word it takes) and ``similarity`` (cosine in CLIP's joint
            space).
    """
    grid: int
    concepts: List[Dict]
    patches: List[Dict]

    def to_dict(self) -> Dict:
        return asdict(self)


def _word(words: Optional[Sequence[str]], concept_id: int) -> str:
    if words is not None and 0 <= concept_id < len(words):
        return words[concept_id]
    return f'#{concept_id}'


def concept_view(picture: Dict[str, torch.Tensor],
                 words: Optional[Sequence[str]] = None) -> ConceptView:
    """One image's concept picture as words and grid cells.

    Args:
        picture (dict[str, torch.Tensor]): One image's ``pcm_concepts``
            (``concept_ids``, ``concept_probs``, ``concept_kept`` of shape
            ``(K,)``; ``selected``, ``patch_concept``, ``patch_similarity``
            of shape ``(N,)``).
        words (Sequence[str], optional): The concept table's words
            (``PCMNeck.concept_words``). Defaults to None (ids as words).

    Returns:
        ConceptView: The view.

    Raises:
        ValueError: If ``N`` is not a square number (no square patch grid).
    """
    n = int(picture['selected'].numel())
    grid = math.isqrt(n)
    if grid * grid != n:
        raise ValueError(f'{n} patches do not form a square grid')
    ids = [int(i) for i in picture['concept_ids'].tolist()]
    concepts = [
        dict(word=_word(words, i), id=i, prob=round(float(p), 4),
             kept=bool(k))
        for i, p, k in zip(ids, picture['concept_probs'].tolist(),
                           picture['concept_kept'].tolist())
    ]
    selected = torch.nonzero(picture['selected']).flatten().tolist()
    patches = [
        dict(index=p, row=p // grid, col=p % grid,
             concept=concepts[int(picture['patch_concept'][p])]['word'],
             similarity=round(float(picture['patch_similarity'][p]), 4))
        for p in selected
    ]
    patches.sort(key=lambda d: -d['similarity'])
    return ConceptView(grid, concepts, patches)
