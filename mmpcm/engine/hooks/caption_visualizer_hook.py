"""Draw a few validation images with their captions into the visualizer.

Every validation epoch, :class:`PCMCaptionVisualizerHook` captions the
first validation items again with their concept picture and hands each
drawing to ``runner.visualizer.add_image``, so every configured backend
(local PNGs, TensorBoard, W&B) gets it. The drawing itself is
:mod:`mmpcm.visualization`'s; this module only adds the caption banner.
"""
import json
import os
import os.path as osp
from typing import (Any, Dict, Iterable, List, NamedTuple, Optional,
                    Sequence, Tuple, Union)

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from PIL import Image, ImageDraw, ImageFont

from mmpcm.registry import HOOKS

__all__ = ['PCMCaptionVisualizerHook', 'caption_picture']

#: Colours of the banner under the image.
BANNER_BACKGROUND = '#202020'
CAPTION_COLOUR = '#ffffff'
LABEL_COLOUR = '#a0a0a0'
REFERENCE_COLOUR = '#c8c8c8'
#: The record of the source an extraction read (tools/data/extract_features.py
#: writes it into the feature store folder; ``root`` is the image folder or
#: list file the records' ``image`` paths are relative to).
_NAME_PREFIX = 'val_caption'


def _font(size: int) -> ImageFont.ImageFont:
    try:  # Pillow >= 10.1: a scalable font of that size
        return ImageFont.load_default(size)
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, tokens: Sequence[Tuple[str, str]],
          font: ImageFont.ImageFont, width: float
          ) -> List[List[Tuple[str, str]]]:
    """Greedy word wrap of ``(word, colour)`` tokens into lines no wider
    than ``width`` pixels (a longer word gets a line of its own)."""
    space = draw.textlength(' ', font=font)
    lines: List[List[Tuple[str, str]]] = [[]]
    used = 0.0
    for word, colour in tokens:
        length = draw.textlength(word, font=font)
        if lines[-1] and used + space + length > width:
            lines.append([])
            used = 0.0
        used += (space if lines[-1] else 0.0) + length
        lines[-1].append((word, colour))
    return lines if lines[-1] else lines[:-1]


def _banner_tokens(caption: str, references: Sequence[str],
                   view: Any) -> List[List[Tuple[str, str]]]:
    """The banner's paragraphs as ``(word, colour)`` tokens."""
    from mmpcm.visualization import concept_colours
    paragraphs = [[('pred:', LABEL_COLOUR)] +
                  [(w, CAPTION_COLOUR) for w in caption.split()]]
    for reference in references:
        paragraphs.append([('ref:', LABEL_COLOUR)] +
                          [(w, REFERENCE_COLOUR) for w in reference.split()])
    if view is not None and view.concepts:
        colours = concept_colours(view)
        paragraphs.append([('concepts:', LABEL_COLOUR)] + [
            (f"{c['word']}:{c['prob']:.2f}", colours[c['word']])
            for c in view.concepts if c['kept']
        ])
    return paragraphs


