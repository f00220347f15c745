# PCM-Net on CLIP ViT-L/14 as the release trains it on SynthImgCap-Flickr30k:
# hidden/FFN dropout 0.2, not the 0.25 of COCO ViT-L/14
# (configs/flickr_sd/vit_l14/train.yaml there).
_base_ = ['./pcm_vit-l14.py']
model = dict(encoder=dict(dropout=0.2), head=dict(dropout=0.2))
