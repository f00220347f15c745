"""Converting the authors' released models (X-modaler) to mmpcm, checked
against the release's definitions restated here; no release code needed."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from mmpcm.apis import build_captioner
from mmpcm.apis.release import build_model
from mmpcm.apis.release_conversion import (ReleaseConversionError,
                                           convert_release_model,
                                           save_converted)
from mmpcm.apis.run_config import apply_checkpoint_to_cfg
from mmpcm.models import NoImageEncoderError

from release_shapes import release_state, write_release_files

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMOKE = osp.join(ROOT, 'configs', 'pcm', 'pcm_smoke.py')
# pcm_smoke.py's architecture
SMALL = dict(patch_dim=32, embed_dim=16, num_patches=16, d=64, ffn=128,
             enc_layers=1, dec_layers=1, vocab_size=9)
WORDS = ['a', 'dog', 'on', 'grass', 'red', 'ball', 'the', 'UNK']  # + '.'


@pytest.fixture
def small_release(tmp_path):
    state = release_state(seed=1, **SMALL)
    return state, write_release_files(tmp_path, state, WORDS, 16)


@pytest.fixture
def converted(small_release):
    state, files = small_release
    conv = convert_release_model(*files, SMOKE)
    model = build_model(conv.model_cfg)
    model.load_state_dict(conv.state_dict, strict=True)
    return state, conv, model.eval()


# ---------------------------------------------------------------- full size
@pytest.mark.parametrize('config, sizes', [
    ('pcm_coco.py', dict()),
    ('pcm_coco_vit-l14.py', dict(patch_dim=1024, embed_dim=768,
                                 num_patches=64)),
], ids=['vit-b32', 'vit-l14'])
def test_every_release_key_converts_and_loads_strictly(tmp_path, config,
                                                        sizes):
    """Every key name and shape of the released B/32 and L/14 models
    (10,200 COCO words) maps onto the paper config's model, strictly."""
    state = release_state(seed=0, **sizes)
    words = [f'w{i}' for i in range(10198)] + ['UNK']
    files = write_release_files(tmp_path, state, words,
                                sizes.get('embed_dim', 512))
    conv = convert_release_model(*files,
                                 osp.join(ROOT, 'configs', 'pcm', config))
    model = build_model(conv.model_cfg)
    model.load_state_dict(conv.state_dict, strict=True)
    assert len(conv.vocab) == 10200 - 1 + 3  # '.' -> bos/eos; + pad, bos
    assert type(model.backbone).__name__ == 'CLIPJointProjection'
    torch.testing.assert_close(model.backbone.proj,
                               state['visual_embed.proj'])


