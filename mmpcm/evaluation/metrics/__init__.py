from .caption_metric import (IsolatedPTBTokenizer, PCMCaptionMetric,
                             SpiceUnavailableWarning)
from .clip_score import PCMCLIPScore

__all__ = [
    'IsolatedPTBTokenizer', 'PCMCaptionMetric', 'PCMCLIPScore',
    'SpiceUnavailableWarning'
]
