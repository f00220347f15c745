# SynthImgCap-COCO: CLIP ViT-B/32 features of one Stable Diffusion image per
# Karpathy-train caption (542,401 pairs) for training; real Karpathy val/test
# images (5,000 each) for validation and test. Layout: docs/feature_format.md.
dataset_type = 'SynthImgCapDataset'
train_data_root = 'data/coco/synth_features_vit-b32'
# The word vocabulary tools/data/prepare_corpus.py wrote from the training
# captions: the training pipeline tokenizes with it, and the experiment
# config gives it to the caption head (which keeps it in every checkpoint).
vocab_file = 'data/coco/annotations/vocab.json'
train_pipeline = [dict(type='PCMTokenizeCaption', vocab=vocab_file,
                       max_len=20)]
# The store must hold features of this CLIP (its meta.json is checked); the
# feature shapes are checked against the model's backbone at the first batch.
clip_info = dict(clip_model='ViT-B-32')

train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pcm_collate'),
    dataset=dict(type=dataset_type, data_root=train_data_root,
                 with_caption=True, pipeline=train_pipeline, **clip_info),
)
# Evaluation decodes 1,000 images per batch (beam search with the KV cache;
# its speed: docs/benchmarks.md).
val_dataloader = dict(
    batch_size=1000,
    num_workers=2,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pcm_collate'),
    dataset=dict(type=dataset_type, data_root='data/coco/val_features_vit-b32',
                 with_caption=False, test_mode=True, **clip_info),
)
val_evaluator = dict(type='PCMCaptionMetric',
                     ann_file='data/coco/annotations/karpathy_val_gt.json')
test_dataloader = dict(
    batch_size=1000,
    num_workers=2,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pcm_collate'),
    dataset=dict(type=dataset_type,
                 data_root='data/coco/test_features_vit-b32',
                 with_caption=False, test_mode=True, **clip_info),
)
test_evaluator = dict(type='PCMCaptionMetric',
                      ann_file='data/coco/annotations/karpathy_test_gt.json')
