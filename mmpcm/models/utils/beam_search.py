"""Batched greedy and beam-search decoding."""
from typing import Callable, NamedTuple, Optional

import torch

# Maps (B', t) token prefixes (``<bos>`` first) to (B', V) next-token
# log-probabilities. Greedy search passes B' = B rows, one per image; beam
# search B' = B*K rows, image-major (rows i*K .. i*K+K-1 belong to image i),
# so the caller expands its per-image context once with repeat_interleave.
StepFn = Callable[[torch.Tensor], torch.Tensor]
# Told, after each beam-search step, the ``(B*K,)`` source row of every
# surviving prefix, so that a step function with per-row state (a key/value
# cache) can reorder it.
ReorderFn = Callable[[torch.Tensor], None]


class Decoded(NamedTuple):
    """Decoding result.

    Attributes:
        tokens (torch.Tensor): ``(B, T)`` generated ids (no ``<bos>``);
            ``<eos>`` repeats after a sentence ends.
        scores (torch.Tensor): ``(B,)`` summed log-probabilities of the
            tokens up to and including the first ``<eos>``.
    """
    tokens: torch.Tensor
    scores: torch.Tensor


def greedy_search(step_fn: StepFn, batch_size: int, max_len: int, bos_id: int,
                  eos_id: int, device: torch.device) -> Decoded:
    """Pick the most likely next token at every step."""
    prefix = torch.full((batch_size, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.zeros(batch_size, device=device)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for _ in range(max_len):
        logp = step_fn(prefix)  # (B, V)
        best_logp, token = logp.max(dim=-1)  # (B,)
        token = torch.where(finished, torch.full_like(token, eos_id), token)
        scores = scores + torch.where(finished, 0.0, best_logp)
        finished = finished | (token == eos_id)
        prefix = torch.cat([prefix, token[:, None]], dim=1)  # (B, t+1)
        if bool(finished.all()):
            break
    return Decoded(prefix[:, 1:], scores)


def _beam_search(step_fn: StepFn, batch_size: int, beam_size: int,
                 max_len: int, bos_id: int, eos_id: int, device: torch.device,
                 reorder_fn: Optional[ReorderFn]) -> tuple:
    """Run the search; returns the final ``(B*K, 1+T)`` prefixes (``<bos>``
    first) and their ``(B, K)`` scores, each image's best first."""
    b, k = batch_size, beam_size
    prefix = torch.full((b * k, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.full((b, k), float('-inf'), device=device)
    scores[:, 0] = 0.0  # only the first beam is live at the start
    finished = torch.zeros(b, k, dtype=torch.bool, device=device)
    for _ in range(max_len):
        logp = step_fn(prefix)  # (B*K, V)
        v = logp.shape[-1]
        logp = logp.view(b, k, v).float()  # (B, K, V)
        ended = torch.full_like(logp, float('-inf'))
        ended[..., eos_id] = 0.0
        logp = torch.where(finished[..., None], ended, logp)
        cand = (scores[..., None] + logp).view(b, k * v)  # (B, K*V)
        scores, flat = cand.topk(k, dim=-1)  # (B, K), sorted best first
        beam = torch.div(flat, v, rounding_mode='floor')  # (B, K)
        token = flat % v  # (B, K)
        src = (beam + torch.arange(b, device=device)[:, None] * k).view(-1)
        prefix = torch.cat([prefix[src], token.view(-1, 1)], dim=1)  # (B*K, t+1)
        if reorder_fn is not None:
            reorder_fn(src)
        finished = finished.gather(1, beam) | (token == eos_id)
        if bool(finished.all()):
            break
    return prefix, scores


def beam_search(step_fn: StepFn, batch_size: int, beam_size: int, max_len: int,
                bos_id: int, eos_id: int, device: torch.device,
                reorder_fn: Optional[ReorderFn] = None) -> Decoded:
    """Batched beam search keeping ``beam_size`` prefixes per image.

    A finished beam keeps its score and can only be extended by ``<eos>`` at
    zero cost. The best-scoring beam of each image is returned. ``reorder_fn``
    (optional) is called with the surviving rows' sources after every step.
    """
    b, k = batch_size, beam_size
    prefix, scores = _beam_search(step_fn, b, k, max_len, bos_id, eos_id,
                                  device, reorder_fn)
    best = scores.argmax(dim=-1)  # (B,)
    best_rows = best + torch.arange(b, device=device) * k
    return Decoded(prefix[best_rows, 1:], scores.gather(1, best[:, None])[:, 0])


def beam_search_nbest(step_fn: StepFn, batch_size: int, beam_size: int,
                      max_len: int, bos_id: int, eos_id: int,
                      device: torch.device,
                      reorder_fn: Optional[ReorderFn] = None) -> Decoded:
    """:func:`beam_search`, returning every final beam, not only the best.

    Returns:
        Decoded: ``tokens`` of shape ``(B, K, T)`` and ``scores`` of shape
        ``(B, K)``, each image's beams best first; beam 0 is what
        :func:`beam_search` returns. A beam that never became live (fewer
        than K distinct candidates) scores ``-inf``.
    """
    b, k = batch_size, beam_size
    prefix, scores = _beam_search(step_fn, b, k, max_len, bos_id, eos_id,
                                  device, reorder_fn)
    # topk sorts the scores, so beam 0 is the argmax beam_search picks
    # (argmax takes the first of equal scores).
    return Decoded(prefix[:, 1:].reshape(b, k, -1), scores)
