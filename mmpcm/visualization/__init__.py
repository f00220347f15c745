"""Seeing what PCM-Net does: its concepts and patches as plain data, the
static results gallery, drawings for the training visualizer."""
from .concepts import ConceptView, concept_view

__all__ = ['ConceptView', 'concept_view']
