# Cross-domain with CLIP ViT-L/14 features: SynthImgCap-COCO -> Flickr30k.
_base_ = ['./synth_flickr30k_vit-l14.py']
train_data_root = 'data/coco/synth_features_vit-l14'
train_dataloader = dict(dataset=dict(data_root=train_data_root))
