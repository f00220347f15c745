"""Caption head: transformer sentence decoder, CXE loss and decoding."""
import json
import math
from typing import List, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmpcm.models.utils.errors import CheckpointMismatchError
from mmpcm.models.utils.beam_search import (Decoded, beam_search,
                                           beam_search_nbest, greedy_search)
from mmpcm.models.utils.kv_cache import CachedDecoder
from mmpcm.models.utils.transformer import (init_attention_as_linear,
                                             set_attention_dropout)
from mmpcm.registry import MODELS
from mmpcm.text.vocab import WordVocabulary, build_vocabulary


class VocabularyMismatchError(CheckpointMismatchError):
    """A checkpoint's word vocabulary differs from the model's."""


def encode_vocab_tensor(words: Sequence[str]) -> torch.Tensor:
    """A word list as a ``(num_bytes,)`` uint8 tensor of UTF-8 JSON."""
    data = json.dumps(list(words), ensure_ascii=False).encode('utf-8')
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def decode_vocab_tensor(tensor: torch.Tensor) -> List[str]:
    """Inverse of :func:`encode_vocab_tensor`."""
    return json.loads(bytes(tensor.cpu().numpy().tobytes()).decode('utf-8'))


class TeacherForcing(NamedTuple):
    """Caption id rows split for a teacher-forced step.

    Attributes:
        input_ids (torch.Tensor): ``(B, max_len)`` decoder inputs, ``<bos>``
            first.
        target_ids (torch.Tensor): ``(B, max_len)`` next-token targets,
            ``<eos>`` after the last word, ``<pad>`` where there is no token.
    """
    input_ids: torch.Tensor
    target_ids: torch.Tensor


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """``(length, dim)`` sinusoidal position encodings."""
    pos = torch.arange(length, dtype=torch.float)[:, None]  # (L, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float) *
                     (-math.log(10000.0) / dim))  # (dim/2,)
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


