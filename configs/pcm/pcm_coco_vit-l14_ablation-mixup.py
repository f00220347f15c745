# Ablation "+ PCM mix-up": PCM on, plain cross-entropy.
# Paper (ViT-L/14, COCO): 33.3 / 26.8 / 55.0 / 111.6 / 20.7.
_base_ = ['./pcm_coco_vit-l14.py']
model = dict(head=dict(loss=dict(use_clip_weight=False)))
