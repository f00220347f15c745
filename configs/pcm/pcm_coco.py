# PCM-Net, CLIP ViT-B/32, trained on SynthImgCap-COCO, tested on MSCOCO
# Karpathy test. Paper: B4 31.5 / M 25.9 / R 53.9 / C 103.8 / S 19.7.
_base_ = [
    '../_base_/models/pcm_vit-b32.py',
    '../_base_/datasets/synth_coco_vit-b32.py',
    '../_base_/schedules/noam_12e.py',
    '../_base_/default_runtime.py',
    '../_base_/compile_cuda_graphs.py',
]
# Word vocabulary: the training corpus's vocab.json, kept in checkpoints.
model = dict(head=dict(vocab={{_base_.vocab_file}}))
