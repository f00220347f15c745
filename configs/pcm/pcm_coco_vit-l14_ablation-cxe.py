# Ablation "+ CXE loss": CLIP-weighted cross-entropy, no PCM mix-up.
# Paper (ViT-L/14, COCO): 33.2 / 26.4 / 55.1 / 112.0 / 20.5.
_base_ = ['./pcm_coco_vit-l14.py']
model = dict(neck=dict(mixup=False))
