# SynthImgCap-COCO training (as synth_coco_vit-b32.py), but the MSCOCO
# Karpathy test IMAGES are read from the image files and encoded by the
# model's frozen CLIP online (no pre-extracted test features).
# Files are read as 8-bit RGB first (mmpcm.datasets.transforms.load_image:
# EXIF orientation, transparency on white, the same pixels as captioning and
# feature extraction), then open_clip's preprocessing: shorter side to 224
# (bicubic), center crop. Every file is checked (header, PNG checksums, JPEG
# end marker) before the checkpoint loads; all bad ones are named in one
# error. The COCO-format reference file must give each image its "file_name"
# (relative to data/coco/, e.g. "val2014/COCO_val2014_000000391895.jpg")
# and the "id" its references use.
_base_ = ['./synth_coco_vit-b32.py']
test_ann_file = 'data/coco/annotations/karpathy_test_gt.json'
test_dataloader = dict(
    num_workers=4,
    dataset=dict(
        _delete_=True,
        type='ImageFolderCaptionDataset',
        data_root='data/coco',
        ann_file='annotations/karpathy_test_gt.json',
        data_prefix=dict(img_path=''),
        image_size=224,
        test_mode=True),
)
test_evaluator = dict(type='PCMCaptionMetric', ann_file=test_ann_file)
