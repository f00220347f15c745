"""Training captions -> fixed-length word-id rows, in the data loader."""
from typing import Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform

from mmpcm.registry import TRANSFORMS
from mmpcm.text.vocab import WordVocabulary, build_vocabulary


@TRANSFORMS.register_module()
class PCMTokenizeCaption(BaseTransform):
    """Tokenize an item's ground-truth caption with the word vocabulary.

    Reads ``results['data_samples'].gt_caption`` and adds
    ``results['inputs']['caption_ids']``: ``(max_len + 1,)`` int64 ids,
    ``<bos>``, the words (cut to ``max_len - 1``), ``<eos>``, then
    ``<pad>`` (:meth:`~mmpcm.text.WordVocabulary.encode_row`), which
    :meth:`~mmpcm.models.PCMCaptionHead.loss` splits into decoder inputs
    and targets. It runs in the loader workers, so the training step
    receives a static ``(B, max_len + 1)`` tensor.

    The vocabulary is the ``vocab.json`` that
    ``tools/data/prepare_corpus.py`` wrote; the config names it once, for
    this transform and for the caption head, and ``max_len`` must be the
    head's (the head refuses rows of another length).

    Args:
        vocab (str | list[str] | WordVocabulary): ``vocab.json``, a word
            list or a vocabulary.
        max_len (int): Most tokens predicted, ``<eos>`` included (the
            head's ``max_len``). Defaults to 20.

    Raises:
        MissingInputError: If the vocabulary file does not exist.
        InputError: If it is not a word list with the special tokens first.
        KeyError: At transform time, if the item has no ``gt_caption``.
    """

    def __init__(self,
                 vocab: Union[str, Sequence[str], WordVocabulary],
                 max_len: int = 20) -> None:
        if max_len < 1:
            raise ValueError(f'max_len must be at least 1, got {max_len}.')
        self.vocab = build_vocabulary(vocab)
        self.max_len = max_len

    def transform(self, results: dict) -> dict:
        """Add ``inputs['caption_ids']`` (``(max_len + 1,)`` int64)."""
        sample = results['data_samples']
        if 'gt_caption' not in sample:
            raise KeyError(
                'PCMTokenizeCaption: the item has no gt_caption; use it in '
                'the training pipeline of a dataset built with '
                'with_caption=True.')
        ids: np.ndarray = self.vocab.encode_row(sample.gt_caption,
                                                self.max_len)
        results['inputs']['caption_ids'] = ids
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(vocab={len(self.vocab)} words, '
                f'max_len={self.max_len})')
