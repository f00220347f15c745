"""Every config loads, names registered types only, and keeps bases local.

Nothing is built: ViT-L/14 at random init alone takes seconds and GBs, and
resolving each ``type`` in the registries is what a config can get wrong.
"""
import ast
import glob
import os.path as osp
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from mmengine.config import Config
from mmengine.registry import FUNCTIONS, Registry
from mmpretrain import registry as mmpretrain_registry

import mmpcm  # noqa: F401  (registers mmpcm's parts)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(ROOT, 'configs')
# The offline world's configs live with its project.
TOYWORLD_CONFIG_DIR = osp.join(ROOT, 'projects', 'toyworld', 'configs')
PCM_CONFIGS = sorted(
    glob.glob(osp.join(CONFIG_DIR, 'pcm', '*.py')) +
    glob.glob(osp.join(TOYWORLD_CONFIG_DIR, '*.py')))
ALL_CONFIGS = sorted(
    glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True) +
    glob.glob(osp.join(TOYWORLD_CONFIG_DIR, '**', '*.py'), recursive=True))

# The registry of a typed dict: by its top-level section, and inside data
# loaders and the optimizer wrapper by the nearest enclosing key.
SECTION_REGISTRIES: Dict[str, Registry] = {
    'model': mmpretrain_registry.MODELS,
    'param_scheduler': mmpretrain_registry.PARAM_SCHEDULERS,
    'default_hooks': mmpretrain_registry.HOOKS,
    'custom_hooks': mmpretrain_registry.HOOKS,
    'visualizer': mmpretrain_registry.VISUALIZERS,
    'log_processor': mmpretrain_registry.LOG_PROCESSORS,
}
DATALOADER_REGISTRIES: Dict[str, Registry] = {
    'dataset': mmpretrain_registry.DATASETS,
    'pipeline': mmpretrain_registry.TRANSFORMS,
    'sampler': mmpretrain_registry.DATA_SAMPLERS,
    'batch_sampler': mmpretrain_registry.DATA_SAMPLERS,
    'collate_fn': FUNCTIONS,
}
# Typed dicts that are not built from a registry: their allowed types.
KEY_CHOICES = {'clip_grad': ('norm', 'value')}  # OptimWrapper's grad clipping
ABLATIONS = {
    'pcm_coco_vit-l14_ablation-base.py': {
        'model.neck.mixup': False,
        'model.head.loss.use_clip_weight': False
    },
    'pcm_coco_vit-l14_ablation-mixup.py': {
        'model.head.loss.use_clip_weight': False
    },
    'pcm_coco_vit-l14_ablation-cxe.py': {
        'model.neck.mixup': False
    },
}
# cross-domain config -> (the in-domain config with the same test data, the
# in-domain config with the same training data, training set, CLIP)
CROSS_DOMAIN = {
    'pcm_coco_to_flickr30k.py':
    ('pcm_flickr30k.py', 'pcm_coco.py', 'coco', 'vit-b32'),
    'pcm_coco_to_flickr30k_vit-l14.py':
    ('pcm_flickr30k_vit-l14.py', 'pcm_coco_vit-l14.py', 'coco', 'vit-l14'),
    'pcm_flickr30k_to_coco.py':
    ('pcm_coco.py', 'pcm_flickr30k.py', 'flickr30k', 'vit-b32'),
    'pcm_flickr30k_to_coco_vit-l14.py':
    ('pcm_coco_vit-l14.py', 'pcm_flickr30k_vit-l14.py', 'flickr30k',
     'vit-l14'),
}
# The release's hidden/FFN dropout follows the training set for ViT-L/14
# (COCO 0.25, Flickr30k 0.2).
TRAINING_SET_MODEL_KEYS = ('model.encoder.dropout', 'model.head.dropout')
TRAIN_DATA_KEYS = ('train_data_root', 'train_dataloader.dataset.data_root')
# The word vocabulary is the training corpus's (tools/data/prepare_corpus.py)
VOCAB_KEYS = ('vocab_file', 'model.head.vocab')
PIPELINE_KEYS = ('train_pipeline', 'train_dataloader.dataset.pipeline')


def _load(name: str) -> Config:
    return Config.fromfile(osp.join(CONFIG_DIR, 'pcm', name))


