"""Scenes and the caption grammar that describes them."""
import random
import re
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

COLOURS = ('red', 'green', 'blue', 'yellow', 'purple', 'orange', 'pink',
           'brown')
SHAPES = ('circle', 'square', 'triangle', 'diamond', 'cross', 'star', 'ring',
          'bar')
SIZES = ('small', 'big')
SIZE_WORDS = {'small': ('small', 'little', 'tiny'),
              'big': ('big', 'large', 'huge')}
RELATIONS = ('left', 'right', 'above', 'below')
RELATION_PHRASES = {
    'left': ('to the left of', 'left of', 'beside and left of'),
    'right': ('to the right of', 'right of', 'beside and right of'),
    'above': ('above', 'over', 'on top of'),
    'below': ('below', 'under', 'underneath'),
}
INVERSE = {'left': 'right', 'right': 'left', 'above': 'below',
           'below': 'above'}
BACKGROUNDS = ('white', 'dark', 'grass', 'sand', 'water', 'brick')
BACKGROUND_PHRASES = {
    'white': ('on a white background', 'on white', 'in front of a white wall'),
    'dark': ('on a dark background', 'on black', 'in the dark'),
    'grass': ('on the grass', 'on a lawn', 'on green grass'),
    'sand': ('on the sand', 'on a beach', 'on sandy ground'),
    'water': ('on the water', 'floating on water', 'in a pool'),
    'brick': ('in front of a brick wall', 'on bricks', 'against a brick wall'),
}
NUMBER_WORDS = {2: 'two', 3: 'three'}


@dataclass(frozen=True)
class SceneObject:
    """One shape of a scene (``size`` None: not said, any size)."""
    shape: str
    colour: str
    size: Optional[str]


@dataclass(frozen=True)
class Scene:
    """One to three objects, the relation of the first to the second (two
    objects only) and a background."""
    objects: Tuple[SceneObject, ...]
    background: str
    relation: Optional[str] = None

    def key(self) -> str:
        """A canonical string, the same for equal scenes."""
        objs = ';'.join(f'{o.size} {o.colour} {o.shape}' for o in self.objects)
        return f'{objs}|{self.relation}|{self.background}'


def sample_object(rng: random.Random) -> SceneObject:
    return SceneObject(rng.choice(SHAPES), rng.choice(COLOURS),
                       rng.choice(SIZES))


def sample_scene(rng: random.Random) -> Scene:
    """A random scene: 1-3 objects of distinct colour-shape, a background."""
    n = rng.choice((1, 1, 2, 2, 2, 3))
    objects: List[SceneObject] = []
    while len(objects) < n:
        obj = sample_object(rng)
        if all((o.shape, o.colour) != (obj.shape, obj.colour) for o in objects):
            objects.append(obj)
    relation = rng.choice(RELATIONS) if n == 2 else None
    return Scene(tuple(objects), rng.choice(BACKGROUNDS), relation)


# ---------------------------------------------------------------- captions
def _noun(obj: SceneObject, rng: random.Random, with_size: bool) -> str:
    size = rng.choice(SIZE_WORDS[obj.size]) + ' ' if with_size else ''
    return f'{size}{obj.colour} {obj.shape}'


_ARTICLE_RE = re.compile(r'\ba (?=[aeiou])')


def _fix_articles(text: str) -> str:
    """``a orange`` -> ``an orange``."""
    return _ARTICLE_RE.sub('an ', text)


def describe(scene: Scene, rng: random.Random) -> str:
    """One caption of the scene (see :func:`_describe`)."""
    return _fix_articles(_describe(scene, rng))


