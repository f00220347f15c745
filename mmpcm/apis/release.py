"""Captioners from releases and checkpoints: build, check, publish.

The file format itself (reading and writing a release) is
:mod:`mmpcm.utils.release_file`; ``docs/release_format.md``.
"""
import ast
import copy
import json
import os.path as osp
from typing import Any, Dict, List, NamedTuple, Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmpcm.setup_env import register_all_modules
from mmpcm.utils.fileio import sha256_file
from mmpcm.utils.release_file import (VOCAB_KEY, Release, ReleaseFormatError,
                                      ReleaseInfo, is_release_file,
                                      load_release, read_release_info,
                                      save_release)

_CONCEPTS_KEY = 'neck.concept_embeds'

ConfigLike = Union[str, Config, dict]


class ModelSource(NamedTuple):
    """A buildable captioner: config + weights, from either file kind.

    Attributes:
        model_cfg (dict): Buildable ``PCMCaptioner`` config (vocabulary from
            the weights; no concept or CLIP weight file needed).
        state_dict (dict[str, torch.Tensor]): The weights.
        kind (str): ``'release'`` or ``'checkpoint'``.
        path (str): The file.
        release_info (ReleaseInfo, optional): For releases.

    The neck config holds the concept words when they are known (a
    release's recorded words, or a checkpoint's training concept file when
    it still holds the checkpoint's table; :func:`with_concept_words`).
    """
    model_cfg: dict
    state_dict: Dict[str, torch.Tensor]
    kind: str
    path: str
    release_info: Optional[ReleaseInfo] = None


# --------------------------------------------------------------------------
# configs from checkpoints, without executing them
# --------------------------------------------------------------------------
def _literal(node: ast.AST) -> Any:
    """Evaluate literals, containers and ``dict(k=v)`` calls; nothing else."""
    if isinstance(node, ast.Call):
        if (isinstance(node.func, ast.Name) and node.func.id == 'dict'
                and not node.args
                and all(k.arg is not None for k in node.keywords)):
            return {k.arg: _literal(k.value) for k in node.keywords}
        raise ValueError('only dict(key=value) calls are allowed')
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys,
                                                          node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    return ast.literal_eval(node)


def model_cfg_from_text(text: str, source: str) -> dict:
    """The ``model`` of a config text, parsed as literals (never executed).

    mmengine stores the run's config as Python text in every checkpoint
    (``meta['cfg']``, its ``pretty_text``: literals and ``dict(...)``).

    Args:
        text (str): The config text.
        source (str): Where it came from, for error messages.

    Returns:
        dict: The ``model`` config.

    Raises:
        ValueError: If there is no ``model = ...`` made only of literals.
    """
    try:
        tree = ast.parse(text)
    except SyntaxError as error:
        raise ValueError(f'{source}: config text does not parse '
                         f'({error})') from None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == 'model'):
            try:
                model = _literal(node.value)
            except ValueError as error:
                raise ValueError(
                    f'{source}: the model config is not plain literals '
                    f'({error}); pass the training config.') from None
            if isinstance(model, dict):
                return model
    raise ValueError(f'{source}: no "model = dict(...)" in the config text; '
                     'pass the training config.')


def _config_model(config: ConfigLike) -> dict:
    """The ``model`` dict of a config file, Config or dict."""
    if isinstance(config, str):
        config = Config.fromfile(config)
    model = config['model'] if 'model' in config else config
    return model.to_dict() if hasattr(model, 'to_dict') else copy.deepcopy(
        dict(model))


def strip_model_files(model_cfg: dict) -> dict:
    """A model config that reads no file: no vocabulary source, no concept
    file, no CLIP weights (the captioner's state carries all three).

    Args:
        model_cfg (dict): A ``PCMCaptioner`` config.

    Returns:
        dict: A deep copy with ``head.vocab``, ``neck.concepts`` and
        ``backbone.pretrained`` set to None.
    """
    cfg = copy.deepcopy(model_cfg)
    for part, key in (('head', 'vocab'), ('neck', 'concepts'),
                      ('backbone', 'pretrained')):
        if not isinstance(cfg.get(part), dict):
            raise ValueError(f'The model config has no {part!r} dict: not a '
                             'PCMCaptioner config.')
        cfg[part][key] = None
    return cfg