def _flatten(obj: Any, prefix: str = '') -> Dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}`` (lists stay values)."""
    if not isinstance(obj, dict):
        return {prefix: obj}
    flat: Dict[str, Any] = {}
    for key, value in obj.items():
        flat.update(_flatten(value, f'{prefix}{key}.' if isinstance(
            value, dict) else f'{prefix}{key}'))
    return flat


def _diff(a: Config, b: Config) -> Dict[str, Tuple[Any, Any]]:
    fa, fb = _flatten(a.to_dict()), _flatten(b.to_dict())
    missing = object()
    return {
        k: (fa.get(k, missing), fb.get(k, missing))
        for k in sorted(set(fa) | set(fb))
        if fa.get(k, missing) != fb.get(k, missing)
    }


def _typed(obj: Any, path: Tuple[str, ...] = ()
           ) -> Iterator[Tuple[Tuple[str, ...], Any]]:
    """Yield ``(key path, type)`` of every dict with a ``type`` key."""
    if isinstance(obj, dict):
        if 'type' in obj:
            yield path, obj['type']
        for key, value in obj.items():
            yield from _typed(value, path + (str(key), ))
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _typed(value, path)


def _registry(path: Tuple[str, ...]) -> Registry:
    section = path[0]
    if section == 'visualizer' and 'vis_backends' in path:
        return mmpretrain_registry.VISBACKENDS
    if section.endswith('_evaluator'):
        return mmpretrain_registry.METRICS
    if section in SECTION_REGISTRIES:
        return SECTION_REGISTRIES[section]
    if section == 'optim_wrapper':
        return (mmpretrain_registry.OPTIMIZERS if 'optimizer' in path else
                mmpretrain_registry.OPTIM_WRAPPERS)
    if section.endswith('_pipeline'):
        return mmpretrain_registry.TRANSFORMS
    if section.endswith('_dataloader'):
        for key in reversed(path):
            if key in DATALOADER_REGISTRIES:
                return DATALOADER_REGISTRIES[key]
    raise AssertionError(f'no registry known for a typed dict at '
                         f'{".".join(path)}; add one to this test')


def _bases(path: str) -> List[str]:
    """The ``_base_`` entries of a config file, read without running it."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    bases: List[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_'
                for t in node.targets):
            value = ast.literal_eval(node.value)
            bases.extend([value] if isinstance(value, str) else value)
    return bases


