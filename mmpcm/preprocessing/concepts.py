"""Concept vocabulary: the corpus' most frequent nouns, embedded with CLIP.

Nouns come from a shipped curated list (``resources/nouns.txt``), concepts
are embedded by prompt ensembling, and the authors' concept pickle is read
without unsafe unpickling. Details: ``docs/data.md``, section 4.
"""
import io
import os
import os.path as osp
import pickle
import zipfile
from collections import Counter, OrderedDict
from dataclasses import dataclass
from importlib import resources
from typing import (Any, Dict, Iterable, List, Mapping, NamedTuple, Optional,
                    Sequence, Tuple, Union)

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmpcm.models.backbones.open_clip_vit import build_open_clip
from mmpcm.models.utils.concepts import ConceptVocabulary
from mmpcm.text import tokenize_caption
from mmpcm.utils.cli import InputError, MissingInputError, UserError
from mmpcm.utils.text_io import read_text

PathLike = Union[str, 'os.PathLike[str]']

DEFAULT_NUM_CONCEPTS = 400
DEFAULT_TEMPLATES: Tuple[str, ...] = (
    'a photo of a {}.',
    'a photo of the {}.',
    'a picture of a {}.',
    'an image of a {}.',
    'a close-up photo of a {}.',
    'a photo of a small {}.',
    'a photo of a large {}.',
    'a blurry photo of a {}.',
)
"""Prompt templates of the ensemble (written for mmpcm)."""

_NOUNS_RESOURCE = 'resources/nouns.txt'
_VOWELS = 'aeiou'
_NOUN_LIST_REMEDY = ('write one noun per line, singular first, then any '
                     'plural forms')
_RELEASE_CONCEPTS_REMEDY = ('pass the concept file released by the authors '
                            '(a pickle of (list of words, (K, D) tensor))')

__all__ = [
    'DEFAULT_NUM_CONCEPTS', 'DEFAULT_TEMPLATES', 'NounList', 'NounCount',
    'CLIPTextEncoder', 'regular_plurals', 'default_nouns_path',
    'count_nouns', 'top_nouns', 'read_templates', 'load_clip_text_encoder',
    'embed_words', 'build_concept_vocabulary', 'load_release_concepts',
    'convert_release_concepts', 'UnsafeConceptFileError'
]


# --------------------------------------------------------------------------
# nouns
# --------------------------------------------------------------------------
def regular_plurals(word: str) -> Tuple[str, ...]:
    """Regular English plural forms of a singular noun.

    ``-s/-x/-z/-ch/-sh`` take ``-es``; consonant + ``y`` takes ``-ies``;
    consonant + ``o`` takes both ``-s`` and ``-es``; anything else ``-s``.

    Args:
        word (str): Singular noun.

    Returns:
        tuple[str, ...]: Candidate plural forms.
    """
    if word.endswith(('s', 'x', 'z', 'ch', 'sh')):
        return (word + 'es', )
    if len(word) > 1 and word[-1] == 'y' and word[-2] not in _VOWELS:
        return (word[:-1] + 'ies', )
    if len(word) > 1 and word[-1] == 'o' and word[-2] not in _VOWELS:
        return (word + 's', word + 'es')
    return (word + 's', )


def default_nouns_path() -> str:
    """Path of the shipped noun list (``resources/nouns.txt``)."""
    return str(resources.files('mmpcm.preprocessing').joinpath(
        _NOUNS_RESOURCE))


