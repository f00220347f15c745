"""Concept vocabulary: noun counting, CLIP prompt ensembling, release files."""
import importlib.util
import json
import os
import os.path as osp
import pickle

import open_clip
import pytest
import torch
import torch.nn.functional as F

from mmpcm.models.backbones.open_clip_vit import build_open_clip
from mmpcm.models.utils.concepts import ConceptVocabulary
from mmpcm.preprocessing.concepts import (DEFAULT_TEMPLATES, NounCount,
                                          NounList, UnsafeConceptFileError,
                                          convert_release_concepts,
                                          count_nouns, load_release_concepts,
                                          read_templates, regular_plurals,
                                          top_nouns)
from mmpcm.testing import TINY_CLIP_CFG, TINY_EMBED_DIM

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

CORPUS = [
    'Two dogs chase a dog near the buses.',
    'A man and two men ride horses on the beach.',
    "The dog's ball is next to a bus and a horse.",
    'Three people and a person watch the horses.',
    'A woman holds glasses and a glass.',
    'Women stand on the beach with a dog.',
]
# dog 4 (dogs, dog, dog's, dog); horse 3; bus 2; man 2; person 2; beach 2;
# woman 2; ball 1; glass 1; glasses 1 (a listed noun of its own)
EXPECTED_TOP = [('dog', 4), ('horse', 3), ('beach', 2), ('bus', 2),
                ('man', 2), ('person', 2), ('woman', 2), ('ball', 1)]


def _tool(name):
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, 'tools', 'data', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------
# nouns
# --------------------------------------------------------------------------
@pytest.mark.parametrize('word,plurals', [
    ('dog', ('dogs', )), ('bus', ('buses', )), ('box', ('boxes', )),
    ('sandwich', ('sandwiches', )), ('puppy', ('puppies', )),
    ('toy', ('toys', )), ('potato', ('potatos', 'potatoes')),
    ('radio', ('radios', )),
])
def test_regular_plurals(word, plurals):
    assert regular_plurals(word) == plurals


def test_noun_list_forms():
    nouns = NounList.from_entries([['man', 'men'], ['dog'], ['glass'],
                                   ['glasses'], ['sky']])
    assert nouns.nouns == ('man', 'dog', 'glass', 'glasses', 'sky')
    assert nouns.singular('men') == 'man'
    assert nouns.singular('mans') is None  # given plurals replace the rules
    assert nouns.singular('dogs') == 'dog'
    assert nouns.singular("dog's") == 'dog'
    assert nouns.singular('skies') == 'sky'
    assert nouns.singular('glasses') == 'glasses'  # listed: counts for itself
    assert nouns.singular('cat') is None
    with pytest.raises(ValueError, match='listed twice'):
        NounList.from_entries([['dog'], ['cat'], ['dog']])
    with pytest.raises(ValueError, match="'mice' is a plural of both"):
        NounList.from_entries([['mouse', 'mice'], ['mic', 'mice']])


def test_shipped_noun_list():
    nouns = NounList.load()
    assert len(nouns.nouns) > 2000
    assert all(w.isalpha() and w.islower() for w in nouns.nouns)
    for word in ('person', 'dog', 'giraffe', 'pizza', 'skateboard', 'kite',
                 'umbrella', 'toilet', 'train', 'sky'):
        assert word in nouns.nouns
    for verb_like in ('stand', 'walk', 'fly', 'watch', 'top', 'side'):
        assert verb_like not in nouns.nouns
    assert nouns.singular('people') == 'person'
    assert nouns.singular('children') == 'child'
    assert nouns.singular('knives') == 'knife'


def test_top_nouns_merges_plurals_and_orders():
    nouns = NounList.load()
    counts = count_nouns(CORPUS, nouns)
    assert counts['glass'] == 1 and counts['glasses'] == 1
    top = top_nouns(CORPUS, nouns, num=8)
    assert top == [NounCount(w, c) for w, c in EXPECTED_TOP]
    assert [c.word for c in top_nouns(CORPUS, nouns, num=3)] == [
        'dog', 'horse', 'beach']
    assert [c.word for c in top_nouns(CORPUS, nouns, 100, min_count=2)] == [
        w for w, c in EXPECTED_TOP if c >= 2]


def test_read_templates(tmp_path):
    path = tmp_path / 'templates.txt'
    path.write_text('# comment\na photo of a {}.\n\n{} in the wild\n')
    assert read_templates(path) == ('a photo of a {}.', '{} in the wild')
    path.write_text('a photo\n')
    with pytest.raises(ValueError, match='exactly one'):
        read_templates(path)
    with pytest.raises(FileNotFoundError,
                       match=f'{tmp_path / "none.txt"}: no such prompt '
                       'template file; pass an existing file to --templates'):
        read_templates(tmp_path / 'none.txt')


# --------------------------------------------------------------------------
# building from a corpus with a (tiny) CLIP, through the tool
# --------------------------------------------------------------------------
def _hand_embedding(model, word, templates):
    """Normalised mean of the normalised per-template text embeddings."""
    with torch.no_grad():
        tokens = open_clip.tokenize([t.format(word) for t in templates])
        per_template = F.normalize(model.encode_text(tokens), dim=-1)
    return F.normalize(per_template.mean(dim=0), dim=-1)


