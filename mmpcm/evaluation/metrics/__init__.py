from .caption_metric import PCMCaptionMetric
from .clip_score import PCMCLIPScore
from .ptb_tokenizer import IsolatedPTBTokenizer
from .spice import SpiceUnavailableWarning

__all__ = [
    'IsolatedPTBTokenizer', 'PCMCaptionMetric', 'PCMCLIPScore',
    'SpiceUnavailableWarning'
]
