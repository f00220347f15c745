# The offline toy world (mmpcm/toyworld, tools/toyworld/run.py): CLIP
# features of defective synthetic renders of the caption corpus for training;
# real renders of held-out scenes, with five references each, for testing.
# The world has no validation split, so no val loader: a toy-world config
# trains without validation and is tested at its last epoch.
dataset_type = 'SynthImgCapDataset'
world_root = 'data/toyworld'
train_data_root = world_root + '/features/train'
clip_info = dict(clip_model='local-dir:' + world_root + '/clip', num_patches=36, patch_dim=64,
                 embed_dim=64)
train_dataloader = dict(
    batch_size=64,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=train_data_root,
                 with_caption=True, **clip_info),
    num_workers=0, persistent_workers=False, pin_memory=False,
    collate_fn=dict(type='pcm_collate'))
test_dataloader = dict(
    batch_size=128,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=world_root + '/features/test',
                 with_caption=False, test_mode=True, **clip_info),
    num_workers=0, persistent_workers=False, pin_memory=False,
    collate_fn=dict(type='pcm_collate'))
test_evaluator = dict(type='PCMCaptionMetric',
                      ann_file=world_root + '/test_gt.json')