@pytest.mark.parametrize('path', PCM_CONFIGS, ids=osp.basename)
def test_config_types_resolve(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports['imports'] == ['mmpcm.plugin']
    typed = list(_typed(cfg.to_dict()))
    sections = {p[0] for p, _ in typed}
    assert {'model', 'train_dataloader', 'test_dataloader', 'test_evaluator',
            'param_scheduler', 'optim_wrapper'} <= sections
    for key_path, name in typed:
        if key_path[-1] in KEY_CHOICES:
            assert name in KEY_CHOICES[key_path[-1]], (key_path, name)
            continue
        registry = _registry(key_path)
        assert registry.get(name) is not None, (
            f'{osp.basename(path)}: {".".join(key_path)}.type={name!r} is '
            f'not in the {registry.name} registry')


@pytest.mark.parametrize('path', ALL_CONFIGS,
                         ids=lambda p: osp.relpath(p, CONFIG_DIR))
def test_bases_stay_inside_configs(path):
    roots = tuple(osp.realpath(d) + osp.sep
                  for d in (CONFIG_DIR, TOYWORLD_CONFIG_DIR))
    for base in _bases(path):
        assert '::' not in base, f'{path}: package base {base!r}'
        target = osp.realpath(osp.join(osp.dirname(path), base))
        assert target.startswith(roots), (
            f'{path}: base {base!r} is outside configs/')
        assert osp.isfile(target), f'{path}: base {base!r} does not exist'


def _expected_compile(name: str) -> Any:
    """The ``compile`` each experiment config trains with."""
    if name.startswith(('pcm_toyworld', 'pcm_smoke', 'pcm_coco_images')):
        return None  # CPU worlds and test-only: eager
    if name == 'pcm_coco_fast.py':
        return True  # inductor's default mode at batch 1024
    return {'mode': 'reduce-overhead'}  # paper recipe: CUDA graphs


@pytest.mark.parametrize('path', PCM_CONFIGS, ids=osp.basename)
def test_paper_configs_train_with_cuda_graphs(path):
    """Every paper-recipe experiment on real data compiles its batch-32
    step with CUDA graphs (``_base_/compile_cuda_graphs.py``); the CPU
    worlds stay eager, so the quick start and the tests compile nothing."""
    cfg = Config.fromfile(path)
    compile_cfg = cfg.get('compile', None)
    if isinstance(compile_cfg, dict):
        compile_cfg = dict(compile_cfg)
    assert compile_cfg == _expected_compile(osp.basename(path))


# The release's dropout profile (configs/*/train.yaml there): hidden/FFN
# dropout, attention dropout 0.3, word embedding 0.1, predictor 0.5, visual
# embedding 0.5.
RELEASE_DROPOUT = {
    'pcm_coco.py': 0.2,
    'pcm_flickr30k.py': 0.2,
    'pcm_coco_vit-l14.py': 0.25,
    'pcm_flickr30k_vit-l14.py': 0.2,
}


@pytest.mark.parametrize('name', sorted(RELEASE_DROPOUT))
def test_paper_configs_use_the_release_dropout_profile(name):
    model = _load(name).model
    hidden = RELEASE_DROPOUT[name]
    assert model.encoder.dropout == model.head.dropout == hidden
    assert model.encoder.attn_dropout == model.head.attn_dropout == 0.3
    assert model.head.embed_dropout == 0.1 and model.head.embed_norm
    assert model.head.predictor_dropout == 0.5
    assert model.neck.dropout == 0.5
    assert model.encoder.global_rebuild
    assert model.encoder.layer_norm_eps == model.head.layer_norm_eps == 1e-12
    assert model.head.loss.focal_gamma == 2.0
    assert model.head.loss.smoothing == 'release'
    assert model.head.loss.clip_weight_scale == (4.0 if 'l14' in name
                                                 else 2.5)


@pytest.mark.parametrize('name', sorted(ABLATIONS))
def test_ablations_differ_only_in_their_switches(name):
    full = _load('pcm_coco_vit-l14.py')
    ablation = _load(name)
    diff = _diff(ablation, full)
    assert set(diff) == set(ABLATIONS[name])
    for key, value in ABLATIONS[name].items():
        assert diff[key][0] is value
    assert full.model.neck.mixup is True
    assert 'use_clip_weight' not in full.model.head.loss  # default: on


@pytest.mark.parametrize('name', sorted(CROSS_DOMAIN))
def test_cross_domain_configs_change_only_the_training_data(name):
    in_domain, train_twin, train_set, clip = CROSS_DOMAIN[name]
    cross, reference = _load(name), _load(in_domain)
    diff = _diff(cross, reference)
    data_keys = set(TRAIN_DATA_KEYS) | set(VOCAB_KEYS) | set(PIPELINE_KEYS)
    assert data_keys <= set(diff)
    assert set(diff) <= data_keys | set(TRAINING_SET_MODEL_KEYS)
    # the model is the one trained on the same data in-domain
    assert cross.model == _load(train_twin).model
    want = f'data/{train_set}/synth_features_{clip}'
    assert all(diff[key][0] == want for key in TRAIN_DATA_KEYS)
    vocab = f'data/{train_set}/annotations/vocab.json'
    assert all(diff[key][0] == vocab for key in VOCAB_KEYS)
    for key in PIPELINE_KEYS:
        assert diff[key][0] == [
            dict(type='PCMTokenizeCaption', vocab=vocab, max_len=20)]
    test_set = 'coco' if train_set == 'flickr30k' else 'flickr30k'
    assert cross.test_dataloader.dataset.data_root == (
        f'data/{test_set}/test_features_{clip}')
    assert cross.test_evaluator.ann_file == (
        f'data/{test_set}/annotations/karpathy_test_gt.json')


# SynC config -> its twin (the same experiment on the unrefined pairs)
SYNC_TWINS = {
    'pcm_coco_sync.py': 'pcm_coco.py',
    'pcm_coco_vit-l14_sync.py': 'pcm_coco_vit-l14.py',
    'pcm_flickr30k_sync.py': 'pcm_flickr30k.py',
    'pcm_flickr30k_vit-l14_sync.py': 'pcm_flickr30k_vit-l14.py',
}


@pytest.mark.parametrize('name', sorted(SYNC_TWINS))
def test_sync_configs_differ_from_their_twin_only_in_the_pairing(name):
    twin = _load(SYNC_TWINS[name])
    sync = _load(name)
    diff = _diff(sync, twin)
    assert set(diff) == {'train_dataloader.dataset.pairing'}
    assert diff['train_dataloader.dataset.pairing'][0] == (
        twin.train_dataloader.dataset.data_root + '_sync')


def test_every_sync_config_is_listed():
    found = {osp.basename(p) for p in glob.glob(
        osp.join(CONFIG_DIR, 'pcm', '*_sync.py'))}
    assert found == set(SYNC_TWINS)
