"""Caption a user's images with a trained PCM-Net (checkpoint or release).

:class:`PCMCaptionInferencer` follows mmpretrain's inferencers: build it from
a model file, call it on inputs, get one dict per image::

    inferencer = PCMCaptionInferencer('pcm_coco_vit-b32.safetensors')
    inferencer('demo.jpg')
    # [{'image': 'demo.jpg', 'caption': 'a dog ...', 'score': -4.2}]

Images are preprocessed like open_clip's evaluation transform (see
:mod:`mmpcm.datasets.transforms`) and run through the captioner's own frozen
CLIP, whose weights are part of the model file. A file that is not a
readable image gives ``{'image': path, 'error': reason}`` instead of
stopping the run.
"""
import json
import os
import os.path as osp
import sys
from typing import (IO, Iterator, List, NamedTuple, Optional, Sequence,
                    Union)

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mmpcm.datasets.clip_transforms import CLIPImageTransform
from mmpcm.datasets.image_lists import read_path_list, scan_folder
from mmpcm.datasets.transforms import ImageLoadError, as_pil_image, load_image
from mmpcm.utils.cli import InputError
from mmpcm.visualization.concepts import ConceptView, concept_view
from .best_checkpoint import resolve_checkpoint_or_last
from .release import ConfigLike, build_captioner

LIST_FILE_SUFFIXES = ('.txt', '.lst', '.list')
InputType = Union[str, 'os.PathLike[str]', np.ndarray, Image.Image]
InputsType = Union[InputType, Sequence[InputType]]


class CaptionResult(NamedTuple):
    """A captioned image.

    Attributes:
        image (str): The path (or ``array[i]`` / ``image[i]`` for in-memory
            inputs).
        caption (str): The caption.
        score (float): Its log-probability under the model.
        concepts (ConceptView, optional): PCM's concepts and selected
            patches (with ``return_concepts``); None otherwise.
    """
    image: str
    caption: str
    score: float
    concepts: Optional[ConceptView] = None

    def to_dict(self) -> dict:
        out = dict(image=self.image, caption=self.caption, score=self.score)
        if self.concepts is not None:
            out['concepts'] = self.concepts.to_dict()
        return out


class ImageFailure(NamedTuple):
    """An input that could not be captioned.

    Attributes:
        image (str): The path (or in-memory name).
        reason (str): Why, in one line.
    """
    image: str
    reason: str

    def to_dict(self) -> dict:
        return dict(image=self.image, error=self.reason)


class InputItem(NamedTuple):
    """One image to caption: its name, where its pixels come from, and
    where it was named (``'line 3 of photos.txt'`` for a list file's
    entry; None for an input given directly or found in a folder)."""
    name: str
    source: Union[str, np.ndarray, Image.Image]
    origin: Optional[str] = None


class CaptionSummary(NamedTuple):
    """Counts of a captioning run."""
    num_captioned: int
    num_failed: int


def expand_inputs(inputs: InputsType) -> List[InputItem]:
    """Turn user inputs into a flat list of images.

    Args:
        inputs: An image path, a folder, a list file
            (``.txt``/``.lst``/``.list``), an RGB uint8 numpy array
            ``(H, W, 3)``, a PIL image, or a list of any of these. A folder
            is scanned as everywhere
            (:func:`~mmpcm.datasets.image_lists.scan_folder`: recursive,
            sorted, hidden files and folders skipped), but every visible
            file is taken, whatever its extension, so a file that is not an
            image is reported as such rather than left out. A list file is
            read by :func:`~mmpcm.datasets.image_lists.read_path_list` (one
            path per line, relative to the list's folder; blank lines and
            ``#`` comments skipped). An :class:`InputItem` (what this
            function returned before) is taken as it is.

    Returns:
        list[InputItem]: The images, in order (not empty).

    Raises:
        InputError: If the inputs name no file at all (empty folders or
            list files, or an empty list), naming the inputs: a run over
            nothing is not a success; or if a list file is not text
            (:func:`~mmpcm.datasets.image_lists.read_path_list`).
    """
    if isinstance(inputs, (str, os.PathLike, np.ndarray, Image.Image)):
        inputs = [inputs]
    inputs = list(inputs)
    items: List[InputItem] = []
    for index, entry in enumerate(inputs):
        if isinstance(entry, InputItem):
            items.append(entry)
        elif isinstance(entry, np.ndarray):
            items.append(InputItem(f'array[{index}]', entry))
        elif isinstance(entry, Image.Image):
            items.append(InputItem(f'image[{index}]', entry))
        else:
            path = os.fspath(entry)
            if osp.isdir(path):
                # every visible file, not only image extensions: a file that
                # is not an image is reported, not silently left out
                files = scan_folder(path, extensions=None).files
                items += [InputItem(osp.join(path, rel), osp.join(path, rel))
                          for rel in files]
            elif path.lower().endswith(LIST_FILE_SUFFIXES) and osp.isfile(
                    path):
                items += [InputItem(image.path, image.path,
                                    f'line {image.lineno} of {path}, read '
                                    'as a list of image paths')
                          for image in read_path_list(path)]
            else:
                items.append(InputItem(path, path))
    if not items:
        names = ', '.join(os.fspath(e) for e in inputs) or '(no inputs)'
        raise InputError(
            names, 'no images found (empty folder or list file)',
            'pass image files, a folder holding images, or a list file '
            'naming them')
    return items


