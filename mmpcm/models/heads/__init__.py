from .pcm_caption_head import PCMCaptionHead, VocabularyMismatchError

__all__ = ['PCMCaptionHead', 'VocabularyMismatchError']
