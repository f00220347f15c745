# PCM-Net, CLIP ViT-B/32, trained on SynthImgCap-COCO, tested on the MSCOCO
# Karpathy test IMAGES (online CLIP) instead of pre-extracted features; the
# captions equal those of pcm_coco.py on features of the same images.
#   python tools/test.py configs/pcm/pcm_coco_images.py CHECKPOINT_OR_RELEASE
# Adds CLIP-S / RefCLIP-S, computed with the full CLIP ViT-B/32 (its text
# tower is not part of the captioner): name a local weights file with
#   --cfg-options test_evaluator.1.pretrained=checkpoints/ViT-B-32-openai.pt
_base_ = [
    '../_base_/models/pcm_vit-b32.py',
    '../_base_/datasets/coco_test_images.py',
    '../_base_/schedules/noam_12e.py',
    '../_base_/default_runtime.py',
]
# Word vocabulary: the training corpus's vocab.json, kept in checkpoints.
model = dict(head=dict(vocab={{_base_.vocab_file}}))
test_evaluator = [
    dict(type='PCMCaptionMetric', ann_file={{_base_.test_ann_file}}),
    dict(type='PCMCLIPScore', model_name={{_base_.clip_model}},
         pretrained='openai', ann_file={{_base_.test_ann_file}}),
]
