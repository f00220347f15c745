from .beam_search import Decoded, beam_search, greedy_search
from .concepts import ConceptVocabulary
from .data_preprocessor import PCMDataPreprocessor
from .errors import CheckpointMismatchError
from .vocab import (CaptionTokenizer, EncodedCaptions, WordVocabulary,
                    build_vocabulary, tokenize_caption)

__all__ = [
    'CaptionTokenizer', 'EncodedCaptions',
    'CheckpointMismatchError', 'ConceptVocabulary', 'Decoded',
    'PCMDataPreprocessor', 'WordVocabulary', 'beam_search',
    'build_vocabulary', 'greedy_search', 'tokenize_caption'
]
