from .pcm_caption_head import (PCMCaptionHead, VocabularyMismatchError,
                               decode_vocab_tensor, encode_vocab_tensor)

__all__ = [
    'PCMCaptionHead', 'VocabularyMismatchError', 'decode_vocab_tensor',
    'encode_vocab_tensor'
]
