from .metrics import (IsolatedPTBTokenizer, PCMCaptionMetric, PCMCLIPScore,
                      SpiceUnavailableWarning)

__all__ = [
    'IsolatedPTBTokenizer', 'PCMCaptionMetric', 'PCMCLIPScore',
    'SpiceUnavailableWarning'
]
