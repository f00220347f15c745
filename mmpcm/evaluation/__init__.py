from .metrics import IsolatedPTBTokenizer, PCMCaptionMetric

__all__ = ['IsolatedPTBTokenizer', 'PCMCaptionMetric']
