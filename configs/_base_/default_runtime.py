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

# Visualization (docs/visualization.md): the LoggerHook sends the train and
# val scalars to every backend, and PCMCaptionVisualizerHook draws the first
# 4 validation images (CLIP's view, PCM's selected patches and concepts, the
# predicted and reference captions) at each validation. LocalVisBackend
# writes <work_dir>/<timestamp>/vis_data/ (scalars.json, vis_image/*.png),
# TensorBoard event files go next to it: tensorboard --logdir work_dirs/<name>.
# W&B instead of or besides TensorBoard: add dict(type='WandbVisBackend')
# to vis_backends (pip install wandb). In feature mode the hook finds the
# image files through the store's extraction record, or needs
# image_root=<the folder of the val images>; without images it logs one
# warning and draws nothing.
visualizer = dict(
    type='Visualizer',
    vis_backends=[dict(type='LocalVisBackend'),
                  dict(type='TensorboardVisBackend')])
custom_hooks = [dict(type='PCMCaptionVisualizerHook', num_images=4)]

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
