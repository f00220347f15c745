# PCM-Net, CLIP ViT-B/32, cross-domain: trained on SynthImgCap-COCO, tested
# on Flickr30k Karpathy test. Paper (B4 / M / R / C / S):
# 20.8 / 19.2 / 45.2 / 45.5 / 12.9.
# Same as pcm_flickr30k.py but for the training data (and so the word
# vocabulary, built from the training captions); COCO concept vocabulary.
_base_ = [
    '../_base_/models/pcm_vit-b32.py',
    '../_base_/datasets/cross_coco_to_flickr30k_vit-b32.py',
    '../_base_/schedules/noam_12e.py',
    '../_base_/default_runtime.py',
    '../_base_/compile_cuda_graphs.py',
]
model = dict(head=dict(vocab={{_base_.vocab_file}}))
