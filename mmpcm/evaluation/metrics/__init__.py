from .caption_metric import PCMCaptionMetric
from .chair_metric import PCMCHAIRMetric
from .clip_score import PCMCLIPScore
from .object_vocabulary import ObjectVocabulary
from .ptb_tokenizer import IsolatedPTBTokenizer
from .spice import SpiceUnavailableWarning

__all__ = [
    'IsolatedPTBTokenizer', 'ObjectVocabulary', 'PCMCaptionMetric',
    'PCMCHAIRMetric', 'PCMCLIPScore', 'SpiceUnavailableWarning'
]
