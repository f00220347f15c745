# PCM-Net, CLIP ViT-L/14, cross-domain: SynthImgCap-COCO -> Flickr30k
# Karpathy test. Paper: 23.9 / 21.2 / 47.8 / 55.9 / 14.2.
_base_ = [
    '../_base_/models/pcm_vit-l14.py',
    '../_base_/datasets/cross_coco_to_flickr30k_vit-l14.py',
    '../_base_/schedules/noam_12e.py',
    '../_base_/default_runtime.py',
    '../_base_/compile_cuda_graphs.py',
]
model = dict(head=dict(vocab={{_base_.vocab_file}}))
