"""Drawing PCM's picture: the view CLIP had of an image, with the selected
patches outlined and labelled with the concept each takes."""
from typing import Dict, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mmpcm.datasets.clip_transforms import PreprocessCfg, clip_image_tensor
from .concepts import ConceptView

__all__ = ['CONCEPT_COLOURS', 'clip_view', 'concept_colours',
           'draw_concept_picture']

#: Outline colours, one per concept position (best concept first).
CONCEPT_COLOURS: Tuple[str, ...] = ('#e6194b', '#3cb44b', '#4363d8',
                                    '#f58231', '#911eb4', '#42d4f4',
                                    '#f032e6', '#bfef45', '#fabed4',
                                    '#469990')


def concept_colours(view: ConceptView) -> Dict[str, str]:
    """Colour of each concept word of ``view`` (by retrieval rank)."""
    return {c['word']: CONCEPT_COLOURS[i % len(CONCEPT_COLOURS)]
            for i, c in enumerate(view.concepts)}


def clip_view(image: Image.Image, preprocess_cfg: Union[int, PreprocessCfg,
                                                       dict],
              size: int) -> Image.Image:
    """The square CLIP sees of ``image`` (its own preprocessing: resize and
    centre crop), resized to ``size`` pixels for display.

    Args:
        image (PIL.Image.Image): Any mode.
        preprocess_cfg (int | PreprocessCfg | dict): The model's preprocess
            config (``PCMCaptionInferencer.preprocess_cfg``).
        size (int): Output side in pixels.

    Returns:
        PIL.Image.Image: ``size x size`` RGB; patch ``(row, col)`` of a
        ``g x g`` grid covers ``[col, col + 1) x [row, row + 1)`` times
        ``size / g`` pixels.
    """
    pixels = clip_image_tensor(image, preprocess_cfg)  # (3, S, S) uint8
    view = Image.fromarray(np.ascontiguousarray(
        pixels.permute(1, 2, 0).numpy()))
    resample = (Image.NEAREST if size % view.width == 0 else
                Image.BICUBIC)
    return view.resize((size, size), resample)


def draw_concept_picture(image: Image.Image, view: ConceptView,
                         labels: bool = True) -> Image.Image:
    """Outline the selected patches on ``image`` (a :func:`clip_view`).

    Args:
        image (PIL.Image.Image): The square CLIP view.
        view (ConceptView): The image's concepts and selected patches.
        labels (bool): Write the concept word in each outlined patch.
            Defaults to True.

    Returns:
        PIL.Image.Image: A new RGB image.
    """
    out = image.convert('RGB').copy()
    draw = ImageDraw.Draw(out)
    cell = out.width / view.grid
    colours = concept_colours(view)
    # Pillow's bundled font, sized to the patch (no font file needed)
    font = ImageFont.load_default(size=max(9, min(16, round(cell / 4))))
    width = max(1, round(cell / 16))
    for patch in view.patches:
        x0, y0 = patch['col'] * cell, patch['row'] * cell
        colour = colours.get(patch['concept'], CONCEPT_COLOURS[0])
        draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1),
                       outline=colour, width=width)
        if labels:
            draw.text((x0 + width + 1, y0 + width), patch['concept'],
                      fill=colour, font=font, stroke_width=1,
                      stroke_fill='black')
    return out
