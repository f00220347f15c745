# Runtime shared by every mmpcm config.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmpcm.plugin'], allow_failed_imports=False)

# Checkpoint choice: validation (Karpathy val, every epoch) keeps the best
# checkpoint by CIDEr, best_coco-caption_CIDEr_epoch_N.pth, which
# tools/test.py and tools/caption.py take from a work dir by default
# (mmpcm/apis/best_checkpoint.py). The key is PCMCaptionMetric's CIDEr under
# its default prefix; mmengine cannot infer the rule for it.
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3,
                    save_best='coco-caption/CIDEr', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),  # tools/train.py switches to gloo without CUDA
)

log_processor = dict(by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
