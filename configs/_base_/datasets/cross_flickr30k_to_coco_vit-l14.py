# Cross-domain with CLIP ViT-L/14 features: SynthImgCap-Flickr30k -> MSCOCO.
_base_ = ['./synth_coco_vit-l14.py']
train_data_root = 'data/flickr30k/synth_features_vit-l14'
train_dataloader = dict(dataset=dict(data_root=train_data_root))
