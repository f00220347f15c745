from .pcm_neck import PCMNeck, PCMTokens, SalientConcepts

__all__ = ['PCMNeck', 'PCMTokens', 'SalientConcepts']
