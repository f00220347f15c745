# The fast recipe's scaling rule (configs/_base_/schedules/noam_fast.py)
# checked on the offline toy world: batch 4x the toy recipe's (64 -> 256)
# with the Noam warm-up kept fixed in samples (300 x 64 = 19,200 pairs -> 75
# iterations at 256), so that at every number of pairs seen the lr is
# sqrt(4) = 2x the toy recipe's (square-root scaling, as noam_fast.py does
# for 32 -> 1024), fused Adam, gradient clipping by value 0.1, and twice the
# epochs (10 -> 20): 470 optimizer steps instead of 940. fp32: mmengine's
# AmpOptimWrapper needs a GPU, so bf16 autocast is not part of this check.
# Results: docs/benchmarks.md, "The fast recipe on the offline world".
# Compare: python projects/toyworld/tools/ablation.py --variants \
#     pcm_toyworld.py pcm_toyworld_fast.py
_base_ = ['./pcm_toyworld.py']
train_dataloader = dict(batch_size=256)
optim_wrapper = dict(optimizer=dict(fused=True))
param_scheduler = dict(warmup=75)
train_cfg = dict(max_epochs=20)
