# PCM-Net, CLIP ViT-L/14, SynthImgCap-COCO -> MSCOCO Karpathy test.
# Paper: 33.6 / 26.9 / 55.4 / 113.6 / 20.8.
_base_ = [
    '../_base_/models/pcm_vit-l14.py',
    '../_base_/datasets/synth_coco_vit-l14.py',
    '../_base_/schedules/noam_12e.py',
    '../_base_/default_runtime.py',
    '../_base_/compile_cuda_graphs.py',
]
model = dict(head=dict(vocab={{_base_.vocab_file}}))
