"""Greedy and batched beam search."""
import math

import pytest
import torch

from mmpcm.models import beam_search, greedy_search

PAD, BOS, EOS, A, B, C = range(6)
V = 6

# Next-token probabilities by prefix (after <bos>). Greedy takes A (0.6),
# then C (0.55), then <eos> (0.6): 0.6 * 0.55 * 0.6 = 0.198. The sentence
# "B <eos>" scores 0.4 * 1.0 = 0.4, which a beam of 2 keeps and finds.
TABLE = {
    (): {A: 0.6, B: 0.4},
    (A,): {C: 0.55, B: 0.45},
    (B,): {EOS: 1.0},
    (A, C): {EOS: 0.6, A: 0.4},
}


def table_step(prefix: torch.Tensor) -> torch.Tensor:
    out = torch.full((prefix.shape[0], V), -1e9)
    for row, seq in enumerate(prefix.tolist()):
        probs = TABLE.get(tuple(seq[1:]), {EOS: 1.0})
        for tok, p in probs.items():
            out[row, tok] = math.log(p)
    return out


def test_beam_finds_a_better_sentence_than_greedy():
    kw = dict(max_len=5, bos_id=BOS, eos_id=EOS, device=torch.device('cpu'))
    greedy = greedy_search(table_step, 2, **kw)
    beam = beam_search(table_step, 2, 2, **kw)
    assert greedy.tokens[0, :3].tolist() == [A, C, EOS]
    assert math.exp(greedy.scores[0]) == pytest.approx(0.198, rel=1e-5)
    assert beam.tokens[0, :2].tolist() == [B, EOS]
    assert math.exp(beam.scores[0]) == pytest.approx(0.4, rel=1e-5)
    assert (beam.scores > greedy.scores).all()


def test_beam_one_equals_greedy_on_a_random_model():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(V, 8)
    ctx = torch.randn(4, 8)
    out = torch.nn.Linear(8, V)

    def step(prefix):
        h = emb(prefix).mean(1) + ctx[:prefix.shape[0]]  # (B, 8)
        return out(h).log_softmax(-1)

    kw = dict(max_len=8, bos_id=BOS, eos_id=EOS, device=torch.device('cpu'))
    with torch.no_grad():
        g = greedy_search(step, 4, **kw)
        b = beam_search(step, 4, 1, **kw)
    n = min(g.tokens.shape[1], b.tokens.shape[1])
    assert torch.equal(g.tokens[:, :n], b.tokens[:, :n])
    assert torch.allclose(g.scores, b.scores)


def test_batched_beam_keeps_images_apart():
    """Each image's beams only ever extend that image's prefixes."""
    ctx = torch.tensor([A, B, C])

    def step(prefix):  # image i always prefers token ctx[i], then <eos>
        rows = prefix.shape[0] // 3
        img = torch.arange(3).repeat_interleave(rows)
        logp = torch.full((prefix.shape[0], V), -5.0)
        logp[torch.arange(len(img)), ctx[img]] = -0.1
        logp[prefix.shape[1] > 2, EOS] = 0.0
        return logp.log_softmax(-1)

    got = beam_search(step, 3, 3, 6, BOS, EOS, torch.device('cpu'))
    assert got.tokens[:, :2].tolist() == [[A, A], [B, B], [C, C]]
