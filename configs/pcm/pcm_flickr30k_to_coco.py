# PCM-Net, CLIP ViT-B/32, cross-domain: trained on SynthImgCap-Flickr30k,
# tested on MSCOCO Karpathy test. Paper (B4 / M / R / C / S):
# 17.1 / 19.6 / 43.2 / 54.9 / 12.8.
# Same as pcm_coco.py but for the training data (and so the word
# vocabulary, built from the training captions); COCO concept vocabulary.
_base_ = [
    '../_base_/models/pcm_vit-b32.py',
    '../_base_/datasets/cross_flickr30k_to_coco_vit-b32.py',
    '../_base_/schedules/noam_12e.py',
    '../_base_/default_runtime.py',
    '../_base_/compile_cuda_graphs.py',
]
model = dict(head=dict(vocab={{_base_.vocab_file}}))
