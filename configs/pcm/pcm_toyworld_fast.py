# The fast recipe (configs/_base_/schedules/noam_fast.py) carried to the
# offline toy world, to check that it keeps the paper recipe's CIDEr: batch
# 8x the toy recipe's (64 -> 512) with the Noam warm-up kept fixed in
# samples (300 x 64 = 19,200 pairs -> 38 iterations at 512), so that at
# every number of pairs seen the lr is sqrt(8) = 2.83x the toy recipe's
# (square-root scaling, as noam_fast.py does for 32 -> 1024); fused Adam,
# gradient clipping by value 0.1 and the 10 epochs kept. fp32: mmengine's
# AmpOptimWrapper needs a GPU, so bf16 autocast is not part of this check.
# Compare: python tools/toyworld/ablation.py --variants pcm_toyworld.py \
#     pcm_toyworld_fast.py
_base_ = ['./pcm_toyworld.py']
train_dataloader = dict(batch_size=512)
optim_wrapper = dict(optimizer=dict(fused=True))
param_scheduler = dict(warmup=38)
