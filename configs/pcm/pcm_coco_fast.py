# PCM-Net, CLIP ViT-B/32, SynthImgCap-COCO, fast recipe for one GPU: batch
# 1024, bf16 autocast, the Noam warm-up kept fixed in samples (square-root
# lr scaling: configs/_base_/schedules/noam_fast.py), 12 loader workers and
# the whole train step compiled. Needs CUDA (AmpOptimWrapper).
# The paper's numbers are reproduced with pcm_coco.py; this recipe's CIDEr
# on COCO is not checked (its speed and its check on the offline world:
# docs/benchmarks.md). If CIDEr falls short, train longer:
#   --cfg-options train_cfg.max_epochs=24
# Eager training: --cfg-options compile=False
_base_ = [
    '../_base_/models/pcm_vit-b32.py',
    '../_base_/datasets/synth_coco_vit-b32.py',
    '../_base_/schedules/noam_fast.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(vocab={{_base_.vocab_file}}))
# Batch 1024 (the schedule above assumes it).
train_dataloader = dict(batch_size=1024, num_workers=12, prefetch_factor=4)
compile = True
