from .visual_semantic_encoder import VisualSemanticEncoder

__all__ = ['VisualSemanticEncoder']
