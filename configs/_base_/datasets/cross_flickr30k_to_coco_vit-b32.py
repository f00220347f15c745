# Cross-domain: train on SynthImgCap-Flickr30k (144,541 pairs), validate and
# test on the real MSCOCO Karpathy val/test images (5,000 each).
_base_ = ['./synth_coco_vit-b32.py']
train_data_root = 'data/flickr30k/synth_features_vit-b32'
vocab_file = 'data/flickr30k/annotations/vocab.json'
train_pipeline = [dict(type='PCMTokenizeCaption', vocab=vocab_file,
                       max_len=20)]
train_dataloader = dict(dataset=dict(data_root=train_data_root,
                                     pipeline=train_pipeline))
