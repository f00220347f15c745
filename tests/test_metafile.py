"""configs/pcm/metafile.yml and configs/pcm/README.md against the configs.

Every config is either a metafile model or one of the README's "Other
configs"; a model's results are the paper row its config's header comment
quotes; its name, metadata and the README's tables agree with what the
config trains. Configs are loaded, never built.
"""
import glob
import os.path as osp
import re
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

import pytest
import yaml
from mmengine.config import Config

import mmpcm

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PCM_DIR = osp.join(ROOT, 'configs', 'pcm')
METAFILE = osp.join(PCM_DIR, 'metafile.yml')
README = osp.join(PCM_DIR, 'README.md')
CONFIGS = sorted(osp.basename(p) for p in glob.glob(osp.join(PCM_DIR, '*.py')))

# The paper's row: B4 / M / R / C / S.
METRICS = ('BLEU-4', 'METEOR', 'ROUGE-L', 'CIDER', 'SPICE')
NUM = r'\d+(?:\.\d+)?'
# A number in a header comment must have a decimal point, so that "B4" or
# "ViT-L/14" are never read as one; an optional label ("B4", "M") may
# precede each.
DEC = r'\d+\.\d+'
LABEL = r'(?:[A-Za-z]+\d*\s+)?'
PAPER_ROW = re.compile(
    rf'{LABEL}({DEC})\s*/\s*{LABEL}({DEC})\s*/\s*{LABEL}({DEC})\s*/\s*'
    rf'{LABEL}({DEC})\s*/\s*{LABEL}({DEC})')

# {algorithm}[-{variant}]_{backbone}_{gpus}xb{batch}[-amp]-{epochs}e_
# {training data}[-to-{test set}]
NAME = re.compile(r'^pcm(?:-[a-z0-9-]+)?_(?P<backbone>vit-b32|vit-l14)_'
                  r'(?P<gpus>\d+)xb(?P<batch>\d+)(?:-amp)?-(?P<epochs>\d+)e_'
                  r'synth(?P<train>coco|flickr30k)(?:-to-(?P<test>coco|'
                  r'flickr30k))?$')
CLIP_MODELS = {'vit-b32': 'ViT-B-32', 'vit-l14': 'ViT-L-14'}
BACKBONES = {'ViT-B-32': 'CLIP ViT-B/32', 'ViT-L-14': 'CLIP ViT-L/14'}
TRAINING_DATA = {'coco': 'SynthImgCap-COCO',
                 'flickr30k': 'SynthImgCap-Flickr30k'}
TEST_SETS = {'coco': 'COCO', 'flickr30k': 'Flickr30k'}


@lru_cache(maxsize=None)
def metafile() -> dict:
    with open(METAFILE, encoding='utf-8') as f:
        return yaml.safe_load(f)


def models() -> List[dict]:
    return metafile()['Models']


def model_of(config: str) -> Optional[dict]:
    found = [m for m in models()
             if m['Config'] == f'configs/pcm/{config}']
    assert len(found) <= 1, f'{config} has {len(found)} metafile entries'
    return found[0] if found else None


@lru_cache(maxsize=None)
def readme() -> str:
    with open(README, encoding='utf-8') as f:
        return f.read()


def readme_section(title: str) -> str:
    """The README's text under the heading ``title``, to the next heading
    of the same or a higher level."""
    match = re.search(rf'^(#+) {re.escape(title)}\s*$', readme(), re.M)
    assert match, f'configs/pcm/README.md has no "{title}" section'
    level = len(match.group(1))
    rest = readme()[match.end():]
    end = re.search(rf'^#{{1,{level}}} ', rest, re.M)
    return rest[:end.start()] if end else rest


def table_rows(text: str) -> List[List[str]]:
    """Body rows of the markdown tables in ``text``, as stripped cells."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith('|'):
            continue
        cells = [c.strip() for c in line.strip('|').split('|')]
        if all(re.fullmatch(r':?-+:?', c) for c in cells):
            continue
        rows.append(cells)
    # Each table's header row precedes its separator; drop the headers.
    headers = [c for c in re.findall(r'^\|(.*)\|\s*\n\|\s*:?-', text, re.M)]
    header_cells = [[c.strip() for c in h.split('|')] for h in headers]
    return [r for r in rows if r not in header_cells]


def linked_config(cells: List[str]) -> Optional[str]:
    for cell in cells:
        match = re.search(r'\]\(\./([\w.-]+\.py)\)', cell)
        if match:
            return match.group(1)
    return None


def header_comment(config: str) -> str:
    lines = []
    with open(osp.join(PCM_DIR, config), encoding='utf-8') as f:
        for line in f:
            if not line.startswith('#'):
                break
            lines.append(line.lstrip('#').strip())
    return ' '.join(lines)


def header_results(config: str) -> Optional[Tuple[float, ...]]:
    """The paper row quoted in the config's header comment, if any."""
    rows = PAPER_ROW.findall(header_comment(config))
    assert len(rows) <= 1, f'{config}: {len(rows)} result rows in its header'
    return tuple(float(x) for x in rows[0]) if rows else None


@lru_cache(maxsize=None)
def load(config: str) -> Config:
    return Config.fromfile(osp.join(PCM_DIR, config))


def other_configs() -> List[str]:
    return [linked_config(r) for r in table_rows(
        readme_section('Other configs')) if linked_config(r)]