@dataclass(frozen=True)
class NounList:
    """Singular nouns and the surface forms counted for each.

    Args:
        nouns (tuple[str, ...]): Singular nouns, in file order.
        forms (Mapping[str, str]): Every counted surface form (singular and
            plural) -> its singular noun.
    """
    nouns: Tuple[str, ...]
    forms: Mapping[str, str]

    @classmethod
    def from_entries(cls, entries: Iterable[Sequence[str]],
                     source: str = 'noun list') -> 'NounList':
        """Build from ``[singular, plural, ...]`` entries.

        An entry with only the singular gets :func:`regular_plurals`; given
        plurals replace the rules. A listed noun always maps to itself; a
        plural form claimed by two nouns is an error.

        Args:
            entries (Iterable[Sequence[str]]): One sequence per noun.
            source (str): Name used in error messages. Defaults to
                'noun list'.

        Returns:
            NounList: The list.

        Raises:
            InputError: On an empty entry, a repeated noun or a plural form
                claimed by two nouns (a ``ValueError``, naming ``source``).
        """
        entries = [tuple(e) for e in entries]
        nouns = tuple(e[0] for e in entries if e)
        if len(nouns) != len(entries):
            raise InputError(source, 'empty entry', _NOUN_LIST_REMEDY)
        repeated = sorted(w for w, c in Counter(nouns).items() if c > 1)
        if repeated:
            raise InputError(source, f'nouns listed twice: {repeated}',
                             'list each noun once')
        forms: Dict[str, str] = {noun: noun for noun in nouns}
        claimed: Dict[str, str] = {}
        for entry in entries:
            noun, plurals = entry[0], entry[1:] or regular_plurals(entry[0])
            for form in plurals:
                if form in forms and forms[form] == form:
                    continue  # a listed noun counts for itself only
                if form in claimed and claimed[form] != noun:
                    raise InputError(
                        source, f'{form!r} is a plural of both '
                        f'{claimed[form]!r} and {noun!r}',
                        'spell out the plurals of one of them')
                claimed[form] = noun
        forms.update(claimed)
        return cls(nouns=nouns, forms=forms)

    @classmethod
    def load(cls, path: Optional[PathLike] = None) -> 'NounList':
        """Read a noun list file (default: the shipped one).

        Format: one noun per line, singular first, optional plural forms
        after it separated by spaces; ``#`` starts a comment; words are
        lower-cased.

        Args:
            path (str | PathLike, optional): The file. Defaults to None
                (:func:`default_nouns_path`).

        Returns:
            NounList: The list.
        """
        path = default_nouns_path() if path is None else os.fspath(path)
        if not osp.isfile(path):
            raise MissingInputError(
                path, 'no such noun list file',
                'pass an existing file to --nouns, or leave the option out '
                'for the shipped list')
        entries = []
        for line in read_text(path).split('\n'):
            words = line.split('#', 1)[0].lower().split()
            if words:
                entries.append(words)
        if not entries:
            raise InputError(path, 'the noun list is empty',
                             _NOUN_LIST_REMEDY)
        return cls.from_entries(entries, source=path)

    def singular(self, token: str) -> Optional[str]:
        """The noun a caption token counts for, or None.

        Args:
            token (str): A lower-case token of :func:`tokenize_caption`.

        Returns:
            str | None: The singular noun.
        """
        if token.endswith("'s"):
            token = token[:-2]
        return self.forms.get(token)


class NounCount(NamedTuple):
    """A noun and how often the corpus mentions it (all forms)."""
    word: str
    count: int


def count_nouns(captions: Iterable[str], nouns: NounList) -> Counter:
    """Count the listed nouns in captions, plural forms merged.

    Args:
        captions (Iterable[str]): Captions.
        nouns (NounList): The nouns to count.

    Returns:
        Counter: Singular noun -> occurrences.
    """
    counts: Counter = Counter()
    for caption in captions:
        for token in tokenize_caption(caption):
            noun = nouns.singular(token)
            if noun is not None:
                counts[noun] += 1
    return counts


def top_nouns(captions: Iterable[str],
              nouns: NounList,
              num: int = DEFAULT_NUM_CONCEPTS,
              min_count: int = 1) -> List[NounCount]:
    """The ``num`` most frequent listed nouns of a corpus.

    Args:
        captions (Iterable[str]): Captions.
        nouns (NounList): The candidate nouns.
        num (int): How many to keep. Defaults to 400.
        min_count (int): Drop nouns seen fewer times. Defaults to 1.

    Returns:
        list[NounCount]: By decreasing count, ties alphabetical; fewer than
        ``num`` if the corpus has fewer nouns.
    """
    if num <= 0:
        raise ValueError(f'num must be positive, got {num}')
    counts = count_nouns(captions, nouns)
    ranked = sorted((w for w, c in counts.items() if c >= min_count),
                    key=lambda w: (-counts[w], w))
    return [NounCount(w, counts[w]) for w in ranked[:num]]


