# Paper recipe: Adam (0.9, 0.999), Noam schedule (model size 512, 10k warm-up
# iterations), 12 epochs, gradient clipping by value 0.1, no weight decay.
# The release's NoamLR ignores the optimizer's lr: its peak is
# factor / sqrt(model_size * warmup) = 4.4e-4 ("5e-4" in the paper).
# fused: one kernel for the whole Adam update (CUDA, and CPU since torch
# 2.4), the same update up to float rounding. It also keeps a compiled train
# step (compile=True) compiling once: torch.compile reads a fused Adam's lr
# as an input, while the foreach Adam that CUDA picks by default has its lr
# baked in and recompiles its step at every lr change, i.e. at every Noam
# step (docs/benchmarks.md, finding 8).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.,
                   fused=True),
    clip_grad=dict(type='value', clip_value=0.1),
)
# Noam decays for as long as training runs: an explicit open end, since the
# Runner would otherwise end it at the first run's max_iters and a resumed
# run with more epochs would keep a frozen lr.
param_scheduler = dict(type='NoamLR', model_size=512, warmup=10000,
                       factor=1.0, by_epoch=False, end=int(1e9))
train_cfg = dict(by_epoch=True, max_epochs=12, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=32)