@MODELS.register_module()
class PCMCaptionHead(BaseModule):
    """Sentence decoder of PCM-Net with CLIP-weighted cross-entropy.

    The word vocabulary is part of the head's state: it is saved in every
    checkpoint and checked when one is loaded.

    As the release computes it (``TokenBaseEmbedding``,
    ``TransformerDecoder`` with ``BertGenerationLayer``, ``BasePredictor``):
    word embedding + sinusoidal position -> LayerNorm -> dropout
    ``embed_dropout``; post-LN decoder layers (masked self-attention,
    cross-attention, FFN) with attention-probability dropout
    ``attn_dropout``, hidden/FFN dropout ``dropout`` and LayerNorm epsilon
    ``layer_norm_eps``; dropout ``predictor_dropout`` before the vocabulary
    projection. ``<pad>`` and ``<bos>`` are never predicted: their logits
    are left out of the loss's softmax and of decoding. ``<unk>`` stays a
    training target, as in the release (X-modaler's preprocessing maps rare
    words to ``'UNK'`` and its loss predicts it), but decoding never emits
    it: the metric would score the literal ``<unk>`` as a word, and the
    sentence is better off with the best real word.

    Args:
        vocab (WordVocabulary | list | str): The word vocabulary: the
            ``vocab.json`` that ``tools/data/prepare_corpus.py`` wrote, a
            word list (as a checkpoint holds it) or a ``WordVocabulary``.
        model_dim (int): Width. Defaults to 512.
        num_layers (int): Decoder layers. Defaults to 3.
        num_heads (int): Attention heads. Defaults to 8.
        ffn_dim (int): Feed-forward width. Defaults to 2048.
        dropout (float): Hidden and FFN dropout of the decoder layers.
            Defaults to 0.2.
        attn_dropout (float, optional): Dropout on the attention
            probabilities; None uses ``dropout``. Defaults to 0.3.
        embed_dropout (float): Dropout after the word embedding's LayerNorm.
            Defaults to 0.1.
        embed_norm (bool): LayerNorm after word + position embedding.
            Defaults to True.
        predictor_dropout (float): Dropout before the vocabulary
            projection. Defaults to 0.5.
        layer_norm_eps (float): LayerNorm epsilon of the decoder layers
            (release 1e-12). Defaults to 1e-12.
        max_len (int): Most tokens generated, ``<eos>`` included; training
            captions are cut to fit. Defaults to 20.
        beam_size (int): Beam size at inference; 1 decodes greedily.
            Defaults to 3.
        kv_cache (bool): Decode with cached keys and values (one new
            position per step, memory projected once); False re-runs the
            decoder over the whole prefix at every step. Both give the same
            captions up to floating-point rounding. Defaults to True.
        loss (dict | nn.Module): The loss. Defaults to
            ``dict(type='CLIPWeightedCELoss')``.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 vocab: Union[WordVocabulary, Sequence[str], str, dict],
                 model_dim: int = 512,
                 num_layers: int = 3,
                 num_heads: int = 8,
                 ffn_dim: int = 2048,
                 dropout: float = 0.2,
                 attn_dropout: Optional[float] = 0.3,
                 embed_dropout: float = 0.1,
                 embed_norm: bool = True,
                 predictor_dropout: float = 0.5,
                 layer_norm_eps: float = 1e-12,
                 max_len: int = 20,
                 beam_size: int = 3,
                 kv_cache: bool = True,
                 loss: Union[dict, nn.Module] = dict(type='CLIPWeightedCELoss'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.vocab = build_vocabulary(vocab)
        self.max_len = max_len
        self.beam_size = beam_size
        self.kv_cache = kv_cache
        self.word_embed = nn.Embedding(len(self.vocab), model_dim,
                                       padding_idx=self.vocab.pad_id)
        self.register_buffer('pos_table',
                             sinusoid_table(max_len + 1, model_dim),
                             persistent=False)
        self.embed_norm = nn.LayerNorm(model_dim) if embed_norm else None
        self.embed_dropout = nn.Dropout(embed_dropout)
        layer = nn.TransformerDecoderLayer(
            model_dim, num_heads, ffn_dim, dropout, batch_first=True,
            layer_norm_eps=layer_norm_eps)
        self.decoder = nn.TransformerDecoder(layer, num_layers)
        if attn_dropout is not None:
            set_attention_dropout(self.decoder, attn_dropout)
        init_attention_as_linear(self.decoder)
        self.predictor_dropout = nn.Dropout(predictor_dropout)
        self.output = nn.Linear(model_dim, len(self.vocab))
        self.register_buffer(
            'never_emitted',
            torch.tensor([self.vocab.pad_id, self.vocab.bos_id]),
            persistent=False)
        self.register_buffer(
            'never_decoded',
            torch.tensor(
                [self.vocab.pad_id, self.vocab.bos_id, self.vocab.unk_id]),
            persistent=False)
        self.loss_module = MODELS.build(loss) if isinstance(loss, dict) else loss
        # The vocabulary travels in the state dict as UTF-8 JSON bytes: a
        # tensor, so mmengine's broadcasts, weights_only loading and
        # safetensors all carry it.
        self.register_buffer('vocab_bytes', encode_vocab_tensor(self.vocab.words))

    # ------------------------------------------------------------ vocabulary state
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + 'vocab_bytes'
        if key in state_dict:
            self._check_vocabulary(decode_vocab_tensor(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check_vocabulary(self, theirs: List[str]) -> None:
        ours = self.vocab.words
        if theirs == ours:
            return
        first = next((i for i, (a, b) in enumerate(zip(theirs, ours))
                      if a != b), min(len(theirs), len(ours)))
        pair = (theirs[first] if first < len(theirs) else None,
                ours[first] if first < len(ours) else None)
        raise VocabularyMismatchError(
            f'The checkpoint\'s word vocabulary ({len(theirs)} words) differs '
            f'from the model\'s ({len(ours)} words, built from the config\'s '
            f'data); first difference at id {first}: checkpoint {pair[0]!r}, '
            f'model {pair[1]!r}. Test with the config the checkpoint was '
            'trained with, or let tools/test.py take the vocabulary from the '
            'checkpoint.')

    # ------------------------------------------------------------ decoder
    def forward(self, input_ids: torch.Tensor, memory: torch.Tensor,
                memory_padding: torch.Tensor) -> torch.Tensor:
        """Next-token logits.

        Args:
            input_ids (torch.Tensor): ``(B, L)`` decoder inputs.
            memory (torch.Tensor): ``(B, T, d)`` encoder output.
            memory_padding (torch.Tensor): ``(B, T)`` bool, True to ignore.

        Returns:
            torch.Tensor: ``(B, L, V)`` logits.
        """
        return self.predict_logits(
            self.decode(input_ids, memory, memory_padding))

    def predict_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` decoder states -> ``(..., V)`` logits (predictor
        dropout, then the vocabulary projection)."""
        return self.output(self.predictor_dropout(hidden))

    def embed_tokens(self, input_ids: torch.Tensor,
                     start: int = 0) -> torch.Tensor:
        """Word embedding + sinusoidal position, LayerNorm, dropout.

        Args:
            input_ids (torch.Tensor): ``(B, L)`` token ids.
            start (int): Position of the first id. Defaults to 0.

        Returns:
            torch.Tensor: ``(B, L, d)`` decoder inputs.
        """
        length = input_ids.shape[1]
        x = self.word_embed(input_ids) + self.pos_table[start:start + length]
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        return self.embed_dropout(x)  # (B, L, d)

    def decode(self, input_ids: torch.Tensor, memory: torch.Tensor,
               memory_padding: torch.Tensor) -> torch.Tensor:
        """Decoder hidden states, ``(B, L, d)``, before the output layer."""
        length = input_ids.shape[1]
        x = self.embed_tokens(input_ids)  # (B, L, d)
        causal = nn.Transformer.generate_square_subsequent_mask(
            length, device=input_ids.device, dtype=x.dtype)  # (L, L)
        return self.decoder(x, memory, tgt_mask=causal, tgt_is_causal=True,
                            memory_key_padding_mask=memory_padding)  # (B, L, d)

    def mask_never_emitted(self, logits: torch.Tensor) -> torch.Tensor:
        """``(..., V)`` logits with ``<pad>`` and ``<bos>`` set to -inf
        (the loss's classes)."""
        return logits.index_fill(-1, self.never_emitted, float('-inf'))

    def mask_never_decoded(self, logits: torch.Tensor) -> torch.Tensor:
        """``(..., V)`` logits with ``<pad>``, ``<bos>`` and ``<unk>`` set
        to -inf (the classes greedy and beam search choose from)."""
        return logits.index_fill(-1, self.never_decoded, float('-inf'))

    def loss(self, memory: torch.Tensor, memory_padding: torch.Tensor,
             caption_ids: torch.Tensor,
             clip_scores: Optional[torch.Tensor] = None) -> dict:
        """Teacher-forced loss of the ground-truth captions.

        Args:
            memory (torch.Tensor): ``(B, T, d)`` encoder output.
            memory_padding (torch.Tensor): ``(B, T)`` padding mask.
            caption_ids (torch.Tensor): ``(B, max_len + 1)`` id rows,
                ``<bos>``, words, ``<eos>``, then ``<pad>``, as
                :class:`~mmpcm.datasets.PCMTokenizeCaption` writes them
                (:meth:`~mmpcm.text.WordVocabulary.encode_row`).
            clip_scores (torch.Tensor, optional): ``(B,)`` CLIP cosines.

        Returns:
            dict: ``{'loss': scalar}``.

        Raises:
            ValueError: If the rows are not ``max_len + 1`` long (they were
                tokenized for another ``max_len``).
        """
        rows = self.split_caption_ids(caption_ids)
        logits = self(rows.input_ids, memory, memory_padding)  # (B, L, V)
        logits = self.mask_never_emitted(logits.float())
        return {'loss': self.loss_module(logits, rows.target_ids, clip_scores)}

    def split_caption_ids(self, caption_ids: torch.Tensor) -> TeacherForcing:
        """``(B, max_len + 1)`` id rows -> inputs and targets, ``(B, max_len)``
        each (every batch at ``max_len`` positions: static shapes)."""
        if caption_ids.dim() != 2 or caption_ids.shape[1] != self.max_len + 1:
            raise ValueError(
                f'Caption id rows must be (batch, max_len + 1) = (B, '
                f'{self.max_len + 1}), got {tuple(caption_ids.shape)}: they '
                'were tokenized for another max_len (PCMTokenizeCaption\'s '
                'max_len must be the head\'s).')
        rows = caption_ids.long()
        return TeacherForcing(rows[:, :-1], rows[:, 1:])  # 2 x (B, L)

    @torch.no_grad()
    def predict(self, memory: torch.Tensor, memory_padding: torch.Tensor,
                beam_size: Optional[int] = None) -> Decoded:
        """Decode captions (beam search, or greedy when the beam is 1).

        Args:
            memory (torch.Tensor): ``(B, T, d)`` encoder output.
            memory_padding (torch.Tensor): ``(B, T)`` padding mask.
            beam_size (int, optional): Overrides ``self.beam_size``.

        Returns:
            Decoded: Token ids and sentence log-probabilities.
        """
        k = beam_size or self.beam_size
        b = memory.shape[0]
        args = (self.max_len, self.vocab.bos_id, self.vocab.eos_id,
                memory.device)
        step, reorder = self._step_fns(memory, memory_padding, k)
        if k == 1:
            return greedy_search(step, b, *args)
        return beam_search(step, b, k, *args, reorder_fn=reorder)

    @torch.no_grad()
    def predict_beams(self, memory: torch.Tensor,
                      memory_padding: torch.Tensor,
                      beam_size: Optional[int] = None) -> Decoded:
        """Decode every final beam with its score, not only the best.

        The first beam of each image is the caption and score
        :meth:`predict` gives (same search, same settings).

        Args:
            memory (torch.Tensor): ``(B, T, d)`` encoder output.
            memory_padding (torch.Tensor): ``(B, T)`` padding mask.
            beam_size (int, optional): Overrides ``self.beam_size``.

        Returns:
            Decoded: ``tokens`` ``(B, K, L)`` and sentence log-probabilities
            ``scores`` ``(B, K)``, best first (``K = 1`` for greedy
            decoding; a beam that never became live scores ``-inf``). Turn
            them into text with :meth:`decode_beams_text`.
        """
        k = beam_size or self.beam_size
        if k == 1:
            decoded = self.predict(memory, memory_padding, 1)
            return Decoded(decoded.tokens[:, None], decoded.scores[:, None])
        b = memory.shape[0]
        args = (self.max_len, self.vocab.bos_id, self.vocab.eos_id,
                memory.device)
        step, reorder = self._step_fns(memory, memory_padding, k)
        return beam_search_nbest(step, b, k, *args, reorder_fn=reorder)

    def _step_fns(self, memory: torch.Tensor, memory_padding: torch.Tensor,
                  beams: int) -> tuple:
        """The step function and beam reorder hook (None without a cache)."""
        if self.kv_cache and not self.training:
            return self._cached_step(memory, memory_padding, beams)
        return self._full_step(memory, memory_padding, beams), None

    def _log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(B', d)`` last-position states -> ``(B', V)`` decoding
        log-probabilities, renormalised without ``<pad>``, ``<bos>`` and
        ``<unk>`` (-inf there)."""
        logits = self.predict_logits(hidden).float()  # (B', V)
        return self.mask_never_decoded(logits).log_softmax(dim=-1)

    def _full_step(self, memory: torch.Tensor, memory_padding: torch.Tensor,
                   beams: int):
        """Step function re-running the decoder over the whole prefix."""
        if beams > 1:
            memory = memory.repeat_interleave(beams, dim=0)  # (B*K, T, d)
            memory_padding = memory_padding.repeat_interleave(beams, dim=0)

        def step(prefix: torch.Tensor) -> torch.Tensor:
            # Only the last position's logits are needed.
            hidden = self.decode(prefix, memory, memory_padding)[:, -1]  # (B', d)
            return self._log_probs(hidden)

        return step

    def _cached_step(self, memory: torch.Tensor, memory_padding: torch.Tensor,
                     beams: int):
        """Step function and beam reorder hook over a key/value cache."""
        cache = CachedDecoder(self.decoder, memory, memory_padding, beams,
                              max_len=self.max_len + 1)

        def step(prefix: torch.Tensor) -> torch.Tensor:
            t = prefix.shape[1] - 1  # position of the newest token
            if t != cache.position:
                raise RuntimeError(f'cached decoding got position {t}, '
                                   f'expected {cache.position}')
            x = self.embed_tokens(prefix[:, -1:], start=t)  # (B', 1, d)
            return self._log_probs(cache.step(x)[:, 0])  # (B', V)

        return step, cache.reorder

    def decode_text(self, decoded: Decoded) -> List[str]:
        """Turn decoded ids into caption strings."""
        return [self.vocab.decode(row) for row in decoded.tokens.tolist()]

    def decode_beams_text(self, decoded: Decoded) -> List[List[tuple]]:
        """Turn :meth:`predict_beams` output into ``(caption, score)`` pairs
        per image, best first (beams that never became live left out)."""
        return [[(self.vocab.decode(row), score)
                 for row, score in zip(rows, scores) if score > -math.inf]
                for rows, scores in zip(decoded.tokens.tolist(),
                                        decoded.scores.tolist())]
