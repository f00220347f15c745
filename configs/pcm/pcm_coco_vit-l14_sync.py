# PCM-Net trained on the SynC-refined pairing of its twin's synthetic data
# (pcm_coco_vit-l14.py; only the data line differs). SynC (Kim et al., ACM MM
# 2025) re-pairs each caption with the synthetic image that suits it best and
# drops the worst 10%; it reports 119.8 CIDEr on COCO (L/14; 113.6 without).
# Make the pairing first (the store's features are not copied):
#   python tools/data/refine_pairs.py data/coco/synth_features_vit-l14
_base_ = ['./pcm_coco_vit-l14.py']
train_dataloader = dict(
    dataset=dict(pairing='data/coco/synth_features_vit-l14_sync'))