def read_templates(path: PathLike) -> Tuple[str, ...]:
    """Read prompt templates, one per line, each with one ``{}``.

    Args:
        path (str | PathLike): Text file; empty lines and ``#`` lines are
            skipped.

    Returns:
        tuple[str, ...]: The templates.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise MissingInputError(
            path, 'no such prompt template file',
            'pass an existing file to --templates, or leave the option out '
            'for the default templates')
    templates = tuple(
        line.strip() for line in read_text(path).split('\n')
        if line.strip() and not line.lstrip().startswith('#'))
    _check_templates(templates, path)
    return templates


def _check_templates(templates: Sequence[str], source: str) -> None:
    """Raise :class:`InputError` (naming ``source``) on bad templates."""
    remedy = 'write one template per line, each with one "{}" for the word'
    if not templates:
        raise InputError(source, 'no prompt template', remedy)
    bad = [t for t in templates if t.count('{}') != 1]
    if bad:
        raise InputError(
            source, 'every template needs exactly one "{}" for the word; '
            f'bad: {bad}', remedy)


# --------------------------------------------------------------------------
# CLIP text embeddings
# --------------------------------------------------------------------------
@dataclass
class CLIPTextEncoder:
    """An open_clip model with the tokenizer that goes with it.

    Args:
        model (nn.Module): open_clip ``CLIP`` model (only ``encode_text`` is
            used).
        tokenizer (Any): Callable mapping a list of str to ``(B, L)`` token
            ids.
        device (torch.device): Where the model runs.
    """
    model: nn.Module
    tokenizer: Any
    device: torch.device

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings, ``(len(texts), D)`` float32."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)


def load_clip_text_encoder(model_name: Optional[str] = None,
                           pretrained: Optional[str] = None,
                           model_cfg: Optional[dict] = None,
                           device: Union[str, torch.device] = 'cpu'
                           ) -> CLIPTextEncoder:
    """Build an open_clip model offline with its tokenizer.

    Args:
        model_name (str, optional): open_clip model name, e.g.
            ``'ViT-B-32'``. Defaults to None.
        pretrained (str, optional): open_clip pretrained tag or local weight
            file; None gives random weights. Defaults to None.
        model_cfg (dict, optional): Custom open_clip config instead of a
            name; its ``text_cfg.context_length`` sizes the tokenizer.
            Defaults to None.
        device (str | torch.device): Defaults to 'cpu'.

    Returns:
        CLIPTextEncoder: The model in eval mode on ``device``.
    """
    model = build_open_clip(model_name, pretrained, model_cfg)
    if model_cfg is not None:
        context = model_cfg.get('text_cfg', {}).get('context_length', 77)
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context)
    else:
        tokenizer = open_clip.get_tokenizer(model_name)
    device = torch.device(device)
    return CLIPTextEncoder(model.to(device).eval(), tokenizer, device)


def embed_words(encoder: CLIPTextEncoder,
                words: Sequence[str],
                templates: Sequence[str] = DEFAULT_TEMPLATES,
                batch_size: int = 256) -> torch.Tensor:
    """Prompt-ensembled CLIP text embeddings of words.

    Args:
        encoder (CLIPTextEncoder): The text encoder.
        words (Sequence[str]): ``K`` words.
        templates (Sequence[str]): ``T`` templates with one ``{}``.
            Defaults to :data:`DEFAULT_TEMPLATES`.
        batch_size (int): Prompts per forward pass. Defaults to 256.

    Returns:
        torch.Tensor: ``(K, D)`` float32, the normalised mean of the
        normalised template embeddings.
    """
    _check_templates(templates, 'templates')
    if batch_size <= 0:
        raise ValueError(f'batch_size must be positive, got {batch_size}')
    prompts = [t.format(w) for w in words for t in templates]  # K * T
    parts = [
        encoder.encode(prompts[i:i + batch_size]).cpu()
        for i in range(0, len(prompts), batch_size)
    ]
    if not parts:
        raise ValueError('no word to embed')
    per_template = torch.cat(parts).view(len(words), len(templates), -1)
    return F.normalize(per_template.mean(dim=1), dim=-1)  # (K, D)


def build_concept_vocabulary(
        captions: Iterable[str],
        encoder: CLIPTextEncoder,
        clip_model: str,
        num_concepts: int = DEFAULT_NUM_CONCEPTS,
        nouns: Optional[NounList] = None,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        batch_size: int = 256,
        min_count: int = 1) -> Tuple[ConceptVocabulary, List[NounCount]]:
    """The corpus' most frequent nouns, embedded with CLIP.

    Args:
        captions (Iterable[str]): The training captions.
        encoder (CLIPTextEncoder): The CLIP text encoder.
        clip_model (str): open_clip model name stored in the file (the
            PCM neck checks it against its own ``clip_model``).
        num_concepts (int): How many nouns. Defaults to 400.
        nouns (NounList, optional): Candidate nouns. Defaults to None (the
            shipped list).
        templates (Sequence[str]): Prompt templates. Defaults to
            :data:`DEFAULT_TEMPLATES`.
        batch_size (int): Prompts per forward pass. Defaults to 256.
        min_count (int): Minimum corpus count of a concept. Defaults to 1.

    Returns:
        tuple[ConceptVocabulary, list[NounCount]]: The vocabulary and the
        chosen nouns with their counts.
    """
    nouns = NounList.load() if nouns is None else nouns
    chosen = top_nouns(captions, nouns, num_concepts, min_count)
    if not chosen:
        raise ValueError('no noun of the noun list occurs in the corpus')
    words = [c.word for c in chosen]
    embeddings = embed_words(encoder, words, templates, batch_size)
    return ConceptVocabulary(words, embeddings, clip_model), chosen


# --------------------------------------------------------------------------
# the authors' released concept file
# --------------------------------------------------------------------------
class UnsafeConceptFileError(UserError, pickle.UnpicklingError):
    """A concept pickle holds objects beyond a word list and a tensor."""


def _storage_from_bytes(data: bytes) -> Any:
    """Safe stand-in for ``torch.storage._load_from_bytes``.

    A plainly pickled tensor keeps its storage as a nested ``torch.save``
    payload; torch's own helper loads it with ``weights_only=False``, this
    one with ``weights_only=True``.
    """
    return torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)


_ALLOWED_GLOBALS = {
    ('torch._utils', '_rebuild_tensor_v2'): torch._utils._rebuild_tensor_v2,
    ('torch._utils', '_rebuild_tensor'): torch._utils._rebuild_tensor,
    ('torch.storage', '_load_from_bytes'): _storage_from_bytes,
    ('collections', 'OrderedDict'): OrderedDict,
}


class _ConceptUnpickler(pickle.Unpickler):
    """Unpickles builtins, tensors and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeConceptFileError(
                f'refused to unpickle {module}.{name}: a concept file holds '
                'only a word list and a tensor') from None


