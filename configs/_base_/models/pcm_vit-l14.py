# PCM-Net on frozen OpenAI CLIP ViT-L/14: the 16x16 patch grid is pooled 2x2
# to 8x8 = 64 patches of width 1024 (768-d joint space: the neck reads these
# from the backbone); w = 4.0; dropout 0.25.
_base_ = ['./pcm_vit-b32.py']
clip_model = 'ViT-L-14'
model = dict(
    backbone=dict(model_name=clip_model, patch_pool=2),
    neck=dict(concepts='data/concepts/coco_concepts_vit-l14.safetensors'),
    encoder=dict(dropout=0.25),
    head=dict(dropout=0.25, loss=dict(clip_weight_scale=4.0)),
)
