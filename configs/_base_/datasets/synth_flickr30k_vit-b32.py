# SynthImgCap-Flickr30k: CLIP ViT-B/32 features of one Stable Diffusion image
# per Karpathy-train caption (144,541 pairs); real Karpathy val/test images
# (1,000 each) for validation and test.
_base_ = ['./synth_coco_vit-b32.py']
train_data_root = 'data/flickr30k/synth_features_vit-b32'
train_dataloader = dict(dataset=dict(data_root=train_data_root))
val_dataloader = dict(dataset=dict(
    data_root='data/flickr30k/val_features_vit-b32'))
val_evaluator = dict(
    ann_file='data/flickr30k/annotations/karpathy_val_gt.json')
test_dataloader = dict(dataset=dict(
    data_root='data/flickr30k/test_features_vit-b32'))
test_evaluator = dict(
    ann_file='data/flickr30k/annotations/karpathy_test_gt.json')