def _unpickle_restricted(path: str) -> Any:
    with open(path, 'rb') as f:
        return _ConceptUnpickler(f).load()


def _load_concept_pickle(path: str) -> Any:
    """Load a torch.save (zip or legacy) or pickle.dump file safely."""
    try:
        if zipfile.is_zipfile(path):
            return torch.load(path, map_location='cpu', weights_only=True)
        obj = _unpickle_restricted(path)
        if isinstance(obj, int) and obj == torch.serialization.MAGIC_NUMBER:
            # legacy (non-zip) torch.save: the first pickle is its magic
            return torch.load(path, map_location='cpu', weights_only=True)
        return obj
    except pickle.UnpicklingError as err:
        raise UnsafeConceptFileError(
            f'{path}: not loaded, since unpickling it could run code '
            f'({_refusal_reason(str(err))}). The released concept file is a '
            'pickle of (list of str, tensor) and needs nothing else.'
        ) from None


def _refusal_reason(message: str) -> str:
    """The line of an unpickling error that names what was refused."""
    paragraphs = [' '.join(p.split()) for p in message.split('\n\n')]
    boilerplate = ('Weights only load failed', 'Check the documentation')
    reasons = [p for p in paragraphs if p and not p.startswith(boilerplate)]
    return reasons[0] if reasons else ' '.join(message.split())


