"""A defective caption-to-image generator standing in for Stable Diffusion.

It "reads" a caption with the grammar's parser (the text encoder's job) and
draws the scene in the synthetic style, but, at a configurable rate, gets the
salient content wrong the way diffusion models do: a wrong colour or shape,
a missing object or an extra one. It has the call interface of a diffusers
text-to-image pipeline, so the data pipeline's generator runs it unchanged.
"""
import random
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from .render import SYNTHETIC_STYLE, RenderStyle, render_scene
from .scenes import (COLOURS, SHAPES, Scene, parse_caption, sample_object,
                     with_objects)

DEFECTS = ('wrong_colour', 'wrong_shape', 'missing_object', 'extra_object')


@dataclass
class DefectProcess:
    """What goes wrong, and how often (the pipeline's "scheduler").

    Attributes:
        defect_rate (float): Probability that an image has a defect.
        kinds (tuple): Defect kinds drawn uniformly.
        style (dict): The synthetic render style.
    """
    defect_rate: float = 0.3
    kinds: tuple = DEFECTS
    style: dict = field(default_factory=lambda: asdict(SYNTHETIC_STYLE))

    @property
    def config(self) -> dict:
        """Recorded in the generation metadata like a scheduler config."""
        return asdict(self)


@dataclass
class ToyPipelineOutput:
    """Like diffusers' ``StableDiffusionPipelineOutput``.

    Attributes:
        images (list): PIL images or ``(H, W, 3)`` float arrays in [0, 1].
        nsfw_content_detected (None): No safety checker.
        defects (list[str | None]): The defect drawn for each image.
    """
    images: list
    nsfw_content_detected: Optional[List[bool]]
    defects: List[Optional[str]]


def apply_defect(scene: Scene, kind: str, rng: np.random.Generator) -> Scene:
    """Corrupt the scene's salient (first) object, or its object set."""
    objects = list(scene.objects)
    target = objects[0]
    if kind == 'wrong_colour':
        colour = rng.choice([c for c in COLOURS if c != target.colour])
        objects[0] = type(target)(target.shape, str(colour), target.size)
    elif kind == 'wrong_shape':
        shape = rng.choice([s for s in SHAPES if s != target.shape])
        objects[0] = type(target)(str(shape), target.colour, target.size)
    elif kind == 'missing_object':
        if len(objects) == 1:  # the only object: drawn as something else
            return apply_defect(scene, 'wrong_shape', rng)
        objects.pop(int(rng.integers(len(objects))))
    elif kind == 'extra_object':
        if len(objects) == 3:
            return apply_defect(scene, 'wrong_colour', rng)
        objects.append(sample_object(random.Random(int(rng.integers(2**31)))))
    else:
        raise ValueError(f'Unknown defect {kind!r}; expected one of {DEFECTS}.')
    return with_objects(scene, objects)


class ToyDiffusionPipeline:
    """Caption -> synthetic image, with defects in salient regions.

    Args:
        defect_rate (float): Probability of a defect per image.
            Defaults to 0.3.
        style (RenderStyle): Synthetic look. Defaults to
            :data:`SYNTHETIC_STYLE`.
        image_size (int): Default output side. Defaults to 64.
    """

    def __init__(self, defect_rate: float = 0.3,
                 style: RenderStyle = SYNTHETIC_STYLE,
                 image_size: int = 64) -> None:
        if not 0.0 <= defect_rate <= 1.0:
            raise ValueError(f'defect_rate must be in [0, 1], got {defect_rate}.')
        self.scheduler = DefectProcess(defect_rate, DEFECTS, asdict(style))
        self.style = style
        self.image_size = image_size

    def set_progress_bar_config(self, **kwargs) -> None:
        """diffusers API; there is no progress bar."""

    def to(self, device: Union[str, torch.device]) -> 'ToyDiffusionPipeline':
        """diffusers API; runs on the CPU."""
        return self

    def _seed(self, generator: Optional[torch.Generator], i: int) -> int:
        return int(generator.initial_seed()) if generator is not None else i

    def draw_scene(self, caption: str, seed: int) -> tuple:
        """What the pipeline draws for a caption and seed, without drawing it.

        Returns:
            tuple[Scene, str | None, np.random.Generator]: The scene as it
            will be drawn, the defect it got (None when faithful) and the
            random state the render continues from.
        """
        rng = np.random.default_rng(seed)
        scene = parse_caption(caption)
        defect = None
        if rng.random() < self.scheduler.defect_rate:
            defect = str(rng.choice(self.scheduler.kinds))
            scene = apply_defect(scene, defect, rng)
        return scene, defect, rng

    def generate_one(self, caption: str, seed: int,
                     size: int) -> tuple:
        """One image and the defect it got (None when faithful)."""
        scene, defect, rng = self.draw_scene(caption, seed)
        return render_scene(scene, rng, size, self.style), defect

    def __call__(self,
                 prompt: Union[str, Sequence[str]],
                 num_inference_steps: int = 1,
                 guidance_scale: float = 1.0,
                 height: Optional[int] = None,
                 width: Optional[int] = None,
                 generator: Union[None, torch.Generator,
                                  List[torch.Generator]] = None,
                 output_type: str = 'pil',
                 **kwargs) -> ToyPipelineOutput:
        """Generate one image per prompt (diffusers' call signature)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        size = height or width or self.image_size
        gens = generator if isinstance(generator, list) else [generator] * len(prompts)
        images, defects = [], []
        for i, (caption, gen) in enumerate(zip(prompts, gens)):
            image, defect = self.generate_one(caption, self._seed(gen, i), size)
            images.append(image if output_type == 'pil' else
                          np.asarray(image, dtype=np.float32) / 255.0)
            defects.append(defect)
        return ToyPipelineOutput(images, None, defects)
