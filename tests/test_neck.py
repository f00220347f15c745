"""PCMNeck against METHOD.md steps 3-5 on a case worked out by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmpcm.models import ConceptVocabulary, PCMNeck

# Concepts in a 2-d joint space: c0 = x, c1 = y, c2 = -x.
CONCEPTS = torch.tensor([[1., 0.], [0., 1.], [-1., 0.]])
# Three patches: along x, along y, and in between (0.6, 0.8).
PATCHES = torch.tensor([[[1., 0.], [0., 1.], [.6, .8]]])
GLOBAL = torch.tensor([[1., 0.]])
TAU = 0.1


def make_neck(**kw):
    args = dict(concepts=ConceptVocabulary(['x', 'y', '-x'], CONCEPTS, 'toy'),
                num_patches=3, patch_dim=4, embed_dim=2, model_dim=8,
                top_k=2, num_selected=1, tau=TAU, concept_threshold=0.01,
                noise_var=0.0, dropout=0.0)
    args.update(kw)
    return PCMNeck(**args)


def test_concept_retrieval_by_hand():
    neck = make_neck()
    got = neck.retrieve_concepts(GLOBAL)
    # cos(g, C) / tau = [10, 0, -10]; softmax by hand:
    z = math.exp(10) + 1 + math.exp(-10)
    assert got.indices.tolist() == [[0, 1]]
    assert got.probs[0].tolist() == pytest.approx(
        [math.exp(10) / z, 1 / z], rel=1e-5)
    # p(c1) = 4.5e-5 <= threshold 0.01: masked out.
    assert got.mask.tolist() == [[True, False]]


def test_textual_patches_by_hand():
    neck = make_neck()
    sim, text = neck.textual_patches(PATCHES, neck.retrieve_concepts(GLOBAL))
    # c1 is masked (p <= threshold): zeroed before the textual patches are
    # built, as the release does, so its similarities are 0.
    assert sim[0].flatten().tolist() == pytest.approx([1, 0, 0, 0, .6, 0])
    # Patch 2: softmax([6, 0]) over (c0, zeroed c1): only c0 contributes.
    w0 = 1 / (1 + math.exp(-6))
    assert text[0, 2].tolist() == pytest.approx([w0, 0], rel=1e-5)
    # Patch 1: softmax([0, 0]): half of c0, nothing of c1.
    assert text[0, 1].tolist() == pytest.approx([0.5, 0], rel=1e-5)


def test_textual_patches_without_masked_concepts():
    neck = make_neck(concept_threshold=0.0)
    sim, text = neck.textual_patches(PATCHES, neck.retrieve_concepts(GLOBAL))
    assert sim[0].flatten().tolist() == pytest.approx([1, 0, 0, 1, .6, .8])
    # Patch 2: softmax([6, 8]) over (c0, c1).
    w0 = 1 / (1 + math.exp(2))
    assert text[0, 2].tolist() == pytest.approx([w0, 1 - w0], rel=1e-5)


def test_retrieval_normalises_its_inputs():
    neck = make_neck()
    ref = neck.retrieve_concepts(GLOBAL)
    got = neck.retrieve_concepts(3.7 * GLOBAL)  # an unnormalised embedding
    assert got.indices.tolist() == ref.indices.tolist()
    torch.testing.assert_close(got.probs, ref.probs)


def test_selection_is_fp32_under_bf16_autocast():
    """Retrieval and selection ignore autocast: bf16 would round the
    similarities and change the picks (it does on this batch: checked by
    running retrieval in bf16 by hand)."""
    gen = torch.Generator().manual_seed(0)
    table = F.normalize(torch.randn(400, 64, generator=gen), dim=-1)
    neck = PCMNeck(concepts=ConceptVocabulary([f'w{i}' for i in range(400)],
                                              table, 'toy'),
                   num_patches=49, patch_dim=16, embed_dim=64, model_dim=8,
                   noise_var=0.0, dropout=0.0).eval()
    tokens = torch.randn(64, 49, 16, generator=gen)
    base = torch.randn(64, 1, 64, generator=gen)
    joint = F.normalize(base + 0.3 * torch.randn(64, 49, 64, generator=gen),
                        dim=-1)
    g = base[:, 0] + 0.1 * torch.randn(64, 64, generator=gen)
    ref = neck(tokens, joint, g)
    ref_concepts = neck.retrieve_concepts(g).indices
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = neck(tokens, joint, g)
        got_concepts = neck.retrieve_concepts(g).indices
    assert torch.equal(got.selected, ref.selected)
    assert torch.equal(got_concepts, ref_concepts)
    bf16 = (F.normalize(g, dim=-1).bfloat16() @ table.bfloat16().t()).float()
    assert not torch.equal(bf16.topk(5).indices, ref_concepts)


@pytest.mark.parametrize('m, expected', [(1, [True, False, False]),
                                         (2, [True, False, True]),
                                         (3, [True, False, True])])
def test_selection_by_hand(m, expected):
    # A * mask = [[1, 0], [0, 0], [.6, 0]] (c1 is masked, so patch 1's
    # similarity 1 to it does not count): the best entries are (p0, c0),
    # then (p2, c0); a third is one of the tied zeros, so for M = 3 only the
    # first two are fixed.
    neck = make_neck(num_selected=m)
    concepts = neck.retrieve_concepts(GLOBAL)
    sim, _ = neck.textual_patches(PATCHES, concepts)
    selected = neck.select_patches(sim, concepts.mask)
    if m < 3:
        assert selected[0].tolist() == expected
    else:
        assert selected[0, 0] and selected[0, 2]


def _expected_tokens(neck, patch_tokens, text, types, positions, g):
    vis = neck.visual_proj(patch_tokens)
    tex = neck.textual_proj(text)
    return vis, tex, neck.global_proj(g)


def test_training_replaces_selected_patches():
    torch.manual_seed(0)
    neck = make_neck(num_selected=2).train()
    patch_tokens = torch.randn(1, 3, 4)
    out = neck(patch_tokens, PATCHES, GLOBAL)
    assert out.selected[0].tolist() == [True, False, True]
    assert out.tokens.shape == (1, 4, 8) and not out.padding_mask.any()
    _, text = neck.textual_patches(PATCHES, neck.retrieve_concepts(GLOBAL))
    vis = neck.visual_proj(patch_tokens)  # (1, 3, 8)
    tex = neck.textual_proj(text)  # (1, 3, 8)
    pre = torch.stack([
        neck.global_proj(GLOBAL)[0] + neck.type_embed.weight[0],
        tex[0, 0] + neck.type_embed.weight[1],
        vis[0, 1] + neck.type_embed.weight[0],
        tex[0, 2] + neck.type_embed.weight[1],
    ])[None] + neck.pos_embed.weight[None]  # (1, 4, 8)
    assert torch.allclose(out.tokens, neck.norm(F.relu(pre)), atol=1e-5)


def test_inference_appends_and_masks():
    neck = make_neck(num_selected=2).eval()
    patch_tokens = torch.randn(1, 3, 4)
    out = neck(patch_tokens, PATCHES, GLOBAL)
    # [global, v0, v1, v2, t0, t1, t2]: only t0 and t2 are attended to.
    assert out.tokens.shape == (1, 7, 8)
    assert out.padding_mask[0].tolist() == [False] * 4 + [False, True, False]
    _, text = neck.textual_patches(PATCHES, neck.retrieve_concepts(GLOBAL))
    vis = neck.visual_proj(patch_tokens)
    tex = neck.textual_proj(text)
    pos, typ = neck.pos_embed.weight, neck.type_embed.weight
    # Visual tokens are all kept; appended textual tokens reuse their
    # patches' positions and carry the textual type.
    assert torch.allclose(out.tokens[0, 2],
                          neck.norm(F.relu(vis[0, 1] + pos[2] + typ[0])),
                          atol=1e-5)
    assert torch.allclose(out.tokens[0, 6],
                          neck.norm(F.relu(tex[0, 2] + pos[3] + typ[1])),
                          atol=1e-5)


def test_mixup_off_is_plain_visual():
    neck = make_neck(mixup=False).train()
    out = neck(torch.randn(2, 3, 4), PATCHES.expand(2, -1, -1),
               GLOBAL.expand(2, -1))
    assert out.tokens.shape == (2, 4, 8) and not out.selected.any()
    neck.eval()
    assert neck(torch.randn(2, 3, 4), PATCHES.expand(2, -1, -1),
                GLOBAL.expand(2, -1)).tokens.shape == (2, 4, 8)


def test_noise_only_at_training():
    neck = make_neck(noise_var=0.016)
    args = (torch.randn(1, 3, 4), PATCHES, GLOBAL)
    neck.eval()
    assert torch.equal(neck(*args).tokens, neck(*args).tokens)
    neck.train()
    torch.manual_seed(0)
    a = neck(*args).tokens
    torch.manual_seed(1)
    b = neck(*args).tokens
    assert not torch.allclose(a[:, 0], b[:, 0])
    assert torch.allclose(a[:, 1:], b[:, 1:])  # patch tokens untouched


def test_textual_patches_carry_no_gradient_into_clip_space():
    neck = make_neck(num_selected=2).train()
    joint = PATCHES.clone().requires_grad_()
    g = GLOBAL.clone().requires_grad_()
    neck(torch.randn(1, 3, 4), joint, g).tokens[:, 1:].sum().backward()
    assert joint.grad is None
    assert neck.textual_proj.weight.grad is not None


def test_concept_file_for_another_clip(tmp_path):
    path = str(tmp_path / 'concepts.safetensors')
    ConceptVocabulary(['x', 'y', '-x'], CONCEPTS, 'ViT-L-14').save(path)
    with pytest.raises(ValueError, match=r'concepts\.safetensors.*ViT-L-14.*ViT-B-32'):
        PCMNeck(concepts=path, clip_model='ViT-B-32', embed_dim=2)
    with pytest.raises(ValueError, match='2-d.*512-d'):
        PCMNeck(concepts=path, clip_model='ViT-L-14', embed_dim=512)
    with pytest.raises(FileNotFoundError, match='missing.safetensors'):
        PCMNeck(concepts=str(tmp_path / 'missing.safetensors'))


def test_concept_file_errors_are_one_line_naming_the_file(tmp_path):
    from mmpcm.utils.cli import InputError, MissingInputError, error_line
    path = str(tmp_path / 'concepts.safetensors')
    ConceptVocabulary(['x', 'y', '-x'], CONCEPTS, 'ViT-L-14').save(path)
    with pytest.raises(InputError) as err:  # width of another CLIP
        PCMNeck(concepts=path, clip_model='ViT-L-14', embed_dim=512)
    line, user_error = error_line(err.value)
    assert user_error and line == (
        f"{path}: concept embeddings are 2-d (CLIP 'ViT-L-14'), but the "
        'model expects 512-d CLIP embeddings; build the concepts with the '
        "model's CLIP (tools/data/build_concepts.py), or use the config of "
        'the CLIP that made them')
    with pytest.raises(InputError) as err:  # another CLIP's name
        PCMNeck(concepts=path, clip_model='ViT-B-32', embed_dim=2)
    assert str(err.value).startswith(
        f"{path}: concepts were embedded with CLIP 'ViT-L-14', but the model "
        "uses 'ViT-B-32'; build the concepts with the model's CLIP "
        '(tools/data/build_concepts.py --clip-model ViT-B-32)')
    missing = str(tmp_path / 'missing.safetensors')
    with pytest.raises(MissingInputError, match='build it with tools/data/'
                       'build_concepts.py'):
        ConceptVocabulary.load(missing)
    text = tmp_path / 'concepts.pkl'
    text.write_text('not a safetensors file')
    with pytest.raises(InputError) as err:
        ConceptVocabulary.load(str(text))
    assert error_line(err.value)[0].startswith(
        f'{text}: not a readable safetensors concept file')


def test_concepts_travel_in_checkpoint():
    neck = make_neck()
    bare = make_neck(concepts=None)
    assert bare.concept_embeds.shape == (0, 2)
    bare.load_state_dict(neck.state_dict())
    assert torch.equal(bare.concept_embeds, neck.concept_embeds)
    other = make_neck(concepts=ConceptVocabulary(['a', 'b'], torch.eye(2), 'toy'))
    with pytest.raises(ValueError, match='different concept vocabularies'):
        other.load_state_dict(neck.state_dict())


def test_explain_by_hand():
    """The concept picture of the hand-worked case (threshold 0.0: both
    concepts kept; M = 2 entries)."""
    neck = make_neck(num_selected=2, concept_threshold=0.0).eval()
    picture = neck.explain(PATCHES, GLOBAL)
    assert neck.concept_words == ['x', 'y', '-x']
    assert picture.concept_ids.tolist() == [[0, 1]]
    assert picture.concept_kept.tolist() == [[True, True]]
    # Entries (patch, concept) by similarity: (0, c0) 1, (1, c1) 1, then
    # (2, c1) .8: patches 0 and 1 are selected.
    assert picture.selected.tolist() == [[True, True, False]]
    # Each patch takes its most similar kept concept: x, y, y (.8 > .6).
    assert picture.patch_concept.tolist() == [[0, 1, 1]]
    assert picture.patch_similarity[0].tolist() == pytest.approx([1, 1, .8])
    # The selection is the one forward() appends at inference.
    out = neck(torch.randn(1, 3, 4), PATCHES, GLOBAL)
    assert out.selected.tolist() == picture.selected.tolist()


def test_explain_ignores_masked_concepts():
    neck = make_neck(num_selected=1).eval()  # c1 masked (p <= 0.01)
    picture = neck.explain(PATCHES, GLOBAL)
    assert picture.concept_kept.tolist() == [[True, False]]
    assert picture.patch_concept.tolist() == [[0, 0, 0]]
    assert picture.patch_similarity[0].tolist() == pytest.approx([1, 0, .6])
    assert picture.selected.tolist() == [[True, False, False]]