def test_metafile_structure():
    data = metafile()
    assert set(data) == {'Collections', 'Models'}
    collections = {c['Name']: c for c in data['Collections']}
    assert collections, 'no collection'
    for c in collections.values():
        assert set(c['Metadata']) >= {'Training Data', 'Architecture'}
        assert c['Paper']['Title'] and c['Paper']['URL'].startswith('https://')
        assert osp.isfile(osp.join(ROOT, c['README'])), c['README']
        assert osp.isfile(osp.join(ROOT, c['Code']['URL'])), c['Code']['URL']
        assert c['Code']['Version'] == mmpcm.__version__
    names = [m['Name'] for m in models()]
    assert len(names) == len(set(names)), 'duplicate model names'
    for m in models():
        assert m['In Collection'] in collections, m['Name']
        assert 'Weights' not in m or m['Weights'].startswith('https://')


def test_metafile_passes_model_index_check():
    """mmpretrain's metafiles are read by model-index, paths from the root."""
    model_index = pytest.importorskip('modelindex.models.ModelIndex')
    index = model_index.ModelIndex.from_dict(
        metafile(), filepath=osp.join(ROOT, 'model-index.yml'), is_root=True)
    assert index.check(silent=True) == []
    assert len(index.models) == len(models())


def test_config_paths_exist():
    for m in models():
        assert osp.isfile(osp.join(ROOT, m['Config'])), m['Config']


def test_every_config_is_covered():
    others = other_configs()
    for config in CONFIGS:
        in_metafile = model_of(config) is not None
        assert in_metafile or config in others, (
            f'{config} is neither in configs/pcm/metafile.yml nor in the '
            'README\'s "Other configs" table')
        assert not (in_metafile and config in others), (
            f'{config} is both a metafile model and an "other" config')


def test_results_are_numbers():
    for m in models():
        assert m['Results'], m['Name']
        for result in m['Results']:
            assert result['Task'] == 'Image Caption'
            assert result['Dataset'] in TEST_SETS.values()
            assert tuple(result['Metrics']) == METRICS, m['Name']
            for key, value in result['Metrics'].items():
                assert isinstance(value, (int, float)) and not isinstance(
                    value, bool), f'{m["Name"]}: {key} = {value!r}'


@pytest.mark.parametrize('config', CONFIGS)
def test_results_match_config_header(config):
    """A metafile model's results are the paper row its config quotes; a
    config that quotes no row has no metafile results."""
    quoted = header_results(config)
    model = model_of(config)
    if model is None:
        assert quoted is None, (
            f'{config} quotes paper results {quoted} but has no metafile '
            'entry')
        return
    assert quoted is not None, (
        f'{config}: no "B4 / M / R / C / S" row in its header comment')
    (result, ) = model['Results']
    listed = tuple(float(result['Metrics'][k]) for k in METRICS)
    assert listed == quoted, (
        f'{model["Name"]}: metafile {listed} != {config} header {quoted}')


@pytest.mark.parametrize('config', [c for c in CONFIGS if model_of(c)])
def test_name_and_metadata_match_config(config):
    model = model_of(config)
    cfg = load(config)
    match = NAME.match(model['Name'])
    assert match, f'{model["Name"]} does not follow the naming scheme'
    meta = model['Metadata']
    clip_model = cfg.model.backbone.model_name
    train = re.match(r'data/(coco|flickr30k)/',
                     cfg.train_dataloader.dataset.data_root).group(1)
    test = re.match(r'data/(coco|flickr30k)/',
                    cfg.test_evaluator.ann_file).group(1)
    batch = cfg.train_dataloader.batch_size
    epochs = cfg.train_cfg.max_epochs

    assert CLIP_MODELS[match['backbone']] == clip_model
    assert meta['Backbone'] == BACKBONES[clip_model]
    assert int(match['gpus']) == 1
    assert int(match['batch']) == meta['Batch Size'] == batch
    assert int(match['epochs']) == meta['Epochs'] == epochs
    assert match['train'] == train
    assert meta['Training Data'] == TRAINING_DATA[train]
    # A name without "-to-" is tested on its training corpus's real images.
    assert (match['test'] or train) == test
    assert model['Results'][0]['Dataset'] == TEST_SETS[test]


def test_readme_links_every_config():
    for config in CONFIGS:
        assert f'](./{config})' in readme(), (
            f'configs/pcm/README.md does not link {config}')


def test_readme_glance_table_matches_configs():
    rows = table_rows(readme_section('Configs at a glance'))
    by_config = {linked_config(r): r for r in rows}
    assert sorted(c for c in by_config if c) == CONFIGS
    for config, cells in by_config.items():
        cfg = load(config)
        batch, gpus = (int(x) for x in re.fullmatch(
            r'(\d+) x (\d+)', cells[5]).groups())
        assert (batch, gpus) == (cfg.train_dataloader.batch_size, 1), config
        assert int(cells[6]) == cfg.train_cfg.max_epochs, config
        model = model_of(config)
        if model is not None:
            assert cells[1] == f'`{model["Name"]}`', config


def test_readme_results_match_metafile():
    rows = [r for r in table_rows(readme_section('Models and results'))
            if linked_config(r) and sum(
                bool(re.fullmatch(NUM, c)) for c in r) == len(METRICS)]
    shown: Dict[str, int] = {}
    for cells in rows:
        config = linked_config(cells)
        model = model_of(config)
        assert model is not None, f'README results for {config}'
        assert cells[0].startswith(f'`{model["Name"]}`'), cells[0]
        numbers = tuple(float(c) for c in cells if re.fullmatch(NUM, c))
        metrics = model['Results'][0]['Metrics']
        assert numbers == tuple(float(metrics[k]) for k in METRICS), (
            f'README row of {model["Name"]}: {numbers}')
        shown[model['Name']] = shown.get(model['Name'], 0) + 1
    assert set(shown) == {m['Name'] for m in models()}, (
        'metafile models missing from the README results tables')
