# PCM-Net on frozen OpenAI CLIP ViT-B/32 (49 patches of width 768, 512-d),
# as the authors' release computes it (configs/mscoco_sd/vit_b32/train.yaml
# there; docs/method.md): post-LN layers with LayerNorm eps 1e-12, attention
# dropout 0.3, hidden/FFN dropout 0.2, the encoder's global-token rebuild,
# word-embedding LayerNorm + dropout 0.1, predictor dropout 0.5, visual
# embedding dropout 0.5, KL label smoothing 0.1 and the batch focal factor.
# CLIP weights: an open_clip pretrained tag, or a local file, e.g.
#   --cfg-options model.backbone.pretrained=checkpoints/ViT-B-32-openai.pt
clip_model = 'ViT-B-32'
model = dict(
    type='PCMCaptioner',
    # Host-to-device copies of the (pinned) batch overlap the GPU's work.
    data_preprocessor=dict(type='PCMDataPreprocessor', non_blocking=True),
    backbone=dict(type='OpenCLIPVisionBackbone', model_name=clip_model,
                  pretrained='openai', patch_pool=1),
    neck=dict(
        type='PCMNeck',
        concepts='data/concepts/coco_concepts_vit-b32.safetensors',
        # CLIP's clip_model, num_patches, patch_dim and embed_dim: read
        # from the backbone (PCMCaptioner).
        model_dim=512,
        top_k=5, num_selected=5, tau=0.01, concept_threshold=0.0,
        noise_var=0.016, mixup=True, dropout=0.5),
    encoder=dict(type='VisualSemanticEncoder', num_layers=3, model_dim=512,
                 num_heads=8, ffn_dim=2048, dropout=0.2, attn_dropout=0.3,
                 layer_norm_eps=1e-12, global_rebuild=True),
    head=dict(
        type='PCMCaptionHead',
        # The experiment config names the dataset base's vocab_file (the
        # vocab.json of tools/data/prepare_corpus.py); kept in checkpoints.
        vocab=None,
        model_dim=512, num_layers=3, num_heads=8, ffn_dim=2048, dropout=0.2,
        attn_dropout=0.3, embed_dropout=0.1, embed_norm=True,
        predictor_dropout=0.5, layer_norm_eps=1e-12,
        max_len=20, beam_size=3,
        loss=dict(type='CLIPWeightedCELoss', clip_weight_scale=2.5,
                  label_smoothing=0.1, smoothing='release',
                  focal_gamma=2.0)),
)