# ---------------------------------------------------------------- encoder
def _bert_layer(x, s, p, heads):
    """The release's BertLayer (post-LN, LayerNorm eps 1e-12), eval mode."""
    b, t, d = x.shape

    def lin(v, name):
        return F.linear(v, s[f'{name}.weight'], s[f'{name}.bias'])

    def split(v):
        return v.view(b, t, heads, d // heads).transpose(1, 2)

    q, k, v = (split(lin(x, f'{p}.attention.self.{n}'))
               for n in ('query', 'key', 'value'))
    att = (q @ k.transpose(-1, -2) / (d // heads) ** 0.5).softmax(-1)
    ctx = (att @ v).transpose(1, 2).reshape(b, t, d)
    x = F.layer_norm(lin(ctx, f'{p}.attention.output.dense') + x, (d, ),
                     s[f'{p}.attention.output.LayerNorm.weight'],
                     s[f'{p}.attention.output.LayerNorm.bias'], 1e-12)
    inter = F.relu(lin(x, f'{p}.intermediate.dense'))
    return F.layer_norm(lin(inter, f'{p}.output.dense') + x, (d, ),
                        s[f'{p}.output.LayerNorm.weight'],
                        s[f'{p}.output.LayerNorm.bias'], 1e-12)


def test_encoder_is_the_release_gtransformer_encoder(converted):
    """BERT layers from separate q/k/v, then token 0 rebuilt from the
    input's and every layer's token 0 (Linear + LayerNorm)."""
    s, _, model = converted
    tokens = torch.randn(2, 17, 64, generator=torch.Generator().manual_seed(3))
    x, firsts = tokens, [tokens[:, 0]]
    for i in range(SMALL['enc_layers']):
        x = _bert_layer(x, s, f'encoder.layers.{i}', heads=2)
        firsts.append(x[:, 0])
    rebuilt = F.layer_norm(
        F.linear(torch.cat(firsts, -1), s['encoder.gvfeat_embed.0.weight'],
                 s['encoder.gvfeat_embed.0.bias']), (64, ),
        s['encoder.gvfeat_embed.1.weight'], s['encoder.gvfeat_embed.1.bias'])
    want = torch.cat([rebuilt[:, None], x[:, 1:]], 1)
    with torch.no_grad():
        got = model.encoder(tokens, torch.zeros(2, 17, dtype=torch.bool))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # without the rebuild token 0 would be the last layer's
    assert (got[:, 0] - x[:, 0]).abs().max() > 1e-2


# ---------------------------------------------------------------- tokens
def test_token_conventions(converted):
    """Release id 0 ('.') is BOS at the input and EOS at the output; 'UNK'
    is <unk>; the loss's log-probabilities over the release's classes are
    the release's; decoding's are the release's without 'UNK'
    (renormalised), which it never emits."""
    s, conv, model = converted
    vocab = model.head.vocab
    release_words = ['.'] + WORDS
    assert conv.vocab[4:] == WORDS[:-1]
    emb, out = s['token_embed.embeddings.weight'], s['predictor.logits.weight']
    torch.testing.assert_close(model.head.word_embed.weight[vocab.bos_id],
                               emb[0])
    torch.testing.assert_close(model.head.output.weight[vocab.eos_id], out[0])
    torch.testing.assert_close(model.head.word_embed.weight[vocab.unk_id],
                               emb[release_words.index('UNK')])
    # mmpcm id of each release class
    cols = [vocab.eos_id] + [vocab.unk_id if w == 'UNK' else
                             conv.vocab.index(w) for w in WORDS]
    h = torch.randn(5, 64, generator=torch.Generator().manual_seed(0))
    release_logits = F.linear(h, out, s['predictor.logits.bias'])
    with torch.no_grad():
        logits = model.head.predict_logits(h)
        ours = model.head.mask_never_emitted(logits).log_softmax(-1)
        decoding = model.head._log_probs(h)  # <pad>, <bos>, <unk> masked
    torch.testing.assert_close(ours[:, cols], release_logits.log_softmax(-1),
                               rtol=1e-5, atol=1e-6)
    assert torch.isinf(ours[:, [vocab.pad_id, vocab.bos_id]]).all()
    release_unk = release_words.index('UNK')
    theirs = release_logits.index_fill(
        -1, torch.tensor([release_unk]), float('-inf')).log_softmax(-1)
    torch.testing.assert_close(decoding[:, cols], theirs, rtol=1e-5,
                               atol=1e-6)
    assert torch.isinf(
        decoding[:, [vocab.pad_id, vocab.bos_id, vocab.unk_id]]).all()
    # a release caption '. a dog .' decodes to the same words
    assert vocab.decode([conv.vocab.index('a'), conv.vocab.index('dog'),
                         vocab.eos_id, vocab.eos_id]) == 'a dog'


def test_vocabulary_without_unk_never_predicts_unk(tmp_path):
    sizes = dict(SMALL, vocab_size=8)
    state = release_state(seed=2, **sizes)
    files = write_release_files(tmp_path, state, WORDS[:-1], 16)
    conv = convert_release_model(*files, SMOKE)
    assert conv.state_dict['head.output.bias'][3].item() == -1e4


# ---------------------------------------------------------------- loss
def _release_loss(logits, targets, stored_scores, alpha=2.5, eps=0.1):
    """WeightedLabelSmoothing as the release defines it: stored CLIP scores
    are 2.5 x cosine; KL against 1-eps / eps/(V-1); mean over valid (j, i)
    of focal_j x loss_i (gamma 2, 'batch')."""
    v = logits.shape[-1]
    w = (stored_scores / 2.5 * alpha).clamp(0, 1)
    logp = logits.reshape(-1, v).log_softmax(-1)
    tgt = targets.reshape(-1)
    mask = tgt >= 0
    tgt = tgt.clamp(min=0)
    q = torch.full_like(logp, eps / (v - 1)).scatter(1, tgt[:, None], 1 - eps)
    tok = (q * (q.log() - logp)).sum(1) * w.repeat_interleave(logits.shape[1])
    focal = (1 - logp.exp().gather(1, tgt[:, None])) ** 2
    return (tok[None] * focal)[mask[None] & mask[:, None]].mean()


def test_loss_on_release_targets(converted):
    """Targets in the release's ids (-1 ignored, 0 = EOS) and mmpcm's give
    the same loss: focal factor, smoothing and CLIP weights included."""
    s, conv, model = converted
    vocab = model.head.vocab
    rel_targets = torch.tensor([[1, 2, 3, 0, -1, -1], [8, 5, 6, 7, 4, 0]])
    to_mm = {0: vocab.eos_id, -1: vocab.pad_id, 8: vocab.unk_id}
    mm_targets = torch.tensor(
        [[to_mm[r] if r in to_mm else conv.vocab.index((['.'] + WORDS)[r])
          for r in row] for row in rel_targets.tolist()])
    h = torch.randn(2, 6, 64, generator=torch.Generator().manual_seed(4))
    stored = torch.tensor([0.75, 2.0])  # the release stores 2.5 x cosine
    theirs = _release_loss(
        F.linear(h, s['predictor.logits.weight'], s['predictor.logits.bias']),
        rel_targets, stored)
    logits = model.head.mask_never_emitted(model.head.predict_logits(h))
    ours = model.head.loss_module(logits, mm_targets, stored / 2.5)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


# ---------------------------------------------------------------- bad input
def test_release_of_the_other_clip(tmp_path):
    state = release_state(seed=0, **dict(SMALL, patch_dim=24))
    files = write_release_files(tmp_path, state, WORDS, 16)
    with pytest.raises(ReleaseConversionError,
                       match=r'model\.pth: .*width 24.*pcm_smoke\.py is for'):
        convert_release_model(*files, SMOKE)


def test_vocabulary_of_another_model(small_release, tmp_path):
    _, (ckpt, _, concepts) = small_release
    other = tmp_path / 'other_vocabulary.txt'
    other.write_text('a\ndog\n')
    with pytest.raises(ReleaseConversionError,
                       match=r'other_vocabulary\.txt: 2 words .* 9 ids'):
        convert_release_model(ckpt, str(other), concepts, SMOKE)


def test_concepts_of_another_width(small_release, tmp_path):
    state, (ckpt, vocab, _) = small_release
    sub = tmp_path / 'wide'
    sub.mkdir()
    _, _, wide = write_release_files(sub, state, WORDS, 32)
    with pytest.raises(ReleaseConversionError,
                       match=r'concepts\.pickle: concepts of width 32'):
        convert_release_model(ckpt, vocab, wide, SMOKE)


# ---------------------------------------------------------------- files
def test_converted_files_load_in_the_tools(converted, tmp_path):
    """The release file loads strictly (no pickle); the .pth brings its
    ln_post/proj-only backbone into the config; images are refused."""
    _, conv, model = converted
    ckpt, release = save_converted(conv, str(tmp_path / 'out' / 'release'))
    loaded = build_captioner(release, device='cpu')
    feats = dict(patch_tokens=torch.randn(2, 16, 32),
                 global_embed=torch.randn(2, 16))
    with torch.no_grad():
        a = loaded.predict(feats)
        b = model.predict(feats)
    assert [s.pred_caption for s in a] == [s.pred_caption for s in b]
    cfg = apply_checkpoint_to_cfg(Config.fromfile(SMOKE), ckpt)
    assert cfg.model.backbone.type == 'CLIPJointProjection'
    with pytest.raises(NoImageEncoderError, match='--clip-weights'):
        loaded.predict(dict(images=torch.zeros(1, 3, 32, 32)))


def test_initialisation_follows_the_release():
    """Attention projections start as the release's separate nn.Linear
    layers (bound 1/sqrt(d), non-zero biases), not torch's Xavier/zero
    init; visual positions from a truncated normal of std 0.02."""
    from mmpcm.models import PCMCaptionHead, PCMNeck, VisualSemanticEncoder
    torch.manual_seed(0)
    encoder = VisualSemanticEncoder(num_layers=1, model_dim=256)
    head = PCMCaptionHead(['<pad>', '<bos>', '<eos>', '<unk>', 'a'],
                          model_dim=256, num_layers=1)
    bound = 1 / 256 ** 0.5
    for attn in (encoder.layers[0].self_attn,
                 head.decoder.layers[0].multihead_attn):
        w = attn.in_proj_weight.abs().max().item()
        assert 0.95 * bound < w <= bound  # Xavier's would be 0.077
        assert attn.in_proj_bias.abs().max().item() > 0.9 * bound
        assert attn.out_proj.bias.abs().max().item() > 0.9 * bound
    pos = PCMNeck(num_patches=49, patch_dim=32, embed_dim=16,
                  model_dim=256).pos_embed.weight
    assert pos.std().item() == pytest.approx(0.02, rel=0.1)
