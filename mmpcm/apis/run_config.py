"""Config preparation and the test run behind the entry points in ``tools/``.

``tools/test.py CONFIG CHECKPOINT`` is :func:`run_test`: the model comes from
the checkpoint (training ``.pth`` or release ``.safetensors``), the data and
the metrics from the config. Besides mmengine's log it writes, into the run's
log dir ``<work_dir>/<timestamp>/``:

* ``predictions.json``: COCO results, ``[{"image_id": ..., "caption": ...}]``
  (:class:`PCMPredictionDumpHook`, gathered from all ranks);
* ``metrics.json``: ``{"checkpoint", "metrics", "paper_row"}``;

and returns the paper-style row ``B4 / M / R / C / S`` (:func:`paper_row`).
"""
import json
import os.path as osp
from typing import Any, Dict, List, NamedTuple, Optional, Union

import torch
from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.registry import RUNNERS, DefaultScope
from mmengine.runner import Runner

from mmpcm.engine.hooks import PCMPredictionDumpHook
from mmpcm.registry import METRICS
from mmpcm.setup_env import register_all_modules
from mmpcm.utils.dist import adapt_cfg_for_device
from mmpcm.engine.checkpoint_errors import naming_checkpoint
from .release import is_release_file, read_release_info

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def check_amp_device(cfg: Config) -> None:
    """Refuse ``--amp`` without CUDA with one clear message."""
    if (cfg.get('optim_wrapper', {}).get('type') == 'AmpOptimWrapper'
            and not torch.cuda.is_available()):
        raise RuntimeError('--amp needs a CUDA GPU; this machine has none. '
                           'Train without --amp on CPU.')


def fix_dataloaders(cfg: Config) -> None:
    """``persistent_workers`` needs workers: turn it off for ``num_workers=0``."""
    for name in DATALOADERS:
        loader = cfg.get(name)
        if loader and loader.get('num_workers', 0) == 0:
            loader['persistent_workers'] = False


def add_checkpoint_hooks(cfg: Config) -> None:
    """Add the hooks that make loading a checkpoint say what went wrong.

    * :class:`~mmpcm.engine.hooks.PCMCheckpointFitHook`: a ``load_from`` or
      resumed checkpoint whose tensors do not fit the config's model is
      refused with one summary line, instead of mmengine's key dump and a
      partly loaded model.
    * :class:`~mmpcm.engine.hooks.PCMResumeScheduleHook` (with a
      ``param_scheduler``): a resumed run follows the config's schedule
      settings from the checkpoint's step, each changed value logged,
      instead of the checkpoint's settings.
    """
    _add_custom_hook(cfg, dict(type='PCMCheckpointFitHook'))
    if cfg.get('param_scheduler'):
        _add_custom_hook(cfg, dict(type='PCMResumeScheduleHook'))


def prepare_cfg(cfg: Config) -> Config:
    """Apply every run-time adaptation to a merged config (in place)."""
    register_all_modules(init_default_scope=False)
    check_amp_device(cfg)
    fix_dataloaders(cfg)
    adapt_cfg_for_device(cfg)
    add_checkpoint_hooks(cfg)
    return cfg


def check_training_files(cfg: Config) -> None:
    """Refuse a training config whose vocabulary or concept file is missing
    or broken.

    Checked before the Runner is built (which logs the environment and the
    whole config first), so the error is the run's only output. Vocabulary
    files are read as the head and the transform read them
    (:meth:`~mmpcm.text.WordVocabulary.load`).

    Args:
        cfg (Config): A training config.

    Raises:
        MissingInputError: Naming the first missing file and what makes it.
        InputError: For a vocabulary file that is not a word list.
    """
    from mmpcm.text import WordVocabulary
    from mmpcm.utils.cli import MissingInputError
    vocabs = [cfg.model.head.get('vocab')]
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    vocabs += [step.get('vocab') for step in dataset.get('pipeline') or []
               if isinstance(step, dict)
               and step.get('type') == 'PCMTokenizeCaption']
    for path in dict.fromkeys(v for v in vocabs if isinstance(v, str)):
        WordVocabulary.load(path)
    concepts = cfg.model.neck.get('concepts')
    if isinstance(concepts, str) and not osp.isfile(concepts):
        raise MissingInputError(
            concepts, 'no such concept file', 'build it with '
            'tools/data/build_concepts.py and name it in the config '
            '(model.neck.concepts)')