def test_build_concepts_tool_with_tiny_clip(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_open_clip(model_cfg=TINY_CLIP_CFG).eval()
    weights = tmp_path / 'tiny_clip.pt'
    torch.save(model.state_dict(), weights)
    cfg = tmp_path / 'tiny_clip.json'
    cfg.write_text(json.dumps(TINY_CLIP_CFG))
    corpus = tmp_path / 'corpus.txt'
    corpus.write_bytes('\n'.join(CORPUS).encode() + b'\n\xff\xfe\n')
    out = tmp_path / 'concepts' / 'tiny.safetensors'
    counts_out = tmp_path / 'counts.json'
    _tool('build_concepts').main([
        'from-corpus', str(corpus), str(out), '--clip-model', 'custom',
        '--model-cfg', str(cfg), '--pretrained', str(weights),
        '--num-concepts', '5', '--batch-size', '7',
        '--counts-out', str(counts_out)])
    printed = capsys.readouterr()
    assert '5 concepts from 6 captions' in printed.out
    assert 'non-UTF-8' in printed.err
    vocab = ConceptVocabulary.load(str(out), clip_model='custom',
                                   embed_dim=TINY_EMBED_DIM)
    assert vocab.words == [w for w, _ in EXPECTED_TOP[:5]]
    assert json.loads(counts_out.read_text()) == [
        list(c) for c in EXPECTED_TOP[:5]]
    assert torch.allclose(vocab.embeddings.norm(dim=-1), torch.ones(5))
    for i in (0, 3):
        want = _hand_embedding(model, vocab.words[i], DEFAULT_TEMPLATES)
        assert torch.allclose(vocab.embeddings[i], want, atol=1e-5)
    # the ensemble differs from any single template
    single = _hand_embedding(model, 'dog', DEFAULT_TEMPLATES[:1])
    assert not torch.allclose(vocab.embeddings[0], single, atol=1e-3)


# --------------------------------------------------------------------------
# the authors' released concept pickle
# --------------------------------------------------------------------------
WORDS = ['person', 'dog', 'pizza']


def _release_tensor(dim=8):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(len(WORDS), dim, generator=generator).half()


def _save(path, obj, how):
    if how == 'pickle':
        with open(path, 'wb') as f:
            pickle.dump(obj, f)
    elif how == 'torch':
        torch.save(obj, path)
    else:  # torch's legacy (non-zip) format
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    return str(path)


@pytest.mark.parametrize('how', ['pickle', 'torch', 'legacy'])
def test_release_concepts_read_safely(tmp_path, how):
    tensor = _release_tensor()
    path = _save(tmp_path / 'concepts.pkl', (WORDS, tensor), how)
    words, embeddings = load_release_concepts(path)
    assert words == WORDS
    assert embeddings.dtype == torch.float32
    assert torch.equal(embeddings, tensor.float())
    vocab = convert_release_concepts(path, 'custom', embed_dim=8)
    assert vocab.words == WORDS and vocab.clip_model == 'custom'
    assert torch.allclose(vocab.embeddings,
                          F.normalize(tensor.float(), dim=-1))


def test_release_tool_and_clip_model_check(tmp_path, capsys):
    path = _save(tmp_path / 'concepts.pkl', (WORDS, _release_tensor(512)),
                 'pickle')
    out = tmp_path / 'coco_concepts_vit-b32.safetensors'
    _tool('build_concepts').main(['from-release', path, str(out),
                                  '--clip-model', 'ViT-B-32'])
    assert '3 released concepts' in capsys.readouterr().out
    vocab = ConceptVocabulary.load(str(out), clip_model='ViT-B-32',
                                   embed_dim=512)
    assert vocab.words == WORDS
    with pytest.raises(ValueError) as err:
        convert_release_concepts(path, 'ViT-L-14')
    assert str(err.value).startswith(
        f"{path}: embeddings are 512-d but CLIP 'ViT-L-14' embeds in 768-d; "
        'pass the --clip-model that made them')
    with pytest.raises(SystemExit):  # --clip-model is required
        _tool('build_concepts').main(['from-release', path, str(out)])


class _Exploit:
    """Unpickling this runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class _NestedExploit:
    """A plain-pickled 'storage' whose bytes are an exploit pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (torch.storage._load_from_bytes,
                (pickle.dumps(_Exploit(self.marker)), ))


@pytest.mark.filterwarnings('ignore:Detected pickle protocol')
@pytest.mark.parametrize('how,payload', [
    ('pickle', _Exploit), ('torch', _Exploit), ('legacy', _Exploit),
    ('pickle', _NestedExploit)])
def test_malicious_pickle_refused(tmp_path, how, payload):
    marker = tmp_path / 'pwned'
    path = _save(tmp_path / 'evil.pkl', (WORDS, payload(str(marker))), how)
    with pytest.raises(UnsafeConceptFileError, match='could run code'):
        load_release_concepts(path)
    assert not marker.exists()


def test_release_content_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_release_concepts(tmp_path / 'nope.pkl')
    assert str(err.value).startswith(
        f'{tmp_path / "nope.pkl"}: no such released concept file; pass the '
        'concept file released by the authors')
    bad = _save(tmp_path / 'a.pkl', (WORDS[:2], _release_tensor()), 'pickle')
    with pytest.raises(ValueError, match='shape'):
        load_release_concepts(bad)
    bad = _save(tmp_path / 'b.pkl', {'words': WORDS}, 'pickle')
    with pytest.raises(ValueError, match='expected a pair'):
        load_release_concepts(bad)
    bad = _save(tmp_path / 'c.pkl', ([1, 2, 3], _release_tensor()), 'torch')
    with pytest.raises(ValueError, match='list of non-empty str'):
        load_release_concepts(bad)
