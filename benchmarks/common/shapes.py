"""The feature shapes and data-set sizes the benchmarks reproduce."""
from dataclasses import dataclass
from typing import Dict


@dataclass(frozen=True)
class ClipShape:
    """The feature shapes one CLIP model gives PCM-Net.

    Attributes:
        key (str): Command-line name (``vit-b32``, ``vit-l14``).
        model (str): open_clip model name.
        num_patches (int): Patch tokens per image (after pooling).
        patch_dim (int): Width of a patch token.
        embed_dim (int): Width of CLIP's joint space.
        config (str): The paper-recipe config of this CLIP, from the repo
            root.
    """
    key: str
    model: str
    num_patches: int
    patch_dim: int
    embed_dim: int
    config: str

    @property
    def bytes_per_item(self) -> int:
        """float16 bytes of one item in a feature store."""
        return 2 * (self.num_patches * self.patch_dim + self.embed_dim)


CLIP_SHAPES: Dict[str, ClipShape] = {
    'vit-b32': ClipShape('vit-b32', 'ViT-B-32', 49, 768, 512,
                         'configs/pcm/pcm_coco.py'),
    'vit-l14': ClipShape('vit-l14', 'ViT-L-14', 64, 1024, 768,
                         'configs/pcm/pcm_coco_vit-l14.py'),
}

COCO_PAIRS = 542_401
"""SynthImgCap-COCO: one synthetic image per Karpathy-train caption."""
COCO_TEST_IMAGES = 5_000
"""MSCOCO Karpathy test split."""
COCO_VOCAB_SIZE = 10_200
"""PCM-Net's COCO word vocabulary (special tokens included)."""
NUM_CONCEPTS = 446
"""Concepts shipped by the release for COCO."""
