# Cross-domain: train on SynthImgCap-COCO (542,401 pairs), validate and test
# on the real Flickr30k Karpathy val/test images (1,000 each).
_base_ = ['./synth_flickr30k_vit-b32.py']
train_data_root = 'data/coco/synth_features_vit-b32'
train_dataloader = dict(dataset=dict(data_root=train_data_root))
