# SynthImgCap-Flickr30k: CLIP ViT-B/32 features of one Stable Diffusion image
# per Karpathy-train caption (144,541 pairs); real Karpathy val/test images
# (1,000 each) for validation and test.
_base_ = ['./synth_coco_vit-b32.py']
train_data_root = 'data/flickr30k/synth_features_vit-b32'
vocab_file = 'data/flickr30k/annotations/vocab.json'
train_pipeline = [dict(type='PCMTokenizeCaption', vocab=vocab_file,
                       max_len=20)]
train_dataloader = dict(dataset=dict(data_root=train_data_root,
                                     pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(
    data_root='data/flickr30k/val_features_vit-b32'))
val_evaluator = dict(
    ann_file='data/flickr30k/annotations/karpathy_val_gt.json')
test_dataloader = dict(dataset=dict(
    data_root='data/flickr30k/test_features_vit-b32'))
test_evaluator = dict(
    ann_file='data/flickr30k/annotations/karpathy_test_gt.json')
