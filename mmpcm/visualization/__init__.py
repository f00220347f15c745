"""Seeing what PCM-Net does: its concepts and patches as plain data, the
static results gallery, drawings for the training visualizer."""
from .concepts import ConceptView, concept_view
from .drawing import (CONCEPT_COLOURS, clip_view, concept_colours,
                      draw_concept_picture)

__all__ = ['ConceptView', 'concept_view', 'CONCEPT_COLOURS', 'clip_view',
           'concept_colours', 'draw_concept_picture']
