from .clip_joint_projection import CLIPJointProjection, NoImageEncoderError
from .open_clip_vit import (CLIPVisualFeatures, OpenCLIPVisionBackbone,
                            build_open_clip, joint_space)

__all__ = [
    'CLIPJointProjection', 'CLIPVisualFeatures', 'NoImageEncoderError',
    'OpenCLIPVisionBackbone', 'build_open_clip', 'joint_space'
]
