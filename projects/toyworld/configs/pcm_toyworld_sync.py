# Toy world, full PCM-Net trained on the SynC-refined pairing of the world's
# synthetic pairs (only the data line differs from pcm_toyworld.py). Make
# the pairing first:
#   python tools/data/refine_pairs.py data/toyworld/features/train
# (projects/toyworld/tools/ablation.py --variants pcm_toyworld_sync.py makes
# it when missing, and reports what it did against the generator's truth).
_base_ = ['./pcm_toyworld.py']
train_dataloader = dict(
    dataset=dict(pairing='data/toyworld/features/train_sync'))
