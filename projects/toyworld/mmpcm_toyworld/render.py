"""Renderers: faithful "real" photos of scenes, and their style settings."""
import math
from dataclasses import dataclass
from typing import List, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .scenes import Scene, SceneObject

RGB = Tuple[int, int, int]
COLOUR_RGB = {
    'red': (210, 40, 40), 'green': (40, 170, 60), 'blue': (40, 80, 210),
    'yellow': (235, 215, 40), 'purple': (140, 50, 170),
    'orange': (240, 140, 30), 'pink': (240, 130, 180), 'brown': (130, 80, 40),
}
BACKGROUND_RGB = {
    'white': (235, 235, 232), 'dark': (35, 35, 40), 'grass': (70, 140, 60),
    'sand': (215, 195, 140), 'water': (60, 120, 190), 'brick': (160, 75, 55),
}
SIZE_SCALE = {'small': 0.10, 'big': 0.19}


@dataclass(frozen=True)
class RenderStyle:
    """How a renderer draws: the "camera" of a domain.

    Attributes:
        noise_std (float): Per-pixel Gaussian noise (0-255 scale).
        colour_jitter (float): Std of per-object colour shifts.
        textured (bool): Draw background textures (grass blades, bricks...).
        colour_cast (tuple): RGB offset over the whole image.
        saturation (float): Colour saturation factor.
        blur (float): Gaussian blur radius in pixels.
        position_jitter (float): Std of object placement, fraction of size.
    """
    noise_std: float = 6.0
    colour_jitter: float = 18.0
    textured: bool = True
    colour_cast: RGB = (0, 0, 0)
    saturation: float = 1.0
    blur: float = 0.5
    position_jitter: float = 0.06


REAL_STYLE = RenderStyle()
"""Photos: sensor noise, textured backgrounds, natural colour variation."""

SYNTHETIC_STYLE = RenderStyle(noise_std=0.0, colour_jitter=6.0,
                              textured=False, colour_cast=(14, -6, 22),
                              saturation=1.35, blur=0.0, position_jitter=0.03)
"""The generator's look: clean, flat, over-saturated, with a colour cast."""


# ---------------------------------------------------------------- shapes
def _polygon(cx: float, cy: float, r: float, points: List[Tuple[float, float]],
             angle: float) -> List[Tuple[float, float]]:
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca))
            for x, y in points]


def _star_points() -> List[Tuple[float, float]]:
    pts = []
    for k in range(10):
        rad = 1.0 if k % 2 == 0 else 0.45
        a = -math.pi / 2 + k * math.pi / 5
        pts.append((rad * math.cos(a), rad * math.sin(a)))
    return pts


SHAPE_POINTS = {
    'square': [(-.8, -.8), (.8, -.8), (.8, .8), (-.8, .8)],
    'triangle': [(0, -1), (.95, .75), (-.95, .75)],
    'diamond': [(0, -1), (.75, 0), (0, 1), (-.75, 0)],
    'cross': [(-.3, -1), (.3, -1), (.3, -.3), (1, -.3), (1, .3), (.3, .3),
              (.3, 1), (-.3, 1), (-.3, .3), (-1, .3), (-1, -.3), (-.3, -.3)],
    'star': _star_points(),
    'bar': [(-1, -.35), (1, -.35), (1, .35), (-1, .35)],
}


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float,
               r: float, colour: Union[RGB, int], angle: float) -> None:
    """Draw one shape of radius ``r`` centred at (cx, cy)."""
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == 'circle':
        draw.ellipse(box, fill=colour)
    elif shape == 'ring':
        draw.ellipse(box, outline=colour, width=max(2, int(r * 0.4)))
    else:
        draw.polygon(_polygon(cx, cy, r, SHAPE_POINTS[shape], angle),
                     fill=colour)


