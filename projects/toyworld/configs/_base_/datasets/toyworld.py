# The offline toy world (projects/toyworld; tools/run.py there builds it):
# CLIP features of defective synthetic renders of the caption corpus for
# training; real renders of held-out scenes, with five references each, for
# testing. The world has no validation split, so no val loader: a toy-world
# config trains without validation and is tested at its last epoch.
dataset_type = 'SynthImgCapDataset'
# Another world (run.py --world DIR) for tools/test.py and tools/train.py:
# MMPCM_TOYWORLD=DIR in the environment.
world_root = '{{$MMPCM_TOYWORLD:data/toyworld}}'
train_data_root = world_root + '/features/train'
# The word vocabulary the world's corpus preparation wrote (min count 2):
# the training pipeline tokenizes with it, and the experiment config gives it
# to the caption head (which keeps it in every checkpoint).
vocab_file = world_root + '/vocab.json'
train_pipeline = [dict(type='PCMTokenizeCaption', vocab=vocab_file,
                       max_len=20)]
# The stores must hold features of the world's CLIP (their meta.json is
# checked); the feature shapes are checked against the model's backbone at
# the first batch.
clip_info = dict(clip_model='local-dir:' + world_root + '/clip')
train_dataloader = dict(
    batch_size=64,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=train_data_root,
                 with_caption=True, pipeline=train_pipeline, **clip_info),
    num_workers=0, persistent_workers=False, pin_memory=False,
    collate_fn=dict(type='pcm_collate'))
test_dataloader = dict(
    batch_size=128,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=world_root + '/features/test',
                 with_caption=False, test_mode=True, **clip_info),
    num_workers=0, persistent_workers=False, pin_memory=False,
    collate_fn=dict(type='pcm_collate'))
# Caption metrics, and object hallucination (CHAIR, Rohrbach et al. 2018)
# against each test scene's true objects: by shape ("a star" where there is
# none) and by coloured shape ("a red star" where the star is blue).
test_evaluator = [
    # SPICE needs Stanford CoreNLP, which an offline machine does not have
    dict(type='PCMCaptionMetric', ann_file=world_root + '/test_gt.json',
         metrics=['BLEU', 'METEOR', 'ROUGE_L', 'CIDEr']),
    dict(type='PCMCHAIRMetric', objects_file=world_root + '/test_objects.json',
         synonyms=world_root + '/object_synonyms.json'),
    dict(type='PCMCHAIRMetric', prefix='chair_colour',
         objects_file=world_root + '/test_coloured_objects.json',
         synonyms=world_root + '/coloured_object_synonyms.json'),
]
