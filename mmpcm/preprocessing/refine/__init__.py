"""SynC data refinement: re-pair synthetic captions with better images.

SynC (Kim et al., ACM MM 2025, arXiv 2507.18616) gives each caption of a
synthetic image-caption corpus the synthetic image that suits it best (a
text-to-image retrieval checked by an image-to-text cycle in a sentence
embedding space) and drops the worst pairs. Modules: :mod:`.search` (exact
top-k with FAISS, in chunks), :mod:`.sentence` (sentence embeddings),
:mod:`.retrieval_model` (retrieval embeddings of a store's images and captions
by an open_clip model, e.g. SigLIP2), :mod:`.parts` (resumable part files),
:mod:`.sync` (the method, the store-level run).
``tools/data/refine_pairs.py`` is the command line; the result is a
:class:`~mmpcm.datasets.feature_store.Pairing`.
"""
from .parts import PARTS_DIR
from .retrieval_model import RETRIEVAL_MODEL_SOURCE, retrieval_model_embeds
from .search import (ExactSearchIndex, MissingPackageError, TopK,
                     search_topk)
from .sentence import (CLIP_TEXT_SOURCE, clip_text_sentence_embeds,
                       encode_sentences, load_sentence_model)
from .sync import (METHOD, RefineSummary, SyncConfig, refine_pairs,
                   refine_store)

__all__ = [
    'ExactSearchIndex', 'MissingPackageError', 'TopK', 'search_topk',
    'CLIP_TEXT_SOURCE', 'clip_text_sentence_embeds', 'encode_sentences',
    'load_sentence_model', 'METHOD', 'PARTS_DIR', 'RefineSummary',
    'SyncConfig', 'refine_pairs', 'refine_store', 'RETRIEVAL_MODEL_SOURCE',
    'retrieval_model_embeds'
]
