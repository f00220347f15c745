# Cross-domain: train on SynthImgCap-Flickr30k (144,541 pairs), validate and
# test on the real MSCOCO Karpathy val/test images (5,000 each).
_base_ = ['./synth_coco_vit-b32.py']
train_data_root = 'data/flickr30k/synth_features_vit-b32'
train_dataloader = dict(dataset=dict(data_root=train_data_root))
