# Toy-world ablation "base": no PCM mix-up, plain cross-entropy.
_base_ = ['./pcm_toyworld.py']
model = dict(neck=dict(mixup=False),
             head=dict(loss=dict(use_clip_weight=False)))
