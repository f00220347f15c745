"""Caption text: the metric's word tokenizer and the word vocabulary."""
from .tokenize import (CaptionTokens, detokenize_caption, scan_caption,
                       tokenize_caption)
from .vocab import (SPECIAL_TOKENS, VocabularyReport, WordVocabulary,
                    build_vocabulary)

__all__ = [
    'CaptionTokens', 'SPECIAL_TOKENS', 'VocabularyReport', 'WordVocabulary',
    'build_vocabulary', 'detokenize_caption', 'scan_caption',
    'tokenize_caption'
]