# ---------------------------------------------------------------- scenes
def _background(name: str, size: int, style: RenderStyle,
                rng: np.random.Generator) -> Image.Image:
    base = np.array(BACKGROUND_RGB[name], dtype=np.float32)
    img = np.broadcast_to(base, (size, size, 3)).copy()  # (H, W, 3)
    if style.textured:
        if name == 'grass':
            blades = rng.normal(0, 22, (1, size, 1)) + rng.normal(0, 10, (size, size, 1))
            img += blades * np.array([0.5, 1.0, 0.4])
        elif name == 'sand':
            img += rng.normal(0, 14, (size, size, 1))
        elif name == 'water':
            rows = np.sin(np.arange(size) / 2.0 + rng.uniform(0, 6))[:, None, None]
            img += rows * np.array([6, 10, 18])
        elif name == 'brick':
            mortar = np.zeros((size, size), dtype=bool)
            h = max(4, size // 8)
            mortar[::h] = True
            for row in range(0, size, h):
                offset = (row // h % 2) * h
                mortar[row:row + h, offset::2 * h] = True
            img[mortar] = (200, 195, 185)
        elif name in ('white', 'dark'):
            ramp = np.linspace(-10, 10, size)[None, :, None]
            img += ramp
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _positions(scene: Scene, rng: np.random.Generator,
               size: int) -> List[Tuple[float, float]]:
    n = len(scene.objects)
    c = size / 2
    if n == 1:
        return [(c, c)]
    if n == 2:
        near, far = size * 0.29, size * 0.71
        off = rng.uniform(-0.12, 0.12) * size
        first, second = {
            'left': ((near, c + off), (far, c - off)),
            'right': ((far, c + off), (near, c - off)),
            'above': ((c + off, near), (c - off, far)),
            'below': ((c + off, far), (c - off, near)),
        }[scene.relation or 'left']
        return [first, second]
    slots = [(size * .25, size * .3), (size * .75, size * .3),
             (size * .5, size * .74)]
    order = rng.permutation(3)
    return [slots[i] for i in order]


def _object_colour(obj: SceneObject, style: RenderStyle,
                   rng: np.random.Generator) -> RGB:
    rgb = np.array(COLOUR_RGB[obj.colour], dtype=np.float32)
    rgb = rgb + rng.normal(0, style.colour_jitter, 3)
    grey = rgb.mean()
    rgb = grey + (rgb - grey) * style.saturation
    return tuple(int(v) for v in np.clip(rgb, 0, 255))


def render_scene(scene: Scene,
                 rng: np.random.Generator,
                 size: int = 64,
                 style: RenderStyle = REAL_STYLE) -> Image.Image:
    """Render a scene: the image of :func:`render_scene_with_masks`."""
    return render_scene_with_masks(scene, rng, size, style)[0]


def render_scene_with_masks(scene: Scene,
                            rng: np.random.Generator,
                            size: int = 64,
                            style: RenderStyle = REAL_STYLE
                            ) -> Tuple[Image.Image, np.ndarray]:
    """Render a scene and where each of its objects is.

    Draws exactly what :func:`render_scene` draws from the same ``rng``
    (the masks take no random numbers).

    Args:
        scene (Scene): What to draw.
        rng (np.random.Generator): Source of all variation.
        size (int): Image side in pixels. Defaults to 64.
        style (RenderStyle): The domain's look. Defaults to
            :data:`REAL_STYLE`.

    Returns:
        tuple[PIL.Image.Image, np.ndarray]: The RGB image and ``(n, H, W)``
        bool masks, one per object of ``scene.objects`` in order (a later
        object drawn over an earlier one takes its pixels).
    """
    img = _background(scene.background, size, style, rng)
    draw = ImageDraw.Draw(img)
    masks = np.zeros((len(scene.objects), size, size), dtype=bool)
    for i, (obj, (cx, cy)) in enumerate(
            zip(scene.objects, _positions(scene, rng, size))):
        obj_size = obj.size or rng.choice(('small', 'big'))
        r = SIZE_SCALE[obj_size] * size * rng.uniform(0.9, 1.1)
        jitter = style.position_jitter * size
        x, y = cx + rng.normal(0, jitter), cy + rng.normal(0, jitter)
        colour = _object_colour(obj, style, rng)
        angle = rng.uniform(-0.25, 0.25)
        draw_shape(draw, obj.shape, x, y, r, colour, angle)
        mask = Image.new('L', (size, size), 0)
        draw_shape(ImageDraw.Draw(mask), obj.shape, x, y, r, 255, angle)
        drawn = np.asarray(mask) > 0  # (H, W)
        masks[:i] &= ~drawn
        masks[i] = drawn
    if style.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(style.blur))
    arr = np.asarray(img, dtype=np.float32)  # (H, W, 3)
    arr = arr + np.array(style.colour_cast, dtype=np.float32)
    if style.noise_std > 0:
        arr = arr + rng.normal(0, style.noise_std, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), masks
