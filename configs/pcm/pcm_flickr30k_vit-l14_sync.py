# PCM-Net trained on the SynC-refined pairing of its twin's synthetic data
# (pcm_flickr30k_vit-l14.py; only the data line differs). SynC (Kim et al., ACM
# MM 2025) re-pairs each caption with the synthetic image that suits it best
# and drops the worst 10%; it reports 75.6 CIDEr on Flickr30k (L/14; 69.5
# without).
# Make the pairing first (the store's features are not copied):
#   python tools/data/refine_pairs.py data/flickr30k/synth_features_vit-l14
_base_ = ['./pcm_flickr30k_vit-l14.py']
train_dataloader = dict(
    dataset=dict(pairing='data/flickr30k/synth_features_vit-l14_sync'))