def apply_checkpoint_to_cfg(cfg: Config, checkpoint: str) -> Config:
    """Build the model from what the checkpoint carries.

    The word vocabulary, the concept table and the frozen CLIP weights are
    all inside the checkpoint, so a test run needs no training captions, no
    concept file and no CLIP weights file.

    * Training checkpoint (``.pth``, loaded with ``weights_only`` and the
      mmengine allowlist): the config's model is pointed at the
      checkpoint's vocabulary and builds the rest empty or random, to be
      filled through ``load_from``.
    * Release (``.safetensors``, never unpickled): the release's own model
      config replaces the config's; :class:`PCMLoadReleaseHook` loads the
      weights before the run.

    Args:
        cfg (Config): The run's config, changed in place.
        checkpoint (str): The checkpoint or release to test.

    Returns:
        Config: ``cfg``.

    Raises:
        MissingInputError: If there is no such file (a FileNotFoundError).
        InputError: For a folder, or a file that is no model (an image,
            JSON, text, an empty or truncated checkpoint, ...; see
            :func:`mmpcm.utils.checkpoint.check_checkpoint_file`).
        UntrustedCheckpointError: If a ``.pth`` holds other pickled objects.
        ReleaseFormatError: For a safetensors file that is no release.
    """
    from mmpcm.apis.release import (checkpoint_concept_words,
                                    checkpoint_model_cfg, checkpoint_state,
                                    with_concept_words)
    from mmpcm.utils.checkpoint import SAFETENSORS, check_checkpoint_file
    if (check_checkpoint_file(checkpoint).kind == SAFETENSORS
            or is_release_file(checkpoint)):
        info = read_release_info(checkpoint)
        check_test_features_clip(cfg, checkpoint,
                                 (info.clip or {}).get('model_name'))
        cfg.model = with_concept_words(info.model_cfg(), info.concepts)
        cfg.load_from = None
        _add_custom_hook(cfg, dict(type='PCMLoadReleaseHook',
                                   release=checkpoint))
        return cfg
    ckpt = checkpoint_state(checkpoint)
    check_test_features_clip(cfg, checkpoint, _trained_clip_name(
        checkpoint, ckpt))
    model = with_concept_words(
        checkpoint_model_cfg(ckpt, cfg.model.to_dict()),
        checkpoint_concept_words(ckpt, cfg.model.to_dict()))
    model['backbone'] = _checkpoint_backbone(checkpoint, ckpt,
                                             model['backbone'])
    model['backbone']['pretrained'] = None
    cfg.model = model
    cfg.load_from = checkpoint
    return cfg


def _stored_backbone(checkpoint: str, ckpt: dict) -> Optional[dict]:
    """The backbone of the config text a checkpoint carries, if readable."""
    from mmpcm.apis.release import model_cfg_from_text
    text = ckpt.get('meta', {}).get('cfg')
    if not isinstance(text, str):
        return None
    try:
        backbone = model_cfg_from_text(text, checkpoint).get('backbone')
    except ValueError:
        return None
    return backbone if isinstance(backbone, dict) else None


def _trained_clip_name(checkpoint: str, ckpt: dict) -> Optional[str]:
    """The open_clip model name in the checkpoint's own config, if any."""
    backbone = _stored_backbone(checkpoint, ckpt)
    return backbone.get('model_name') if backbone else None


def _same_clip(a: str, b: str) -> bool:
    """Whether two open_clip model names load the same model
    (``local-dir:`` folders compared as absolute paths)."""
    def canonical(name: str) -> str:
        if name.startswith('local-dir:'):
            return 'local-dir:' + osp.abspath(name[len('local-dir:'):])
        return name
    return canonical(a) == canonical(b)


