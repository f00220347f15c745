# Cross-domain with CLIP ViT-L/14 features: SynthImgCap-COCO -> Flickr30k.
_base_ = ['./synth_flickr30k_vit-l14.py']
train_data_root = 'data/coco/synth_features_vit-l14'
vocab_file = 'data/coco/annotations/vocab.json'
train_pipeline = [dict(type='PCMTokenizeCaption', vocab=vocab_file,
                       max_len=20)]
train_dataloader = dict(dataset=dict(data_root=train_data_root,
                                     pipeline=train_pipeline))
