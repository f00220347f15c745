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


# ---------------------------------------------------------------- KV cache
def _decoder(norm_first: bool, final_norm: bool) -> torch.nn.TransformerDecoder:
    layer = torch.nn.TransformerDecoderLayer(16, 4, 32, dropout=0.1,
                                             batch_first=True,
                                             norm_first=norm_first)
    norm = torch.nn.LayerNorm(16) if final_norm else None
    return torch.nn.TransformerDecoder(layer, 2, norm=norm).eval()


@pytest.mark.parametrize('norm_first,final_norm', [(False, False),
                                                   (True, True)])
@pytest.mark.parametrize('beams', [1, 3])
def test_cached_decoder_steps_equal_the_full_decoder(norm_first, final_norm,
                                                     beams):
    """Each cached step gives the full decoder's output at that position."""
    from mmpcm.models.utils.kv_cache import CachedDecoder
    torch.manual_seed(0)
    decoder = _decoder(norm_first, final_norm)
    memory = torch.randn(2, 5, 16)
    padding = torch.tensor([[False] * 5, [False, False, True, True, True]])
    rows = 2 * beams
    x = torch.randn(rows, 6, 16)  # every row its own inputs
    full_memory = memory.repeat_interleave(beams, 0)
    full_padding = padding.repeat_interleave(beams, 0)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(6)
    with torch.no_grad():
        full = decoder(x, full_memory, tgt_mask=causal, tgt_is_causal=True,
                       memory_key_padding_mask=full_padding)  # (B', 6, 16)
        cache = CachedDecoder(decoder, memory, padding, beams, max_len=6)
        steps = torch.cat([cache.step(x[:, t:t + 1]) for t in range(6)], 1)
    assert torch.allclose(steps, full, atol=1e-5)
    # Padded memory positions are ignored: changing them changes nothing.
    noisy = memory.clone()
    noisy[1, 2:] = 100.0
    with torch.no_grad():
        cache = CachedDecoder(decoder, noisy, padding, beams, max_len=6)
        again = torch.cat([cache.step(x[:, t:t + 1]) for t in range(6)], 1)
    assert torch.allclose(again, full, atol=1e-5)


def test_cached_decoder_reorder_follows_the_picked_rows():
    from mmpcm.models.utils.kv_cache import CachedDecoder
    torch.manual_seed(1)
    decoder = _decoder(False, False)
    memory = torch.randn(1, 4, 16)
    padding = torch.zeros(1, 4, dtype=torch.bool)
    x = torch.randn(3, 3, 16)
    with torch.no_grad():
        cache = CachedDecoder(decoder, memory, padding, beams=3, max_len=3)
        cache.step(x[:, :1])
        cache.reorder(torch.tensor([2, 2, 0]))  # rows swap their histories
        got = cache.step(x[:, 1:2])
        picked = torch.cat([x[[2, 2, 0], :1], x[:, 1:2]], 1)  # (3, 2, 16)
        causal = torch.nn.Transformer.generate_square_subsequent_mask(2)
        full = decoder(picked, memory.expand(3, -1, -1), tgt_mask=causal)
    assert torch.allclose(got[:, 0], full[:, 1], atol=1e-5)


@pytest.mark.parametrize('beam_size', [1, 3])
def test_head_decodes_the_same_with_and_without_kv_cache(beam_size):
    from mmpcm.models import PCMCaptionHead
    torch.manual_seed(0)
    words = ['<pad>', '<bos>', '<eos>', '<unk>'] + [f'w{i}' for i in range(40)]
    head = PCMCaptionHead(words, model_dim=32, num_layers=2, num_heads=4,
                          ffn_dim=64, max_len=12).eval()
    memory = torch.randn(5, 7, 32)
    padding = torch.zeros(5, 7, dtype=torch.bool)
    padding[1, 4:] = True
    padding[3, 2:] = True
    cached = head.predict(memory, padding, beam_size)
    head.kv_cache = False
    full = head.predict(memory, padding, beam_size)
    assert torch.equal(cached.tokens, full.tokens)
    assert torch.allclose(cached.scores, full.scores, atol=1e-4)
    assert cached.tokens.shape[1] > 3  # the random model writes sentences


