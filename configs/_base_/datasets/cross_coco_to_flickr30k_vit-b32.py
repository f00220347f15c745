# Cross-domain: train on SynthImgCap-COCO (542,401 pairs), validate and test
# on the real Flickr30k Karpathy val/test images (1,000 each).
_base_ = ['./synth_flickr30k_vit-b32.py']
train_data_root = 'data/coco/synth_features_vit-b32'
vocab_file = 'data/coco/annotations/vocab.json'
train_pipeline = [dict(type='PCMTokenizeCaption', vocab=vocab_file,
                       max_len=20)]
train_dataloader = dict(dataset=dict(data_root=train_data_root,
                                     pipeline=train_pipeline))
