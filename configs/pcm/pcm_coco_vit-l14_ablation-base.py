# Ablation "base": no PCM mix-up, plain (label-smoothed) cross-entropy.
# Paper (ViT-L/14, COCO): 33.0 / 26.3 / 54.8 / 108.9 / 20.2.
_base_ = ['./pcm_coco_vit-l14.py']
model = dict(neck=dict(mixup=False),
             head=dict(loss=dict(use_clip_weight=False)))