def checkpoint_state(path: str) -> Dict[str, Any]:
    """A training checkpoint, loaded safely, with its state dict checked.

    Args:
        path (str): The ``.pth`` file.

    Returns:
        dict: The checkpoint (``state_dict`` and, usually, ``meta``).

    Raises:
        MissingInputError: If there is no such file (a FileNotFoundError).
        InputError: If it is not a complete torch checkpoint.
        UntrustedCheckpointError: If it holds other pickled objects.
        ValueError: If it holds no PCMCaptioner state.
    """
    from mmpcm.utils.checkpoint import load_checkpoint_file
    ckpt = load_checkpoint_file(path)
    if not isinstance(ckpt, dict):
        raise ValueError(f'{path}: not an mmengine checkpoint.')
    if 'state_dict' not in ckpt:
        ckpt = dict(state_dict=ckpt)
    if VOCAB_KEY not in ckpt['state_dict']:
        raise ValueError(f'{path}: no word vocabulary ({VOCAB_KEY}) in the '
                         'state dict: not a PCMCaptioner checkpoint.')
    return ckpt


def _checkpoint_model_cfg(path: str, ckpt: Dict[str, Any],
                          config: Optional[ConfigLike]) -> dict:
    """The training ``model`` config of a checkpoint (files still named)."""
    if config is not None:
        return _config_model(config)
    text = ckpt.get('meta', {}).get('cfg')
    if not isinstance(text, str):
        raise ValueError(f'{path} carries no config; pass the training '
                         'config.')
    return model_cfg_from_text(text, f'{path} (meta.cfg)')


def checkpoint_vocabulary(state: Dict[str, Any]) -> List[str]:
    """The word vocabulary a captioner's state dict carries.

    Args:
        state (dict): A ``PCMCaptioner`` state dict.

    Returns:
        list[str]: The words of ``head.vocab_bytes``, special tokens first.
    """
    from mmpcm.models.heads import decode_vocab_tensor
    return decode_vocab_tensor(state[VOCAB_KEY])


def checkpoint_model_cfg(ckpt: Dict[str, Any], model_cfg: dict) -> dict:
    """A model config built from what a checkpoint carries.

    Args:
        ckpt (dict): A checkpoint from :func:`checkpoint_state`.
        model_cfg (dict): The training ``model`` config.

    Returns:
        dict: ``model_cfg`` with no file to read
        (:func:`strip_model_files`) and the checkpoint's vocabulary.
    """
    model = strip_model_files(model_cfg)
    model['head']['vocab'] = checkpoint_vocabulary(ckpt['state_dict'])
    return model


def _checkpoint_source(path: str, ckpt: Dict[str, Any],
                       train_model_cfg: dict) -> ModelSource:
    """A buildable source from a loaded checkpoint and its model config."""
    model_cfg = with_concept_words(
        checkpoint_model_cfg(ckpt, train_model_cfg),
        checkpoint_concept_words(ckpt, train_model_cfg))
    return ModelSource(model_cfg, ckpt['state_dict'], 'checkpoint', path)