def check_test_features_clip(cfg: Config, checkpoint: str,
                             trained_clip: Optional[str]) -> None:
    """Refuse test features of another CLIP than the checkpoint's.

    A feature-mode test set states the CLIP its store was extracted with
    (``test_dataloader.dataset.clip_model``, checked against the store's
    meta.json); the checkpoint was trained on features of its own CLIP. When
    both are named and differ (e.g. a toy-world checkpoint tested with a
    config of another world), the scores would be of a model reading
    features it was never trained on.

    Args:
        cfg (Config): The run's config.
        checkpoint (str): The checkpoint or release, named in the error.
        trained_clip (str, optional): Its CLIP's open_clip model name.

    Raises:
        InputError: When the two CLIPs differ.
    """
    from mmpcm.utils.cli import InputError
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    features_clip = dataset.get('clip_model')
    if not trained_clip or not features_clip or 'custom' in (
            trained_clip, features_clip):
        return
    if not _same_clip(trained_clip, features_clip):
        raise InputError(
            checkpoint, f'trained with CLIP {trained_clip!r}, but the '
            f'config\'s test features are of {features_clip!r} '
            '(test_dataloader.dataset.clip_model)', 'test with the config '
            'of the data the checkpoint was trained on (a toy-world run: '
            'its work dir\'s config), or extract test features with its '
            'CLIP')


def _checkpoint_backbone(checkpoint: str, ckpt: dict, backbone: dict) -> dict:
    """The CLIP part the checkpoint carries, when it is not the config's.

    A converted release model (``pcm_release_to_mmpcm.py``) may hold only
    CLIP's ``ln_post`` and ``proj`` (:class:`CLIPJointProjection`); its
    stored config says so, and that backbone replaces the config's.
    """
    stored = _stored_backbone(checkpoint, ckpt)
    if stored is not None and stored.get('type') != backbone.get('type'):
        return Config(dict(backbone=stored)).backbone
    return backbone


def default_work_dir(config_path: str, work_dir: Optional[str]) -> str:
    """``work_dirs/<config name>`` unless a work dir is given."""
    if work_dir is not None:
        return work_dir
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


# --------------------------------------------------------------------------
# test runs
# --------------------------------------------------------------------------
METRICS_FILE = 'metrics.json'
# (column, metric name without prefix) of the paper's result tables
PAPER_COLUMNS = (('B4', 'Bleu_4'), ('M', 'METEOR'), ('R', 'ROUGE_L'),
                 ('C', 'CIDEr'), ('S', 'SPICE'))


class CaptionTestResult(NamedTuple):
    """What :func:`run_test` produced.

    Attributes:
        metrics (dict): All metrics, as ``runner.test()`` returns them.
        row (str): ``'B4 / M / R / C / S: ...'`` (see :func:`paper_row`).
        predictions_file (str, optional): ``predictions.json`` (main rank).
        metrics_file (str, optional): ``metrics.json`` (main rank).
        gallery_file (str, optional): The gallery's ``index.html`` (main
            rank, with ``show_dir``).
    """
    metrics: Dict[str, Any]
    row: str
    predictions_file: Optional[str]
    metrics_file: Optional[str]
    gallery_file: Optional[str] = None