def caption_picture(image: Image.Image,
                    caption: str,
                    references: Sequence[str] = (),
                    view: Optional[Any] = None) -> Image.Image:
    """An image with PCM's patches outlined and a caption banner under it.

    Args:
        image (PIL.Image.Image): The square CLIP view of the image
            (:func:`mmpcm.visualization.clip_view`).
        caption (str): The predicted caption (first banner line, white).
        references (Sequence[str]): Reference captions (grey, one
            paragraph each). Defaults to ().
        view (ConceptView, optional): PCM's concepts and selected patches
            (:func:`mmpcm.visualization.concept_view`): the patches are
            outlined with :func:`~mmpcm.visualization.draw_concept_picture`
            and the kept concepts listed in their outline colours. Defaults
            to None (the plain view, no concept line).

    Returns:
        PIL.Image.Image: RGB, ``image.width`` wide, the image on top and
        the banner (as tall as its wrapped lines) below.
    """
    from mmpcm.visualization import draw_concept_picture
    top = (draw_concept_picture(image, view) if view is not None else
           image.convert('RGB'))
    width = top.width
    font = _font(max(10, width // 24))
    margin = max(3, width // 64)
    probe = ImageDraw.Draw(Image.new('RGB', (1, 1)))
    lines = [
        line for paragraph in _banner_tokens(caption, references, view)
        for line in _wrap(probe, paragraph, font, width - 2 * margin)
    ]
    ascent, descent = font.getmetrics()
    line_height = ascent + descent + 2
    height = top.height + 2 * margin + line_height * len(lines)
    out = Image.new('RGB', (width, height), BANNER_BACKGROUND)
    out.paste(top, (0, 0))
    draw = ImageDraw.Draw(out)
    space = draw.textlength(' ', font=font)
    y = top.height + margin
    for line in lines:
        x = float(margin)
        for word, colour in line:
            draw.text((x, y), word, fill=colour, font=font)
            x += draw.textlength(word, font=font) + space
        y += line_height
    return out


class _Item(NamedTuple):
    """One validation item the hook draws every time."""
    index: int  # in the val dataset
    image_id: Any
    name: str  # the visualizer's image name
    image: Image.Image  # the CLIP view at display size
    references: List[str]


def _safe(text: Any) -> str:
    """``text`` with only letters, digits, ``.``, ``-`` and ``_`` (the
    local backend writes ``<name>_<step>.png``: no folder separators)."""
    return ''.join(c if c.isalnum() or c in '.-_' else '_'
                   for c in str(text))


@HOOKS.register_module()
class PCMCaptionVisualizerHook(Hook):
    """Draw the first validation images with their captions, every
    validation.

    After each validation (main process only) the first ``num_images``
    items of the validation dataset, the same ones every time, are
    captioned again by the model in eval mode
    (``predict(..., return_concepts=True)``: the validation inputs, i.e.
    the stored features in feature mode) and each is drawn as the square
    CLIP saw (:func:`~mmpcm.visualization.clip_view`) with PCM's selected
    patches outlined and labelled with their concept words
    (:func:`~mmpcm.visualization.draw_concept_picture`), over a banner with
    the predicted caption, up to ``num_references`` reference captions and
    the kept concepts (:func:`caption_picture`). Each drawing goes to
    ``runner.visualizer.add_image(name, image, step=epoch)``, so every
    backend gets it: ``LocalVisBackend`` writes
    ``<log_dir>/vis_data/vis_image/<name>_<epoch>.png``, TensorBoard an
    image tag ``<name>`` with one step per epoch. ``name`` is
    ``val_caption_<k>_<image id>`` (``k``: the item's index, two digits;
    characters other than letters, digits, ``.-_`` in the id become
    ``_``).

    Where the image files are found (first existing file wins):

    * image-mode datasets (:class:`~mmpcm.datasets.ImageFolderCaptionDataset`):
      the item's ``img_path``;
    * feature stores (:class:`~mmpcm.datasets.SynthImgCapDataset`): the
      record's ``image`` (the path ``tools/data/extract_features.py``
      stored, relative to the folder or list file it read) under
      ``image_root``, or, without ``image_root``, under the source recorded
      in the store's ``extraction_source.json``; then, with
      ``image_root``, the ``file_name`` the reference file gives the image
      id (COCO format, e.g. ``val2014/COCO_val2014_000000391895.jpg`` with
      ``image_root='data/coco'``), then ``<image_root>/<image id><ext>``
      for every image extension.

    The files are read once, at the first validation. An item whose file
    is not found or does not decode is left out with one warning naming it
    and the paths tried; when none is found the hook says so once and draws
    nothing. Any other error while drawing is logged as a warning and the
    run goes on: a picture never stops training.

    Args:
        num_images (int): How many validation items to draw (the first
            ones). Defaults to 4.
        image_root (str, optional): The folder of the validation image
            files (see above). Defaults to None.
        interval (int): Draw when the epoch is a multiple of ``interval``
            (validation happens every ``train_cfg.val_interval`` epochs).
            Defaults to 1 (every validation).
        draw_concepts (bool): Outline the selected patches and list the
            concepts. Defaults to True.
        num_references (int): Reference captions shown per image. Defaults
            to 2.
        ann_file (str, optional): COCO-format reference file for the
            references and ``file_name`` lookup. Defaults to None: the
            ``ann_file`` of the config's ``val_evaluator``, if any.
        image_size (int): Side of the drawn CLIP view in pixels (the
            banner adds height). Defaults to 224.

    Raises:
        ValueError: If ``num_images`` or ``num_references`` is negative, or
            ``interval`` or ``image_size`` is not positive.
    """
    priority = 'LOW'

    def __init__(self,
                 num_images: int = 4,
                 image_root: Optional[str] = None,
                 interval: int = 1,
                 draw_concepts: bool = True,
                 num_references: int = 2,
                 ann_file: Optional[str] = None,
                 image_size: int = 224) -> None:
        for name, value, low in (('num_images', num_images, 0),
                                 ('num_references', num_references, 0),
                                 ('interval', interval, 1),
                                 ('image_size', image_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or (
                    value < low):
                raise ValueError(f'PCMCaptionVisualizerHook: {name} must be '
                                 f'an int >= {low}, got {value!r}')
        self.num_images = num_images
        self.image_root = None if image_root is None else os.fspath(
            image_root)
        self.interval = interval
        self.draw_concepts = draw_concepts
        self.num_references = num_references
        self.ann_file = None if ann_file is None else os.fspath(ann_file)
        self.image_size = image_size
        self._items: Optional[List[_Item]] = None

    # ---- the hook --------------------------------------------------------
    def after_val_epoch(self,
                        runner: Runner,
                        metrics: Optional[Dict[str, float]] = None) -> None:
        """Draw the items into ``runner.visualizer`` at step ``epoch``."""
        if (not is_main_process() or self.num_images == 0
                or runner.epoch % self.interval):
            return
        try:
            self.draw(runner)
        except Exception as err:  # a picture never stops training
            runner.logger.warning(
                'PCMCaptionVisualizerHook: drawing the validation captions '
                f'failed ({type(err).__name__}: {err}); nothing drawn at '
                f'epoch {runner.epoch}, the run goes on')

    def draw(self, runner: Runner) -> List[Tuple[str, str]]:
        """Caption and draw the items now (whatever the epoch).

        Args:
            runner (Runner): A runner with a validation dataloader.

        Returns:
            list[tuple[str, str]]: ``(image name, predicted caption)`` per
            drawn item.
        """
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        loader = runner.val_dataloader
        dataset = loader.dataset
        if self._items is None:
            self._items = self._find_items(runner, model, dataset)
        if not self._items:
            return []
        batch = loader.collate_fn([dataset[it.index] for it in self._items])
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                data = model.data_preprocessor(batch, False)
                samples = model.predict(data['inputs'], data['data_samples'],
                                        return_concepts=self.draw_concepts)
        finally:
            model.train(was_training)
        words = getattr(model.neck, 'concept_words', None)
        drawn = []
        for item, sample in zip(self._items, samples):
            view = None
            if self.draw_concepts:
                from mmpcm.visualization import concept_view
                view = concept_view(sample.pcm_concepts, words)
            caption = str(sample.pred_caption)
            picture = caption_picture(item.image, caption, item.references,
                                      view)
            runner.visualizer.add_image(item.name, np.asarray(picture),
                                        step=runner.epoch)
            drawn.append((item.name, caption))
        runner.logger.info(
            f'PCMCaptionVisualizerHook: drew {len(drawn)} validation '
            f'caption(s) at epoch {runner.epoch} into the visualizer: ' +
            '; '.join(f'{it.image_id}: "{c}"'
                      for it, (_, c) in zip(self._items, drawn)))
        return drawn

    # ---- finding the items -----------------------------------------------
    def _find_items(self, runner: Runner, model: torch.nn.Module,
                    dataset: Any) -> List[_Item]:
        """Read the first items' image files once; warn about the rest."""
        from mmpcm.datasets.transforms import load_image
        from mmpcm.visualization import clip_view
        n = min(self.num_images, len(dataset))
        if n == 0:
            runner.logger.warning('PCMCaptionVisualizerHook: the validation '
                                  'dataset is empty; nothing to draw')
            return []
        references, file_names = self._read_ann_file(runner)
        preprocess = self._preprocess_cfg(model, dataset)
        records = self._store_records(dataset, n)
        source_root = self._source_root(dataset)
        items, missing, unnamed = [], [], []
        for index in range(n):
            info = dataset.get_data_info(index)
            image_id = info.get('image_id', index)
            candidates = self._candidates(info, records, source_root,
                                          file_names.get(image_id))
            path = next((p for p in candidates if osp.isfile(p)), None)
            if not candidates:
                unnamed.append(repr(image_id))
                continue
            if path is None:
                missing.append(f'{image_id!r} (tried: '
                               f'{", ".join(candidates)})')
                continue
            try:
                image = clip_view(load_image(path), preprocess,
                                  self.image_size)
            except Exception as err:  # undecodable: one line, then skip
                missing.append(f'{image_id!r} ({path}: {err})')
                continue
            items.append(
                _Item(index, image_id,
                      f'{_NAME_PREFIX}_{index:02d}_{_safe(image_id)}', image,
                      list(references.get(image_id, []))
                      [:self.num_references]))
        if unnamed:  # feature mode, nothing records where the images are
            missing.append(f'{", ".join(unnamed)} (the dataset names no '
                           'image file for them)')
        if missing:
            hint = ('' if self.image_root else
                    '; set image_root (the folder of the validation images) '
                    "in the hook's config, e.g. --cfg-options "
                    'custom_hooks.0.image_root=data/coco')
            runner.logger.warning(
                f'PCMCaptionVisualizerHook: no image for '
                f'{n - len(items)} of the first {n} validation item(s), not '
                f'drawn: {"; ".join(missing)}{hint}')
        return items

    def _candidates(self, info: Dict[str, Any],
                    records: Dict[int, dict], source_root: Optional[str],
                    file_name: Optional[str]) -> List[str]:
        """The files that may hold one item's image, best first."""
        if info.get('img_path'):
            return [str(info['img_path'])]
        out = []
        record = records.get(info.get('store_idx', -1), {})
        relpath = record.get('image')
        root = self.image_root or source_root
        if isinstance(relpath, str) and relpath and root is not None:
            out.append(osp.join(root, relpath))
        if self.image_root is not None:
            if isinstance(file_name, str) and file_name:
                out.append(osp.join(self.image_root, file_name))
            from mmpcm.datasets.image_lists import IMAGE_EXTENSIONS
            image_id = info.get('image_id')
            if image_id is not None:
                out += [
                    osp.join(self.image_root, f'{image_id}{ext}')
                    for ext in IMAGE_EXTENSIONS
                ]
        return list(dict.fromkeys(out))

    @staticmethod
    def _store_records(dataset: Any, n: int) -> Dict[int, dict]:
        """``{store row: record}`` of a feature-store dataset's first ``n``
        items (read up to the last needed row only); empty otherwise."""
        store = getattr(dataset, 'store', None)
        if store is None or not hasattr(store, 'iter_records'):
            return {}
        rows = {dataset.get_data_info(i).get('store_idx') for i in range(n)}
        rows.discard(None)
        if not rows:
            return {}
        last, records = max(rows), {}
        for row, (_, _, record) in enumerate(store.iter_records()):
            if row in rows:
                records[row] = record
            if row >= last:
                break
        return records

    @staticmethod
    def _source_root(dataset: Any) -> Optional[str]:
        """The folder a feature store's ``image`` paths are relative to
        (:func:`~mmpcm.datasets.feature_store.source_root`; None when
        unknown)."""
        from mmpcm.datasets.feature_store import source_root
        root = getattr(getattr(dataset, 'store', None), 'root', None)
        return None if root is None else source_root(root)

    def _read_ann_file(
            self, runner: Runner
    ) -> Tuple[Dict[Any, List[str]], Dict[Any, str]]:
        """``({image id: references}, {image id: file_name})`` from the
        reference file; empty dicts (and a warning) if it does not read."""
        path = self.ann_file or _evaluator_ann_file(runner)
        if not path:
            return {}, {}
        from mmpcm.evaluation.metrics.references import load_references
        try:
            references = load_references(path)
            with open(path, encoding='utf-8') as file:
                images = json.load(file).get('images', [])
            file_names = {
                im['id']: im['file_name']
                for im in images
                if isinstance(im, dict) and 'id' in im and 'file_name' in im
            }
        except Exception as err:
            runner.logger.warning(
                f'PCMCaptionVisualizerHook: cannot read the references '
                f'{path} ({type(err).__name__}: {err}); drawing without '
                'references')
            return {}, {}
        return references, file_names

    @staticmethod
    def _preprocess_cfg(model: torch.nn.Module,
                        dataset: Any) -> Union[int, Any]:
        """The CLIP preprocessing the pictures show: the backbone's, else
        its input size, else the feature store's ``clip.image_size``, else
        224."""
        backbone = getattr(model, 'backbone', None)
        for key in ('preprocess_cfg', 'image_size'):
            value = getattr(backbone, key, None)
            if value is not None:
                return value
        clip = (getattr(dataset, 'metainfo', None) or {}).get('clip') or {}
        return int(clip.get('image_size') or 224)


def _evaluator_ann_file(runner: Runner) -> Optional[str]:
    """The ``ann_file`` of the config's ``val_evaluator`` (a dict or a list
    of dicts), or None."""
    cfg = getattr(runner, 'cfg', None)
    evaluator = cfg.get('val_evaluator') if cfg is not None else None
    candidates: Iterable[Any] = (evaluator if isinstance(
        evaluator, (list, tuple)) else [evaluator])
    for metric in candidates:
        if hasattr(metric, 'get') and metric.get('ann_file'):
            return str(metric['ann_file'])
    return None