def load_release_concepts(path: PathLike) -> Tuple[List[str], torch.Tensor]:
    """Read the authors' concept file without unsafe unpickling.

    Accepts ``torch.save((words, tensor))`` files (read with
    ``torch.load(weights_only=True)``) and ``pickle.dump((words, tensor))``
    files (read with an unpickler that only rebuilds tensors).

    Args:
        path (str | PathLike): The pickle file.

    Returns:
        tuple[list[str], torch.Tensor]: The words and the ``(K, D)``
        embeddings as float32.

    Raises:
        MissingInputError: If the file does not exist (a
            ``FileNotFoundError``).
        UnsafeConceptFileError: If the file holds any other object type.
        InputError: If the content is not ``(list of K str, (K, D)
            tensor)`` (a ``ValueError``).
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise MissingInputError(path, 'no such released concept file',
                                _RELEASE_CONCEPTS_REMEDY)
    obj = _load_concept_pickle(path)
    expected = 'expected a pair (list of K words, (K, D) tensor)'
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise InputError(path, f'found {type(obj).__name__}, {expected}',
                         _RELEASE_CONCEPTS_REMEDY)
    words, embeddings = obj
    if not isinstance(words, (list, tuple)) or not all(
            isinstance(w, str) and w for w in words):
        raise InputError(
            path, 'the first element must be a list of non-empty str '
            f'({expected})', _RELEASE_CONCEPTS_REMEDY)
    if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 2 or (
            embeddings.shape[0] != len(words)):
        shape = tuple(getattr(embeddings, 'shape', ()))
        raise InputError(
            path, f'the second element is {type(embeddings).__name__} of '
            f'shape {shape} for {len(words)} words ({expected})',
            _RELEASE_CONCEPTS_REMEDY)
    return list(words), embeddings.float()


def convert_release_concepts(path: PathLike,
                             clip_model: str,
                             embed_dim: Optional[int] = None
                             ) -> ConceptVocabulary:
    """Turn the authors' concept file into a :class:`ConceptVocabulary`.

    Their file does not say which CLIP made the embeddings, so the caller
    names it.

    Args:
        path (str | PathLike): The released pickle.
        clip_model (str): open_clip model name the embeddings come from
            (e.g. ``'ViT-B-32'``).
        embed_dim (int, optional): Expected embedding width. Defaults to
            None: the width of ``clip_model``'s open_clip config when
            open_clip knows the name, else not checked.

    Returns:
        ConceptVocabulary: The words with L2-normalised embeddings.
    """
    words, embeddings = load_release_concepts(path)
    if embed_dim is None:
        embed_dim = _known_embed_dim(clip_model)
    if embed_dim is not None and embeddings.shape[1] != embed_dim:
        raise InputError(
            path, f'embeddings are {embeddings.shape[1]}-d but CLIP '
            f'{clip_model!r} embeds in {embed_dim}-d',
            'pass the --clip-model that made them (or their --embed-dim), '
            'or the concept file of this CLIP')
    if (embeddings.norm(dim=-1) == 0).any():
        raise InputError(path, 'some embeddings are all zeros',
                         _RELEASE_CONCEPTS_REMEDY)
    return ConceptVocabulary(words, embeddings, clip_model)


def _known_embed_dim(model_name: str) -> Optional[int]:
    """Joint-space width of an open_clip model name, None if unknown."""
    cfg = open_clip.get_model_config(model_name)
    return None if cfg is None else int(cfg['embed_dim'])
