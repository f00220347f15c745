# PCM-Net, CLIP ViT-L/14, SynthImgCap-Flickr30k -> Flickr30k Karpathy test.
# Paper: 28.5 / 24.3 / 51.4 / 69.5 / 18.2.
_base_ = [
    '../_base_/models/pcm_vit-l14_flickr30k.py',
    '../_base_/datasets/synth_flickr30k_vit-l14.py',
    '../_base_/schedules/noam_12e.py',
    '../_base_/default_runtime.py',
    '../_base_/compile_cuda_graphs.py',
]
model = dict(head=dict(vocab={{_base_.vocab_file}}))
