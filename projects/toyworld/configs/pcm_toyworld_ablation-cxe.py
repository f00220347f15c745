# Toy-world ablation "+ CXE loss": CLIP-weighted cross-entropy, no mix-up.
_base_ = ['./pcm_toyworld.py']
model = dict(neck=dict(mixup=False))
