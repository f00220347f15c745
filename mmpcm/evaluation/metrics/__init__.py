from .caption_metric import IsolatedPTBTokenizer, PCMCaptionMetric

__all__ = ['IsolatedPTBTokenizer', 'PCMCaptionMetric']
