"""Packed on-disk store of pre-extracted CLIP features.

A store is a folder of shards (float16 arrays and JSON records) listed by a
meta.json: :mod:`.meta` is its schema, :mod:`.reader` reads it
(:class:`FeatureStore`), :mod:`.writer` writes it, resumably
(:class:`FeatureStoreWriter`); :mod:`.pairing` is the file of a refined
caption-image pairing of a store (SynC, :class:`Pairing`).
``docs/feature_format.md`` describes the format.
"""
from .meta import (DTYPE, FORMAT_NAME, FORMAT_VERSION, GLOBAL_FILE, META_FILE,
                   PATCH_FILE, RECORDS_FILE, SHARD_PREFIX, TEXT_FILE,
                   CLIPFeatureInfo, FeatureStoreMeta, ShardInfo, read_meta,
                   write_meta)
from .pairing import (PAIRING_JSON, PAIRING_NPZ, Pairing, load_pairing,
                      save_pairing, store_meta_sha256)
from .reader import FeatureItem, FeatureStore, ShortReadError
from .sources import SOURCE_FILE, source_images, source_root
from .writer import FeatureStoreWriter

__all__ = [
    'CLIPFeatureInfo', 'ShardInfo', 'FeatureStoreMeta', 'FeatureItem',
    'FeatureStore', 'FeatureStoreWriter', 'ShortReadError', 'read_meta',
    'write_meta', 'Pairing', 'save_pairing', 'load_pairing',
    'store_meta_sha256', 'PAIRING_NPZ', 'PAIRING_JSON', 'FORMAT_NAME',
    'FORMAT_VERSION', 'DTYPE', 'META_FILE', 'PATCH_FILE', 'GLOBAL_FILE',
    'TEXT_FILE', 'RECORDS_FILE', 'SHARD_PREFIX', 'SOURCE_FILE',
    'source_images', 'source_root'
]
