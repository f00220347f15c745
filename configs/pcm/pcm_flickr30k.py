# PCM-Net, CLIP ViT-B/32, trained on SynthImgCap-Flickr30k, tested on
# Flickr30k Karpathy test. Paper: 26.9 / 23.0 / 50.1 / 61.3 / 16.8.
# The release uses the COCO concept vocabulary for Flickr30k too.
_base_ = [
    '../_base_/models/pcm_vit-b32.py',
    '../_base_/datasets/synth_flickr30k_vit-b32.py',
    '../_base_/schedules/noam_12e.py',
    '../_base_/default_runtime.py',
    '../_base_/compile_cuda_graphs.py',
]
model = dict(head=dict(vocab={{_base_.vocab_file}}))
