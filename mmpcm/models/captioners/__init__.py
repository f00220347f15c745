from .pcm_captioner import EncodedImages, PCMCaptioner

__all__ = ['EncodedImages', 'PCMCaptioner']
