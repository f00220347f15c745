from .beam_search import Decoded, beam_search, greedy_search
from .concepts import ConceptVocabulary
from .data_preprocessor import PCMDataPreprocessor
from .errors import (CheckpointMismatchError, ConfigMismatchError,
                     check_state_dict_fits, state_dict_mismatch)
from .vocab import (CaptionTokenizer, EncodedCaptions, WordVocabulary,
                    build_vocabulary, tokenize_caption)

__all__ = [
    'CaptionTokenizer', 'EncodedCaptions',
    'CheckpointMismatchError', 'ConceptVocabulary', 'ConfigMismatchError',
    'Decoded', 'PCMDataPreprocessor', 'WordVocabulary', 'beam_search',
    'build_vocabulary', 'check_state_dict_fits', 'greedy_search',
    'state_dict_mismatch', 'tokenize_caption'
]
