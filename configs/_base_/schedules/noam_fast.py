# Fast recipe: the paper's 12 epochs of Adam + Noam at batch 1024 instead of
# 32, with bf16 autocast. Meant for one GPU (H100 class).
#
# Learning rate: square-root scaling, through the warm-up alone.
# X-modaler's NoamLR sets lr(t) = factor * d**-0.5 * min(t**-0.5,
# t * warmup**-1.5) and ignores the optimizer's lr (so --auto-scale-lr has no
# effect on it). Keeping the warm-up fixed in SAMPLES (10,000 iterations x 32
# = 320k pairs, about 0.6 epoch) gives warmup = 10000 * 32 / 1024 = 312.5
# -> 313 iterations, and then, at every number of pairs seen, the fast
# schedule's lr is sqrt(1024 / 32) = 5.66 times the paper's (warm-up and
# decay alike): peak 4.42e-4 -> 2.50e-3 with factor = 1. Square-root rather
# than linear: it is the scaling rule for Adam-type optimizers (Malladi et
# al., NeurIPS 2022; Hoffer et al., 2017), while linear scaling (factor
# 5.66, peak 1.4e-2) is far beyond what post-LN transformers train with.
# Gradient clipping by value 0.1 and the 12 epochs are kept.
#
# This recipe's CIDEr on COCO has not been checked against the paper
# recipe's; the paper recipe (noam_12e.py) is the reference for results,
# this one for speed. The offline world's check of the rule (it holds at 4x
# batch with twice the epochs; at equal epochs, fewer optimizer steps lose
# CIDEr): docs/benchmarks.md, "The fast recipe on the offline world".
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    # bf16 has float32's range: no loss scaling, no per-step inf check.
    loss_scale=dict(enabled=False),
    # fused: one kernel for the whole Adam update (CUDA, and CPU since
    # torch 2.4); same update as the paper recipe's Adam.
    optimizer=dict(type='Adam', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.,
                   fused=True),
    clip_grad=dict(type='value', clip_value=0.1),
)
param_scheduler = dict(type='NoamLR', model_size=512, warmup=313,
                       factor=1.0, by_epoch=False, end=int(1e9))
train_cfg = dict(by_epoch=True, max_epochs=12, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)
# The experiment config sets the matching loader: train_dataloader =
# dict(batch_size=1024, num_workers=12, prefetch_factor=4) (pcm_coco_fast.py).
