from .beam_search import Decoded, beam_search, greedy_search
from .concepts import ConceptVocabulary
from .data_preprocessor import PCMDataPreprocessor
from .errors import (CheckpointMismatchError, ConfigMismatchError,
                     check_state_dict_fits, state_dict_mismatch)

__all__ = [
    'CheckpointMismatchError', 'ConceptVocabulary', 'ConfigMismatchError',
    'Decoded', 'PCMDataPreprocessor', 'beam_search',
    'check_state_dict_fits', 'greedy_search', 'state_dict_mismatch'
]
