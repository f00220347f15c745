# PCM-Net trained on the SynC-refined pairing of its twin's synthetic data
# (pcm_flickr30k.py; only the data line differs). SynC (Kim et al., ACM MM
# 2025) re-pairs each caption with the synthetic image that suits it best and
# drops the worst 10%; it reports 65.8 CIDEr on Flickr30k (B/32; 61.3 without).
# Make the pairing first (the store's features are not copied):
#   python tools/data/refine_pairs.py data/flickr30k/synth_features_vit-b32
_base_ = ['./pcm_flickr30k.py']
train_dataloader = dict(
    dataset=dict(pairing='data/flickr30k/synth_features_vit-b32_sync'))
