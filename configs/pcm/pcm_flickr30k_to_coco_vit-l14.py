# PCM-Net, CLIP ViT-L/14, cross-domain: SynthImgCap-Flickr30k -> MSCOCO
# Karpathy test. Paper: 17.9 / 20.3 / 44.0 / 61.3 / 13.5.
_base_ = [
    '../_base_/models/pcm_vit-l14_flickr30k.py',
    '../_base_/datasets/cross_flickr30k_to_coco_vit-l14.py',
    '../_base_/schedules/noam_12e.py',
    '../_base_/default_runtime.py',
    '../_base_/compile_cuda_graphs.py',
]
model = dict(head=dict(vocab={{_base_.vocab_file}}))