def _describe(scene: Scene, rng: random.Random) -> str:
    """One caption of the scene, drawn from the grammar's paraphrases.

    Every caption names each object's colour and shape; sizes, background
    and wording vary, as COCO's five references vary.
    """
    bg = rng.choice(BACKGROUND_PHRASES[scene.background])
    sized = rng.random() < 0.6
    objs = scene.objects
    if len(objs) == 1:
        noun = _noun(objs[0], rng, sized)
        template = rng.choice((
            'a {n} {bg}', 'there is a {n} {bg}', 'a single {n} {bg}',
            'a picture of a {n} {bg}', 'one {n} {bg}'))
        return template.format(n=noun, bg=bg)
    if len(objs) == 2:
        a, b = (_noun(o, rng, sized) for o in objs)
        rel = scene.relation
        if rng.random() < 0.5:
            phrase = rng.choice(RELATION_PHRASES[rel])
            template = rng.choice(('a {a} {r} a {b} {bg}',
                                   'a {a} is {r} a {b} {bg}',
                                   '{bg_cap} a {a} {r} a {b}'))
            first, second = a, b
        else:
            phrase = rng.choice(RELATION_PHRASES[INVERSE[rel]])
            template = rng.choice(('a {a} {r} a {b} {bg}',
                                   'a {a} sits {r} a {b} {bg}',
                                   'two shapes {bg} a {a} {r} a {b}'))
            first, second = b, a
        return template.format(a=first, b=second, r=phrase, bg=bg,
                               bg_cap=bg)
    nouns = [_noun(o, rng, sized) for o in objs]
    rng.shuffle(nouns)
    template = rng.choice((
        'a {0} a {1} and a {2} {bg}', 'three shapes {bg} a {0} a {1} and a {2}',
        'a {0} with a {1} and a {2} {bg}', 'there are three shapes a {0} a {1}'
        ' and a {2} {bg}'))
    return template.format(*nouns, bg=bg)


def describe_many(scene: Scene, rng: random.Random, count: int = 5) -> List[str]:
    """``count`` distinct paraphrases where the grammar allows."""
    captions: List[str] = []
    for _ in range(count * 10):
        caption = describe(scene, rng)
        if caption not in captions:
            captions.append(caption)
        if len(captions) == count:
            break
    while len(captions) < count:
        captions.append(describe(scene, rng))
    return captions


# ---------------------------------------------------------------- parsing
_SIZE_OF = {w: s for s, words in SIZE_WORDS.items() for w in words}
_OBJECT_RE = re.compile(
    r'\b(?:(' + '|'.join(_SIZE_OF) + r') )?(' + '|'.join(COLOURS) + r') (' +
    '|'.join(SHAPES) + r')\b')


def _relation_in(text: str) -> Optional[Tuple[str, int]]:
    """The relation phrase between the first two objects, with its position."""
    found = []
    for rel, phrases in RELATION_PHRASES.items():
        for phrase in phrases:
            for m in re.finditer(r'\b' + re.escape(phrase) + r'\b', text):
                found.append((m.start(), -len(phrase), rel))
    if not found:
        return None
    start, _, rel = min(found)
    return rel, start


def parse_caption(caption: str, default_size: Optional[str] = None) -> Scene:
    """Read the scene a caption of this grammar describes.

    This is how the stand-in generator "understands" a prompt, as a
    diffusion model's text encoder would: objects (colour, shape, optional
    size), the relation of two objects, and the background.

    Args:
        caption (str): A caption of the grammar.
        default_size (str, optional): Size of objects whose size is not
            said. Defaults to None (the renderer picks one).

    Returns:
        Scene: The described scene.
    """
    text = caption.lower()
    objects = []
    positions = []
    for m in _OBJECT_RE.finditer(text):
        size = _SIZE_OF[m.group(1)] if m.group(1) else default_size
        objects.append(SceneObject(m.group(3), m.group(2), size))
        positions.append(m.start())
    if not objects:
        raise ValueError(f'No "<colour> <shape>" object in caption {caption!r}.')
    background = next((bg for bg, phrases in BACKGROUND_PHRASES.items()
                       if any(p in text for p in phrases)), 'white')
    relation = None
    if len(objects) == 2:
        found = _relation_in(text)
        relation = found[0] if found else 'left'
    return Scene(tuple(objects[:3]), background, relation)


def with_objects(scene: Scene, objects: Sequence[SceneObject]) -> Scene:
    """The scene with other objects (relation dropped unless two remain)."""
    objects = tuple(objects)
    relation = scene.relation if len(objects) == 2 else None
    if len(objects) == 2 and relation is None:
        relation = 'left'
    return replace(scene, objects=objects, relation=relation)
