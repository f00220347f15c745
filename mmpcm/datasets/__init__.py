from .collate import pcm_collate
from .feature_store import (CLIPFeatureInfo, FeatureItem, FeatureStore,
                            FeatureStoreMeta, FeatureStoreWriter, ShardInfo,
                            read_meta, write_meta)
from .synth_imgcap import SynthImgCapDataset
from .image_folder import ImageFolderCaptionDataset  # noqa: F401
from .tokenize_caption import PCMTokenizeCaption

__all__ = [
    'CLIPFeatureInfo', 'FeatureItem', 'FeatureStore', 'FeatureStoreMeta',
    'FeatureStoreWriter', 'ShardInfo', 'read_meta', 'write_meta',
    'PCMTokenizeCaption', 'SynthImgCapDataset', 'pcm_collate'
]
