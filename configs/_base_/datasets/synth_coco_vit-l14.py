# SynthImgCap-COCO with CLIP ViT-L/14 features (64 pooled patches x 1024).
_base_ = ['./synth_coco_vit-b32.py']
train_data_root = 'data/coco/synth_features_vit-l14'
clip_info = dict(clip_model='ViT-L-14')
train_dataloader = dict(dataset=dict(data_root=train_data_root, **clip_info))
val_dataloader = dict(dataset=dict(
    data_root='data/coco/val_features_vit-l14', **clip_info))
test_dataloader = dict(dataset=dict(
    data_root='data/coco/test_features_vit-l14', **clip_info))
