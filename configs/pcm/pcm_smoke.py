# A seconds-long smoke run of the whole train/test path on a tiny random CLIP
# and the tiny built-in data set (python tools/data/make_smoke_data.py).
# Same bases as the paper configs; only sizes and paths are overridden, and
# 100 epochs, which the release's focal factor needs to memorise the data.
# No hidden/FFN dropout in the encoder and decoder: the runs check that the
# tiny model memorises its eight captions, which that dropout made depend on
# the seed.
_base_ = [
    '../_base_/models/pcm_vit-b32.py',
    '../_base_/datasets/synth_coco_vit-b32.py',
    '../_base_/schedules/noam_12e.py',
    '../_base_/default_runtime.py',
]
data_root = 'data/smoke'
clip_info = dict(clip_model='custom')
tiny_clip = dict(
    embed_dim=16,
    vision_cfg=dict(image_size=32, patch_size=8, width=32, layers=2,
                    head_width=16),
    text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2,
                  layers=1))
model = dict(
    backbone=dict(model_name=None, model_cfg=tiny_clip, pretrained=None),
    neck=dict(concepts=data_root + '/concepts.safetensors',
              model_dim=64, top_k=3, num_selected=3,
              dropout=0.1),
    encoder=dict(num_layers=1, model_dim=64, num_heads=2, ffn_dim=128,
                 dropout=0.0, attn_dropout=0.1),
    head=dict(vocab=data_root + '/vocab.json',
              model_dim=64, num_layers=1, num_heads=2, ffn_dim=128,
              dropout=0.0, attn_dropout=0.1, embed_dropout=0.1,
              predictor_dropout=0.1, max_len=12))
loader = dict(batch_size=4, num_workers=0, persistent_workers=False,
              pin_memory=False)
train_dataloader = dict(
    **loader,
    dataset=dict(data_root=data_root + '/train',
                 pipeline=[dict(type='PCMTokenizeCaption',
                                vocab=data_root + '/vocab.json', max_len=12)],
                 **clip_info))
# The smoke data has one evaluation set, the training features themselves
# (the run checks plumbing, it measures nothing), so validation and test
# read the same store; the best-by-CIDEr checkpoint is kept as in the paper
# configs.
val_dataloader = dict(
    **loader, dataset=dict(data_root=data_root + '/test', **clip_info))
val_evaluator = dict(ann_file=data_root + '/test_gt.json')
test_dataloader = val_dataloader
test_evaluator = val_evaluator
param_scheduler = dict(model_size=64, warmup=40, factor=0.1)
train_cfg = dict(max_epochs=100, val_interval=25)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=25))
