from .open_clip_vit import CLIPVisualFeatures, OpenCLIPVisionBackbone, build_open_clip

__all__ = ['CLIPVisualFeatures', 'OpenCLIPVisionBackbone', 'build_open_clip']