@pytest.mark.parametrize('kv_cache', [True, False])
@pytest.mark.parametrize('beam_size', [1, 3])
def test_head_never_decodes_unk(beam_size, kv_cache):
    """<unk> is a training class but never a decoded word: with logits that
    favour <unk> at every step (then 'dog', then <eos>), greedy and beam
    search write 'dog', not the literal '<unk>' the metric would score."""
    from mmpcm.models import PCMCaptionHead
    torch.manual_seed(0)
    words = ['<pad>', '<bos>', '<eos>', '<unk>', 'a', 'dog']
    head = PCMCaptionHead(words, model_dim=16, num_layers=1, num_heads=2,
                          ffn_dim=32, max_len=4, beam_size=beam_size,
                          kv_cache=kv_cache).eval()
    vocab = head.vocab
    with torch.no_grad():  # logits independent of the decoder state
        head.output.weight.zero_()
        head.output.bias.fill_(-5.)
        head.output.bias[[vocab.unk_id, vocab._index['dog'],
                          vocab.eos_id]] = torch.tensor([10., 5., 4.])
    logits = head.predict_logits(torch.randn(1, 16))
    assert logits.argmax(-1).item() == vocab.unk_id
    decoded = head.predict(torch.randn(2, 3, 16),
                           torch.zeros(2, 3, dtype=torch.bool))
    assert decoded.tokens[:, 0].tolist() == [vocab._index['dog']] * 2
    assert not (decoded.tokens == vocab.unk_id).any()
    assert all('<unk>' not in text and text.startswith('dog')
               for text in head.decode_text(decoded))


def test_nbest_returns_every_final_beam_best_first():
    """The table's two sentences, best first, with their probabilities;
    beam 0 is beam_search's answer."""
    from mmpcm.models.utils.beam_search import beam_search_nbest
    kw = dict(max_len=5, bos_id=BOS, eos_id=EOS, device=torch.device('cpu'))
    nbest = beam_search_nbest(table_step, 2, 2, **kw)
    best = beam_search(table_step, 2, 2, **kw)
    assert nbest.tokens.shape[:2] == (2, 2)
    assert nbest.tokens[0, 0, :2].tolist() == [B, EOS]
    assert nbest.tokens[0, 1, :3].tolist() == [A, C, EOS]
    assert [math.exp(s) for s in nbest.scores[0].tolist()] == pytest.approx(
        [0.4, 0.198], rel=1e-5)
    assert torch.equal(nbest.tokens[:, 0], best.tokens)
    assert torch.equal(nbest.scores[:, 0], best.scores)


@pytest.mark.parametrize('kv_cache', [True, False])
@pytest.mark.parametrize('beam_size', [1, 4])
def test_head_beams_start_with_the_predicted_caption(beam_size, kv_cache):
    """predict_beams' first beam is predict's caption and score, for every
    image of a batch; the others follow in falling score, as text."""
    from mmpcm.models import PCMCaptionHead
    torch.manual_seed(0)
    words = ['<pad>', '<bos>', '<eos>', '<unk>'] + [f'w{i}' for i in range(40)]
    head = PCMCaptionHead(words, model_dim=32, num_layers=2, num_heads=4,
                          ffn_dim=64, max_len=12, kv_cache=kv_cache).eval()
    memory = torch.randn(5, 7, 32)
    padding = torch.zeros(5, 7, dtype=torch.bool)
    padding[1, 4:] = True
    best = head.predict(memory, padding, beam_size)
    beams = head.predict_beams(memory, padding, beam_size)
    assert beams.scores.shape == (5, beam_size)
    assert torch.equal(beams.tokens[:, 0, :best.tokens.shape[1]], best.tokens)
    assert torch.equal(beams.scores[:, 0], best.scores)
    assert (beams.scores[:, :-1] >= beams.scores[:, 1:]).all()
    texts = head.decode_beams_text(beams)
    assert [t[0] for t in texts] == list(zip(head.decode_text(best),
                                             best.scores.tolist()))
    assert all(len(t) == beam_size for t in texts)
    if beam_size > 1:  # distinct sentences, not one sentence K times
        assert all(len({c for c, _ in t}) > 1 for t in texts)
