# Toy-world ablation "+ PCM mix-up": PCM on, plain cross-entropy.
_base_ = ['./pcm_toyworld.py']
model = dict(head=dict(loss=dict(use_clip_weight=False)))
