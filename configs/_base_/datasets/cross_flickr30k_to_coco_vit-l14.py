# Cross-domain with CLIP ViT-L/14 features: SynthImgCap-Flickr30k -> MSCOCO.
_base_ = ['./synth_coco_vit-l14.py']
train_data_root = 'data/flickr30k/synth_features_vit-l14'
vocab_file = 'data/flickr30k/annotations/vocab.json'
train_pipeline = [dict(type='PCMTokenizeCaption', vocab=vocab_file,
                       max_len=20)]
train_dataloader = dict(dataset=dict(data_root=train_data_root,
                                     pipeline=train_pipeline))