class _ImageInputs(Dataset):
    """Loads and preprocesses inputs; failures become reasons, not errors."""

    def __init__(self, items: Sequence[InputItem],
                 transform: CLIPImageTransform) -> None:
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple:
        item = self.items[index]
        try:
            image = (load_image(item.source) if isinstance(item.source, str)
                     else item.source)
            return index, self.transform(as_pil_image(image)), None
        except ImageLoadError as error:
            where = f' ({item.origin})' if item.origin else ''
            return index, None, error.reason + where


def _keep_list(batch: list) -> list:
    return batch


class PCMCaptionInferencer:
    """Caption images with a trained PCM-Net.

    Args:
        model (str | nn.Module): A release file (``.safetensors``), a
            training checkpoint (``.pth``; loaded with ``weights_only`` and
            the mmengine allowlist, pickled payloads refused), a training
            work dir (its best checkpoint by validation CIDEr, or the last
            one of a run without validation:
            :func:`~mmpcm.apis.best_checkpoint.resolve_checkpoint_or_last`),
            or a built ``PCMCaptioner``.
        config (str | Config | dict, optional): Training config, only for a
            checkpoint; by default the config text the checkpoint carries is
            parsed (as literals, never executed). Defaults to None.
        device (str, optional): Defaults to None (CUDA when available).
        beam_size (int, optional): Overrides the model's beam size.
            Defaults to None.
        return_concepts (bool): Also return PCM's retrieved concepts and
            selected patches per image (``concepts`` of each result, a
            :class:`~mmpcm.visualization.ConceptView`). Defaults to False.

    Attributes:
        model_file (str, optional): The file the model was loaded from.

    Examples:
        >>> inferencer = PCMCaptionInferencer('work_dirs/pcm_coco')
        >>> results = inferencer(['a.jpg', 'photos/'], batch_size=32)
    """

    def __init__(self,
                 model: Union[str, nn.Module],
                 config: Optional[ConfigLike] = None,
                 device: Optional[str] = None,
                 beam_size: Optional[int] = None,
                 return_concepts: bool = False) -> None:
        self.model_file: Optional[str] = None
        if isinstance(model, nn.Module):
            device = device or next(model.parameters()).device
            self.model = model.to(device).eval()
        else:
            self.model_file = resolve_checkpoint_or_last(model).path
            self.model = build_captioner(self.model_file, config, device)
        self.beam_size = beam_size
        self.return_concepts = return_concepts

    @property
    def image_size(self) -> int:
        """CLIP's input size."""
        return self.model.backbone.image_size

    @property
    def preprocess_cfg(self):
        """The backbone's open_clip preprocess config (its size, mean, std,
        interpolation and resize mode), or its input size for a backbone
        without one."""
        return getattr(self.model.backbone, 'preprocess_cfg',
                       self.image_size)

    @torch.no_grad()
    def caption_tensors(self, images: torch.Tensor) -> List[tuple]:
        """Caption a preprocessed batch.

        Args:
            images (torch.Tensor): ``(B, 3, S, S)`` uint8 RGB.

        Returns:
            list[tuple]: ``(caption, score, concepts)`` per image;
            ``concepts`` is a :class:`~mmpcm.visualization.ConceptView`
            with ``return_concepts``, else None.
        """
        data = self.model.data_preprocessor(
            dict(inputs=dict(images=images), data_samples=None), False)
        samples = self.model.predict(data['inputs'], None,
                                     beam_size=self.beam_size,
                                     return_concepts=self.return_concepts)
        words = self.model.neck.concept_words
        return [(s.pred_caption, float(s.pred_score),
                 concept_view(s.pcm_concepts, words)
                 if self.return_concepts else None) for s in samples]

    def iter_results(self,
                     inputs: InputsType,
                     batch_size: int = 16,
                     num_workers: int = 0,
                     progress: bool = False
                     ) -> Iterator[Union[CaptionResult, ImageFailure]]:
        """Caption inputs batch by batch, yielding one result per image.

        Args:
            inputs: See :func:`expand_inputs`.
            batch_size (int): Images per forward pass. Defaults to 16.
            num_workers (int): Image decoding workers. Defaults to 0.
            progress (bool): Show a progress bar on stderr. Defaults to
                False.

        Yields:
            CaptionResult | ImageFailure: In input order.

        Raises:
            InputError: If the inputs hold no file (:func:`expand_inputs`),
                before any image is read.
        """
        items = expand_inputs(inputs)
        loader = DataLoader(
            _ImageInputs(items, CLIPImageTransform(self.preprocess_cfg)),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=_keep_list)
        with tqdm(total=len(items), disable=not progress, unit='img',
                  file=sys.stderr) as bar:
            for batch in loader:
                good = [(i, t) for i, t, _ in batch if t is not None]
                captions = iter(
                    self.caption_tensors(torch.stack([t for _, t in good]))
                    if good else [])
                for index, tensor, reason in batch:
                    name = items[index].name
                    if tensor is None:
                        yield ImageFailure(name, reason)
                    else:
                        yield CaptionResult(name, *next(captions))
                bar.update(len(batch))

    def __call__(self,
                 inputs: InputsType,
                 batch_size: int = 16,
                 num_workers: int = 0,
                 progress: bool = False) -> List[dict]:
        """Caption inputs.

        Args:
            inputs: An image path, folder, list file, numpy array, PIL
                image, or a list of these (see :func:`expand_inputs`).
            batch_size (int): Images per forward pass. Defaults to 16.
            num_workers (int): Image decoding workers. Defaults to 0.
            progress (bool): Show a progress bar. Defaults to False.

        Returns:
            list[dict]: Per image, in order: ``{'image', 'caption',
            'score'}`` (and ``'concepts'``, :meth:`ConceptView.to_dict`,
            with ``return_concepts``), or ``{'image', 'error'}`` for an
            unreadable file.

        Raises:
            InputError: If the inputs hold no file (:func:`expand_inputs`).
        """
        return [
            r.to_dict() for r in self.iter_results(inputs, batch_size,
                                                   num_workers, progress)
        ]