def load_model_source(path: str,
                      config: Optional[ConfigLike] = None) -> ModelSource:
    """Config and weights of a captioner, from a release or a checkpoint.

    Args:
        path (str): A release (``.safetensors`` or safetensors content) or
            a training checkpoint (``.pth``).
        config (str | Config | dict, optional): For checkpoints: the
            training config (its ``model``). Defaults to None: the config
            text the checkpoint carries, parsed as literals. Ignored for
            releases, which carry their model config.

    Returns:
        ModelSource: A buildable config and the weights.

    Raises:
        MissingInputError: If there is no such file (a FileNotFoundError).
        InputError: For a folder, or a file that is no model (an image,
            JSON, text, an empty or truncated checkpoint, ...; see
            :func:`mmpcm.utils.checkpoint.check_checkpoint_file`).
        ReleaseFormatError: For a safetensors file that is no release.
        UntrustedCheckpointError: For a checkpoint with other pickled
            objects (see :func:`mmpcm.utils.checkpoint.load_checkpoint_file`).
    """
    from mmpcm.utils.checkpoint import SAFETENSORS, check_checkpoint_file
    if (check_checkpoint_file(path).kind == SAFETENSORS
            or is_release_file(path)):
        release = load_release(path)
        return ModelSource(
            with_concept_words(release.info.model_cfg(),
                               release.info.concepts),
            release.state_dict, 'release', path, release.info)
    ckpt = checkpoint_state(path)
    return _checkpoint_source(path, ckpt,
                              _checkpoint_model_cfg(path, ckpt, config))


def build_model(model_cfg: dict) -> nn.Module:
    """Build a captioner from a config in mmpretrain's scope.

    Args:
        model_cfg (dict): The model config.

    Returns:
        nn.Module: The model (random weights).
    """
    from mmpcm.registry import MODELS
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(copy.deepcopy(model_cfg))


def check_source_fits(captioner: nn.Module, source: ModelSource,
                      config: Optional[ConfigLike] = None) -> None:
    """Refuse weights that do not fit the captioner, in one line.

    Args:
        captioner (nn.Module): Built from ``source.model_cfg``.
        source (ModelSource): The weights and where they came from.
        config (str | Config | dict, optional): The config the model was
            built from, for the message; None when it is the file's own.

    Raises:
        ConfigMismatchError: Naming the file, the config and what
            disagrees (see
            :func:`mmpcm.models.utils.errors.state_dict_mismatch`).
    """
    from mmpcm.models.utils.errors import check_state_dict_fits
    from mmpcm.engine.checkpoint_errors import config_name
    if source.kind == 'release':
        name, remedy = 'its own model config', ('the release is damaged: '
                                               'publish it again')
    elif config is None:
        name = 'the config stored in it (meta.cfg)'
        remedy = 'pass the config the checkpoint was trained with'
    else:
        name = config_name(config)
        remedy = 'pass the config the checkpoint was trained with'
    check_state_dict_fits(captioner, source.state_dict, source.path, name,
                          remedy)


def build_captioner(model: str,
                    config: Optional[ConfigLike] = None,
                    device: Optional[Union[str, torch.device]] = None
                    ) -> nn.Module:
    """A ready captioner (weights loaded, eval mode) from a file.

    Args:
        model (str): Release or training checkpoint.
        config (str | Config | dict, optional): Training config, for
            checkpoints only. Defaults to None (see
            :func:`load_model_source`).
        device (str | torch.device, optional): Defaults to None (CUDA when
            available, else CPU).

    Returns:
        nn.Module: The ``PCMCaptioner`` (``neck.concept_words`` set when
        the file says what they are).

    Raises:
        ConfigMismatchError: If the weights do not fit the model the config
            builds (one line naming both; see :func:`check_source_fits`).
    """
    source = load_model_source(model, config)
    captioner = build_model(source.model_cfg)
    check_source_fits(captioner, source, config)
    captioner.load_state_dict(source.state_dict, strict=True)
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    return captioner.to(device).eval()


# --------------------------------------------------------------------------
# publishing
# --------------------------------------------------------------------------
def clip_identity(backbone_cfg: dict, backbone: nn.Module) -> dict:
    """Which CLIP the captioner was trained with (no machine paths).

    Args:
        backbone_cfg (dict): The training config's backbone (with its
            ``pretrained``).
        backbone (nn.Module): The built ``OpenCLIPVisionBackbone``.

    Returns:
        dict: ``model_name``, ``model_cfg``, ``pretrained`` (tag or file
        name), ``pretrained_sha256`` (for an existing local file, else
        None), ``patch_pool``, ``image_size``, ``num_patches``,
        ``patch_dim``, ``embed_dim``.
    """
    pretrained = backbone_cfg.get('pretrained')
    sha = None
    if pretrained is not None and (osp.sep in pretrained
                                   or osp.isfile(pretrained)):
        sha = sha256_file(pretrained) if osp.isfile(pretrained) else None
        pretrained = osp.basename(pretrained)
    return dict(
        model_name=backbone_cfg.get('model_name'),
        model_cfg=backbone_cfg.get('model_cfg'),
        pretrained=pretrained,
        pretrained_sha256=sha,
        patch_pool=backbone.patch_pool,
        image_size=backbone.image_size,
        num_patches=backbone.num_patches,
        patch_dim=backbone.patch_dim,
        embed_dim=backbone.embed_dim)