def _add_custom_hook(cfg: Config, hook: dict) -> None:
    """Append a hook to ``cfg.custom_hooks`` unless its type is there."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(
            isinstance(h, dict) and h.get('type') == hook['type']
            for h in hooks):
        hooks.append(hook)
    cfg.custom_hooks = hooks


def paper_row(metrics: Dict[str, Any]) -> str:
    """The paper's ``B4 / M / R / C / S`` row, one decimal, '-' if missing.

    Args:
        metrics (dict): Metric names (any prefix, e.g.
            ``'coco-caption/Bleu_4'``) to values x100.

    Returns:
        str: E.g. ``'B4 / M / R / C / S: 31.5 / 25.9 / 53.9 / 103.8 / -'``.
    """
    values = []
    for _, name in PAPER_COLUMNS:
        found = [v for k, v in metrics.items() if k.split('/')[-1] == name]
        values.append(f'{float(found[0]):.1f}' if found else '-')
    header = ' / '.join(col for col, _ in PAPER_COLUMNS)
    return f'{header}: {" / ".join(values)}'


def _metric_cfgs(evaluator: Union[dict, list, None]) -> List[dict]:
    """The metric configs of an evaluator config, read as mmengine does.

    Raises:
        ValueError: For a single metric dict with a ``metrics`` argument,
            which mmengine would take for an ``Evaluator`` config.
    """
    if evaluator is None:
        return []
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        if evaluator.get('type', 'Evaluator') != 'Evaluator':
            raise ValueError(
                f'test_evaluator is a single {evaluator["type"]} dict with a '
                '"metrics" argument, which mmengine reads as an Evaluator '
                'config. Put the metric in a list: test_evaluator = '
                f'[dict(type={evaluator["type"]!r}, metrics=...)].')
        evaluator = evaluator['metrics']
    return list(evaluator) if isinstance(evaluator, (list, tuple)) else [
        evaluator
    ]


def check_test_evaluator(cfg: Config) -> None:
    """Build the test metrics once, before any model work, to fail early.

    Construction checks Java, CoreNLP for a demanded SPICE, the reference
    files and CLIP weight files; the metrics are then discarded (the runner
    builds its own).

    Args:
        cfg (Config): The run's config.
    """
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmpretrain')):
        for metric_cfg in _metric_cfgs(cfg.get('test_evaluator')):
            METRICS.build(metric_cfg)


def write_metrics_file(path: str, checkpoint: str, metrics: Dict[str, Any],
                       row: str) -> None:
    """Write ``metrics.json``: checkpoint, all metrics and the paper row."""
    plain = {
        k: float(v) if isinstance(v, (int, float)) or hasattr(v, 'item')
        else v
        for k, v in metrics.items()
    }
    with open(path, 'w', encoding='utf-8') as file:
        json.dump(
            dict(checkpoint=checkpoint, metrics=plain, paper_row=row),
            file,
            indent=2)


def run_test(cfg: Config, checkpoint: str,
             show_dir: Optional[str] = None,
             show_image_root: Optional[str] = None,
             config_file: Optional[str] = None) -> CaptionTestResult:
    """Test a checkpoint or release on the config's test set.

    Args:
        cfg (Config): The merged config (work dir, launcher and options
            already set); changed in place.
        checkpoint (str): Training checkpoint or release file.
        show_dir (str, optional): Also write the results gallery here
            (:class:`~mmpcm.engine.hooks.PCMGalleryHook`). Defaults to None.
        show_image_root (str, optional): The test images' folder for the
            gallery, when the test data does not record it. Defaults to
            None.
        config_file (str, optional): The config's file, named in the
            gallery. Defaults to None.

    Returns:
        CaptionTestResult: Metrics, the paper row and the written files (the
        files are None on non-main ranks).
    """
    register_all_modules(init_default_scope=False)
    from mmpcm.utils.checkpoint import check_checkpoint_file
    check_checkpoint_file(checkpoint)  # a missing or wrong file: first
    check_test_evaluator(cfg)  # Java, CoreNLP, references: before loading
    apply_checkpoint_to_cfg(cfg, checkpoint)
    prepare_cfg(cfg)
    _add_custom_hook(cfg, dict(type='PCMPredictionDumpHook'))
    # A run's saved config carries the gallery hook of its own run: this
    # run's --show-dir decides.
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks') or []
                        if not (isinstance(h, dict)
                                and h.get('type') == 'PCMGalleryHook')]
    if show_dir is not None:
        _add_custom_hook(cfg, dict(
            type='PCMGalleryHook', out_dir=show_dir, image_root=show_image_root, config=config_file,
            checkpoint=checkpoint))
    runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg else
              RUNNERS.build(cfg))
    with naming_checkpoint(runner):
        metrics = runner.test()
    row = paper_row(metrics)
    if not is_main_process():
        return CaptionTestResult(metrics, row, None, None)
    predictions_file = next(
        h.path for h in runner.hooks if isinstance(h, PCMPredictionDumpHook))
    metrics_file = osp.join(runner.log_dir, METRICS_FILE)
    write_metrics_file(metrics_file, checkpoint, metrics, row)
    print_log(f'{row} (predictions: {predictions_file}, metrics: '
              f'{metrics_file})', logger='current')
    gallery = next((h.path for h in runner.hooks
                    if type(h).__name__ == 'PCMGalleryHook'), None)
    return CaptionTestResult(metrics, row, predictions_file, metrics_file,
                             gallery)