def caption_to_jsonl(inferencer: PCMCaptionInferencer,
                     inputs: InputsType,
                     out: IO[str],
                     errors: IO[str],
                     batch_size: int = 16,
                     num_workers: int = 0,
                     progress: bool = True,
                     keep: Optional[List[CaptionResult]] = None
                     ) -> CaptionSummary:
    """Write one JSON line per captioned image, one error line per failure.

    Args:
        inferencer (PCMCaptionInferencer): The inferencer.
        inputs: See :func:`expand_inputs`.
        out (IO[str]): JSONL output: ``{"image", "caption", "score"}``.
        errors (IO[str]): Failure lines: ``skipped <image>: <reason>``.
        batch_size (int): Images per forward pass. Defaults to 16.
        num_workers (int): Image decoding workers. Defaults to 0.
        progress (bool): Progress bar on stderr. Defaults to True.
        keep (list, optional): Each :class:`CaptionResult` is also appended
            here (e.g. for a gallery). Defaults to None.

    Returns:
        CaptionSummary: How many were captioned and how many failed (a
        caller reports a run with failures, e.g. every file unreadable, as
        not successful: ``tools/caption.py`` exits 1).

    Raises:
        InputError: If the inputs hold no file (:func:`expand_inputs`),
            before anything is written to ``out``.
    """
    done = failed = 0
    for result in inferencer.iter_results(inputs, batch_size, num_workers,
                                          progress):
        if isinstance(result, ImageFailure):
            failed += 1
            # tqdm.write keeps the line clear of a progress bar on stderr.
            tqdm.write(f'skipped {result.image}: {result.reason}',
                       file=errors)
        else:
            done += 1
            out.write(json.dumps(result.to_dict(), ensure_ascii=False) + '\n')
            if keep is not None:
                keep.append(result)
    out.flush()
    return CaptionSummary(done, failed)


__all__ = [
    'CaptionResult', 'CaptionSummary', 'ImageFailure', 'InputItem',
    'PCMCaptionInferencer', 'caption_to_jsonl', 'expand_inputs'
]