def checkpoint_concept_words(ckpt: Dict[str, Any],
                             train_model_cfg: dict) -> Optional[List[str]]:
    """The words of a training checkpoint's concept table, when its training
    concept file still holds that table (:func:`known_concept_words`)."""
    table = ckpt['state_dict'].get(_CONCEPTS_KEY)
    if table is None:
        return None
    return known_concept_words(
        (train_model_cfg.get('neck') or {}).get('concepts'), table)


def with_concept_words(model_cfg: dict,
                       words: Optional[List[str]]) -> dict:
    """``model_cfg`` with ``neck.concept_words`` set when the words are
    known and the neck has no concept file (changed in place)."""
    neck = model_cfg.get('neck')
    if words and isinstance(neck, dict) and not neck.get('concepts'):
        neck['concept_words'] = list(words)
    return model_cfg


def known_concept_words(concepts: Any,
                        table: torch.Tensor) -> Optional[List[str]]:
    """The concept words, if the config's concept file is the checkpoint's.

    Args:
        concepts (Any): The config's ``neck.concepts`` (a file path or None).
        table (torch.Tensor): The checkpoint's ``(C, D)`` concept table.

    Returns:
        list[str] | None: The words when the file exists and its
        embeddings equal the table, else None.
    """
    from mmpcm.models.utils.concepts import ConceptVocabulary
    if not isinstance(concepts, str) or not osp.isfile(concepts):
        return None
    vocab = ConceptVocabulary.load(concepts)
    if vocab.embeddings.shape != table.shape or not torch.allclose(
            vocab.embeddings, table.float(), atol=1e-5):
        return None
    return list(vocab.words)


def publish_release(checkpoint: str,
                    out: str,
                    config: Optional[ConfigLike] = None) -> ReleaseInfo:
    """Turn a training checkpoint into a release file.

    The model is rebuilt and the weights loaded strictly, so a release
    always loads. Optimizer state, message hub and the pickled meta are
    dropped.

    Args:
        checkpoint (str): The training checkpoint (loaded safely).
        out (str): The release file to write (``*.safetensors``).
        config (str | Config | dict, optional): The training config.
            Defaults to None (the config text in the checkpoint).

    Returns:
        ReleaseInfo: What was written beside the weights.
    """
    ckpt = checkpoint_state(checkpoint)
    full_cfg = _checkpoint_model_cfg(checkpoint, ckpt, config)
    source = _checkpoint_source(checkpoint, ckpt, full_cfg)
    model = build_model(source.model_cfg)
    check_source_fits(model, source, config)
    model.load_state_dict(source.state_dict, strict=True)
    state = model.state_dict()
    stored = strip_model_files(full_cfg)
    stored['head']['vocab'] = None
    info = ReleaseInfo(
        model=json.loads(json.dumps(stored)),
        vocab=list(source.model_cfg['head']['vocab']),
        clip=clip_identity(full_cfg['backbone'], model.backbone),
        concepts=known_concept_words(full_cfg['neck'].get('concepts'),
                                     state[_CONCEPTS_KEY]))
    save_release(out, state, info)
    return info


__all__ = [
    'ModelSource', 'Release', 'ReleaseFormatError', 'ReleaseInfo',
    'build_captioner', 'build_model', 'check_source_fits', 'clip_identity',
    'is_release_file',
    'load_model_source', 'load_release', 'model_cfg_from_text',
    'publish_release', 'read_release_info', 'save_release',
    'strip_model_files'
]
