"""Import the authors' released SynthImgCap CLIP features into a store.

:func:`import_release_features` packs the release's ``.npz`` files (one per
synthetic image) into a feature store; :func:`load_clip_scores` divides the
release's 2.5 x cosine scores by the scale. Details: ``docs/data.md``.
"""
import logging
import math
import os
import os.path as osp
import re
from dataclasses import dataclass
from typing import (Any, Dict, Iterator, List, Mapping, NamedTuple, Optional,
                    Sequence, Union)

import numpy as np
import open_clip
from tqdm import tqdm

from mmpcm.datasets.feature_store import (CLIPFeatureInfo, FeatureStore,
                                          FeatureStoreWriter)
from mmpcm.preprocessing.corpus import (load_json, clean_caption,
                                        read_text_corpus)
from mmpcm.preprocessing.extraction import CLIP_SCORE_TEXT
from mmpcm.utils.cli import InputError, MissingInputError

PathLike = Union[str, 'os.PathLike[str]']
logger = logging.getLogger(__name__)

RELEASE_CLIP_SCORE_SCALE = 2.5
"""The release stores ``clipscore`` = 2.5 x cosine (CLIP-S's ``w``)."""
LOW_COSINE = 0.15
"""A median cosine below this, after dividing by the scale, is far below what
CLIP gives a caption and its own image: the file probably holds raw cosines
already (:func:`load_clip_scores` warns)."""

FEATURES_KEY = 'features'
GLOBAL_KEY = 'g_feature'
PAPER_PATCH_POOL = {'ViT-B-32': 1, 'ViT-L-14': 2}
"""Patch-grid pooling of the paper: ViT-L/14's 16x16 grid -> 8x8."""

_PART_DIR_RE = re.compile(r'^(?P<prefix>.+)_sp(?P<index>\d+)$')
_NPZ_SUFFIX = '.npz'
_RELEASE_ROOT_REMEDY = ('pass the folder that holds the released '
                        '<feats>_sp<k> folders')
_CAPTIONS_REMEDY = ('pass the release\'s caption file (--captions): COCO-'
                    'format or Karpathy JSON, JSON {id: caption} or list, or '
                    'a text corpus')
_SCORES_REMEDY = ('pass the release\'s CLIP score file, a JSON object '
                  '{id: score} (--clip-scores)')
_NPZ_REMEDY = ('restore the file from the release (or remove it and its '
               'caption)')

__all__ = [
    'ReleaseFile', 'ReleaseItem', 'ImportResult', 'IdMap', 'clip_feature_info',
    'find_release_files', 'load_caption_map', 'load_clip_scores',
    'read_release_npz', 'import_release_features', 'PAPER_PATCH_POOL',
    'RELEASE_CLIP_SCORE_SCALE'
]


# --------------------------------------------------------------------------
# CLIP sizes
# --------------------------------------------------------------------------
def clip_feature_info(clip_model: str,
                      pretrained: Optional[str] = 'openai',
                      patch_pool: Optional[int] = None,
                      num_patches: Optional[int] = None,
                      patch_dim: Optional[int] = None,
                      embed_dim: Optional[int] = None,
                      image_size: Optional[int] = None) -> CLIPFeatureInfo:
    """Feature sizes of an open_clip model, as the paper extracts them.

    Sizes come from open_clip's config of ``clip_model``; any given size
    overrides it (and all four sizes are needed for a name open_clip does
    not know).

    Args:
        clip_model (str): open_clip model name, e.g. ``'ViT-B-32'``.
        pretrained (str, optional): Weights tag (or file hash) recorded in
            the store. Defaults to 'openai'.
        patch_pool (int, optional): Patch-grid pooling. Defaults to None
            (:data:`PAPER_PATCH_POOL`, else 1).
        num_patches (int, optional): Patches per image. Defaults to None
            (``(grid / patch_pool) ** 2``).
        patch_dim (int, optional): Patch width. Defaults to None (the
            vision width).
        embed_dim (int, optional): Joint-space width. Defaults to None.
        image_size (int, optional): Input resolution. Defaults to None.

    Returns:
        CLIPFeatureInfo: The store's clip block.
    """
    cfg = open_clip.get_model_config(clip_model) or {}
    vision = cfg.get('vision_cfg', {})
    pool = patch_pool or PAPER_PATCH_POOL.get(clip_model, 1)
    image_size = image_size or vision.get('image_size')
    if isinstance(image_size, (tuple, list)):
        image_size = image_size[0]
    if num_patches is None and image_size and vision.get('patch_size'):
        num_patches = (image_size // vision['patch_size'] // pool)**2
    patch_dim = patch_dim or vision.get('width')
    embed_dim = embed_dim or cfg.get('embed_dim')
    missing = [
        n for n, v in (('num_patches', num_patches), ('patch_dim', patch_dim),
                       ('embed_dim', embed_dim)) if not v
    ]
    if missing:
        options = ', '.join('--' + name.replace('_', '-') for name in missing)
        raise InputError(
            '--clip-model', f'open_clip has no config for {clip_model!r}, '
            f'so {missing} are unknown', f'give them explicitly ({options})')
    return CLIPFeatureInfo(
        model=clip_model,
        num_patches=int(num_patches),
        patch_dim=int(patch_dim),
        embed_dim=int(embed_dim),
        pretrained=pretrained,
        image_size=int(image_size or 224),
        patch_pool=int(pool))


# --------------------------------------------------------------------------
# finding the files
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ReleaseFile:
    """One released ``.npz`` file.

    Args:
        part (int): ``k`` of its ``<feats>_sp<k>`` folder.
        image_id (str): The file name stem.
        path (str): The file.
    """
    part: int
    image_id: str
    path: str


def _part_dirs(root: str, prefix: Optional[str]) -> List[tuple]:
    """``(part index, path)`` of the ``<prefix>_sp<k>`` folders of root."""
    found: Dict[str, List[tuple]] = {}
    for name in sorted(os.listdir(root)):
        match = _PART_DIR_RE.match(name)
        if match and osp.isdir(osp.join(root, name)):
            found.setdefault(match['prefix'], []).append(
                (int(match['index']), osp.join(root, name)))
    if prefix is not None:
        if prefix not in found:
            raise MissingInputError(
                root, f'no folder named {prefix}_sp<k> (found feature '
                f'folders for {sorted(found) or "nothing"})',
                'check --prefix')
        return sorted(found[prefix])
    if not found:
        raise MissingInputError(
            root, 'no <feats>_sp<k> folder (e.g. clip_feats_sp0) holding the '
            'released .npz files', _RELEASE_ROOT_REMEDY)
    if len(found) > 1:
        raise InputError(
            root, f'feature folders of several kinds {sorted(found)}',
            'pick one with --prefix')
    return sorted(next(iter(found.values())))


def find_release_files(root: PathLike,
                       prefix: Optional[str] = None) -> List[ReleaseFile]:
    """List the released ``.npz`` files in import order.

    Order: by part index ``k``, then by file name. ``root`` may also be a
    single ``<feats>_sp<k>`` folder.

    Args:
        root (str | PathLike): The release folder holding the
            ``<feats>_sp<k>`` folders.
        prefix (str, optional): ``<feats>``, needed only when folders of
            several kinds are present. Defaults to None.

    Returns:
        list[ReleaseFile]: Every file.

    Raises:
        MissingInputError: If ``root`` or the folders are missing (a
            ``FileNotFoundError``).
        InputError: If an id appears in two folders, or the kind of folder
            is ambiguous (a ``ValueError``).
    """
    root = os.fspath(root)
    if not osp.isdir(root):
        raise MissingInputError(root, 'no such release feature folder',
                                _RELEASE_ROOT_REMEDY)
    match = _PART_DIR_RE.match(osp.basename(osp.normpath(root)))
    if match and not any(
            _PART_DIR_RE.match(n) for n in os.listdir(root)):
        parts = [(int(match['index']), root)]
    else:
        parts = _part_dirs(root, prefix)
    files: List[ReleaseFile] = []
    seen: Dict[str, str] = {}
    for index, folder in parts:
        names = sorted(n for n in os.listdir(folder)
                       if n.endswith(_NPZ_SUFFIX))
        for name in names:
            stem, path = name[:-len(_NPZ_SUFFIX)], osp.join(folder, name)
            if stem in seen:
                raise InputError(
                    path, f'id {stem!r} appears twice (also {seen[stem]})',
                    'remove one of the two files')
            seen[stem] = path
            files.append(ReleaseFile(index, stem, path))
    if not files:
        raise MissingInputError(root, 'the feature folders hold no .npz file',
                                _RELEASE_ROOT_REMEDY)
    return files


# --------------------------------------------------------------------------
# captions and scores
# --------------------------------------------------------------------------
class IdMap(dict):
    """Id -> value, read from a file (:func:`load_caption_map`,
    :func:`load_clip_scores`), which it remembers for error messages.

    Args:
        data (Mapping): The ids and values.
        path (str, optional): The file they come from. Defaults to None.
    """

    def __init__(self, data: Mapping = (), path: Optional[str] = None):
        super().__init__(data)
        self.path = path


def _add(mapping: Dict[str, Any], key: Any, value: Any, source: str,
         where: str = '') -> None:
    key = str(key)
    if key in mapping:
        raise InputError(source, f'{where}id {key!r} appears twice',
                         'give each id one caption (--id-key picks the id '
                         'field)')
    mapping[key] = value


def _caption(value: Any, key: Any, source: str, where: str = '') -> str:
    if not isinstance(value, str):
        raise InputError(
            source, f'{where}the caption of id {key!r} is not a str '
            f'({value!r})', _CAPTIONS_REMEDY)
    return clean_caption(value)


def _captions_of_records(records: Sequence[Any], id_key: str, source: str,
                         where: str = '') -> Dict[str, str]:
    out: Dict[str, str] = {}
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping) or id_key not in rec or (
                'caption' not in rec):
            raise InputError(
                source, f'{where}entry {i} needs {id_key!r} and "caption" '
                'keys', 'name the id field with --id-key, or pass another '
                'caption file (--captions)')
        _add(out, rec[id_key],
             _caption(rec['caption'], rec[id_key], source, where), source,
             where)
    return out


def load_caption_map(path: PathLike, id_key: str = 'id') -> Dict[str, str]:
    """Map ids (as str) to captions from a corpus or annotation file.

    Accepted files:

    * COCO-format JSON ``{"annotations": [{id_key, "caption"}]}``;
    * Karpathy split JSON ``{"images": [{"sentences": [{"sentid",
      "raw"}]}]}``: sentence id -> raw caption, every split;
    * JSON object ``{id: caption}``;
    * JSON list of captions (id = index) or of objects with ``id_key`` and
      ``"caption"``;
    * text, one caption per line: id = 0-based index among the captions
      read (empty and non-UTF-8 lines are skipped and not counted).

    Args:
        path (str | PathLike): The file.
        id_key (str): Id field of COCO annotations and object lists.
            Defaults to 'id'.

    Returns:
        IdMap: Id -> caption (cleaned of newlines), a dict remembering
        ``path``.

    Raises:
        InputError: On an unknown layout, a missing key or a repeated id
            (a ``ValueError``).
    """
    source = os.fspath(path)
    return IdMap(_read_caption_map(source, id_key), source)


def _read_caption_map(source: str, id_key: str) -> Dict[str, str]:
    if not source.lower().endswith('.json'):
        captions = read_text_corpus(source).captions
        return {str(i): c for i, c in enumerate(captions)}
    data = load_json(source, 'caption file')
    if isinstance(data, dict) and 'annotations' in data:
        return _captions_of_records(data['annotations'], id_key, source,
                                    'annotations: ')
    if isinstance(data, dict) and isinstance(data.get('images'), list):
        return _karpathy_sentences(data['images'], source)
    if isinstance(data, dict):
        return {str(k): _caption(v, k, source) for k, v in data.items()}
    if isinstance(data, list) and all(isinstance(c, str) for c in data):
        return {str(i): clean_caption(c) for i, c in enumerate(data)}
    if isinstance(data, list):
        return _captions_of_records(data, id_key, source)
    raise InputError(
        source, 'expected a caption JSON object, list or COCO/Karpathy file, '
        f'found {type(data).__name__}', _CAPTIONS_REMEDY)


def _karpathy_sentences(images: Sequence[Any], source: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for i, image in enumerate(images):
        if not isinstance(image, Mapping) or 'sentences' not in image:
            raise InputError(source, f'images[{i}]: missing key '
                             "'sentences'", _CAPTIONS_REMEDY)
        for j, sent in enumerate(image['sentences']):
            if not isinstance(sent, Mapping) or not {'sentid', 'raw'} <= set(
                    sent):
                raise InputError(
                    source, f'images[{i}].sentences[{j}] needs "sentid" and '
                    '"raw"', _CAPTIONS_REMEDY)
            _add(out, sent['sentid'],
                 _caption(sent['raw'], sent['sentid'], source), source)
    return out


def load_clip_scores(path: PathLike,
                     scale: float = RELEASE_CLIP_SCORE_SCALE
                     ) -> Dict[str, Optional[float]]:
    """Read a JSON object ``{id: scale x cosine}`` as raw cosines.

    The release's ``clipscore`` is 2.5 x cos(g_image, g_caption) (its loss
    divides by 2.5 before use,
    ``xmodaler/losses/weighted_label_smoothing.py``);
    a feature store holds the cosine itself, so every score is divided by
    ``scale``. A score beyond ``scale`` in magnitude cannot be ``scale`` x a
    cosine and is refused. Raw cosines passed with the default scale would
    pass that check, so a file whose median |score| / ``scale`` is below
    :data:`LOW_COSINE` gets a warning suggesting ``scale=1``; it is not
    refused, as a weak CLIP can score that low.

    Args:
        path (str | PathLike): The JSON file (null scores allowed).
        scale (float): What the file's scores are multiplied by: 2.5 for
            the release, 1 for raw cosines. Defaults to
            :data:`RELEASE_CLIP_SCORE_SCALE`.

    Returns:
        IdMap: Id (as str) -> cosine in [-1, 1], a dict remembering
        ``path``.

    Raises:
        InputError: If the file is not such an object, a score is not a
            finite number or null, or a score exceeds ``scale`` in
            magnitude (a ``ValueError``).
    """
    source = os.fspath(path)
    if isinstance(scale, bool) or not isinstance(
            scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise InputError(
            '--clip-score-scale', f'must be a positive number, got '
            f'{scale!r}',
            f'give the factor the scores were stored with '
            f'({RELEASE_CLIP_SCORE_SCALE} for the release, 1 for raw '
            'cosines)')
    data = load_json(source, 'CLIP score file')
    if not isinstance(data, dict):
        raise InputError(
            source, 'expected a JSON object {id: score}, found '
            f'{type(data).__name__}', _SCORES_REMEDY)
    scores = IdMap(path=source)
    for key, value in data.items():
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, (int, float)) or not math.isfinite(value)):
            raise InputError(
                source, f'score of id {key!r} must be a finite number or '
                f'null, got {value!r}', _SCORES_REMEDY)
        if value is not None and abs(value) > scale:
            raise InputError(
                source, f'score of id {key!r} is {value}, beyond +-{scale}, '
                f'so it is not {scale} x a cosine',
                'give the scale the file was stored with '
                '(--clip-score-scale)')
        scores[str(key)] = None if value is None else float(value) / scale
    _warn_if_raw_cosines(scores, scale, source)
    return scores


def _warn_if_raw_cosines(scores: Mapping[str, Optional[float]],
                         scale: float, source: str) -> None:
    """Warn when the divided scores look like cosines divided once more."""
    values = sorted(abs(v) for v in scores.values() if v is not None)
    if not values or scale == 1:
        return
    median = values[len(values) // 2]
    if median < LOW_COSINE:
        logger.warning(
            f'{source}: after dividing by {scale} the median |CLIP score| is '
            f'{median:.3f}, far below what CLIP gives a caption and its own '
            'image; if the file holds raw cosines already, import it with '
            '--clip-score-scale 1')


# --------------------------------------------------------------------------
# reading one file
# --------------------------------------------------------------------------
class ReleaseItem(NamedTuple):
    """Arrays of one released file, checked and ready for the store."""
    patch_tokens: np.ndarray  # (N, Dv) float32
    global_embed: np.ndarray  # (D, ) float32, L2-normalised


def _pool_patches(tokens: np.ndarray, pool: int, path: str) -> np.ndarray:
    """Average-pool an (S*S, Dv) patch grid by ``pool`` x ``pool``."""
    n, dim = tokens.shape
    side = int(round(math.sqrt(n)))
    if side * side != n or side % pool:
        raise InputError(
            path, f'{n} patches do not form a square grid divisible by pool '
            f'{pool}', 'check --pool (and --clip-model)')
    grid = tokens.reshape(side // pool, pool, side // pool, pool, dim)
    return grid.mean(axis=(1, 3)).reshape(-1, dim)  # (N / pool^2, Dv)


def _read_arrays(path: str) -> Dict[str, np.ndarray]:
    """The float32 ``features`` and ``g_feature`` arrays of a release file.

    Raises:
        InputError: If the file is not an .npz of number arrays, or lacks
            one of the two.
    """
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(path, f'cannot be read as an .npz of arrays ({err})',
                         _NPZ_REMEDY) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise InputError(path, 'holds one .npy array, not an .npz of arrays',
                         _NPZ_REMEDY)
    arrays = {}
    with npz:
        for key in (FEATURES_KEY, GLOBAL_KEY):
            if key not in npz.files:
                raise InputError(
                    path, f'no {key!r} array (found {sorted(npz.files)}): a '
                    f'released feature file holds {FEATURES_KEY!r} (N, Dv) '
                    f'patch tokens and {GLOBAL_KEY!r} (D,) or (1, D) global '
                    'embedding', _NPZ_REMEDY)
            try:
                arrays[key] = np.asarray(npz[key], dtype=np.float32)
            except (OSError, ValueError) as err:
                raise InputError(
                    path, f'cannot be read as an .npz of arrays ({err})',
                    _NPZ_REMEDY) from None
    return arrays


def read_release_npz(path: str,
                     clip_info: CLIPFeatureInfo,
                     pool: int = 1) -> ReleaseItem:
    """Read and check one released ``.npz`` file.

    Args:
        path (str): The file.
        clip_info (CLIPFeatureInfo): Expected sizes.
        pool (int): Average-pool the patch grid by this factor first (for
            files holding the unpooled grid). Defaults to 1.

    Returns:
        ReleaseItem: float32 patch tokens ``(N, Dv)`` and the normalised
        global embedding ``(D,)``.

    Raises:
        InputError: If ``features`` or ``g_feature`` is missing, a shape
            disagrees with ``clip_info`` or the file cannot be read (a
            ``ValueError``).
    """
    arrays = _read_arrays(path)
    patches, global_ = arrays[FEATURES_KEY], arrays[GLOBAL_KEY]
    if patches.ndim == 3 and patches.shape[0] == 1:
        patches = patches[0]
    if global_.ndim == 2 and global_.shape[0] == 1:
        global_ = global_[0]
    if pool > 1 and patches.ndim == 2:
        patches = _pool_patches(patches, pool, path)
    want_p = (clip_info.num_patches, clip_info.patch_dim)
    if patches.shape != want_p:
        raise InputError(
            path, f'{FEATURES_KEY} has shape {patches.shape}, but CLIP '
            f'{clip_info.model!r} features are {want_p} (num_patches, '
            'patch_dim)', 'check --clip-model (and --pool for an unpooled '
            'grid)')
    if global_.shape != (clip_info.embed_dim, ):
        raise InputError(
            path, f'{GLOBAL_KEY} has shape {global_.shape}, but CLIP '
            f'{clip_info.model!r} embeds in ({clip_info.embed_dim},)',
            'check --clip-model')
    norm = float(np.linalg.norm(global_))
    if not math.isfinite(norm) or norm == 0:
        raise InputError(path, f'{GLOBAL_KEY} has norm {norm}, so it cannot '
                         'be normalised', _NPZ_REMEDY)
    return ReleaseItem(patches, global_ / norm)


# --------------------------------------------------------------------------
# the import
# --------------------------------------------------------------------------
@dataclass
class ImportResult:
    """Outcome of :func:`import_release_features`.

    Args:
        store (str): The feature store written.
        num_files (int): Released files found.
        num_resumed (int): Items already in the store (skipped).
        num_written (int): Items written by this call.
    """
    store: str
    num_files: int
    num_resumed: int
    num_written: int


def _check_lookup(files: Sequence[ReleaseFile], table: Mapping[str, Any],
                  what: str, kind: str, option: str) -> None:
    """Raise an InputError naming ids missing from ``table``.

    Args:
        what (str): What ``table`` maps ids to (``'caption'``).
        kind (str): Its file (``'the caption file'``).
        option (str): The tool option that gives the file, named when
            ``table`` does not know its file (an :class:`IdMap` does).
    """
    missing = [f for f in files if f.image_id not in table]
    if missing:
        examples = ', '.join(f'{f.image_id!r} ({f.path})'
                             for f in missing[:5])
        raise InputError(
            getattr(table, 'path', None) or option,
            f'{len(missing)} released file(s) have no {what} in {kind}, '
            f'e.g. {examples} (ids are the .npz file name stems)',
            f'pass the {what} file of these released features ({option})')


def _record_id(image_id: str, int_ids: bool, path: str) -> Union[str, int]:
    if not int_ids:
        return image_id
    if not image_id.isdigit():
        raise InputError(path, f'id {image_id!r} is not an integer',
                         'drop --int-ids')
    return int(image_id)


def _check_resume(out_root: str, files: Sequence[ReleaseFile],
                  int_ids: bool) -> None:
    """The stored items must be the first files of this import."""
    for i, (_, _, record) in enumerate(FeatureStore(out_root).iter_records()):
        if i >= len(files):
            raise InputError(
                out_root, f'holds more items than the {len(files)} released '
                'files, so it comes from other input',
                'use a new output folder')
        want = _record_id(files[i].image_id, int_ids, files[i].path)
        if record['image_id'] != want:
            raise InputError(
                out_root, f'stored item {i} has image_id '
                f'{record["image_id"]!r} but this import puts {want!r} '
                f'({files[i].path}) there, so the store comes from other '
                'input', 'use a new output folder')


def _batches(items: Sequence[ReleaseFile],
             size: int) -> Iterator[Sequence[ReleaseFile]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def import_release_features(release_root: PathLike,
                            out_root: PathLike,
                            captions: Mapping[str, str],
                            clip_info: CLIPFeatureInfo,
                            clip_scores: Optional[Mapping[
                                str, Optional[float]]] = None,
                            prefix: Optional[str] = None,
                            int_ids: bool = False,
                            pool: int = 1,
                            shard_size: int = 4096,
                            batch_size: int = 256,
                            progress: bool = False) -> ImportResult:
    """Import released ``.npz`` features into a feature store; resumable.

    Every id is checked against ``captions`` (and ``clip_scores``) before
    anything is read. Reopening an existing store skips the items it holds
    (after checking they are this import's first files).

    Args:
        release_root (str | PathLike): Folder of ``<feats>_sp<k>`` folders.
        out_root (str | PathLike): The feature store to write.
        captions (Mapping[str, str]): Id -> caption
            (:func:`load_caption_map`).
        clip_info (CLIPFeatureInfo): The CLIP sizes
            (:func:`clip_feature_info`).
        clip_scores (Mapping[str, float | None], optional): Id -> raw
            cosine, as :func:`load_clip_scores` returns it (the release's
            values divided by 2.5); the store records the release's caption
            normalisation for them (``clip_score_text``). Defaults to None
            (every ``clip_score`` null).
        prefix (str, optional): ``<feats>`` of the folders. Defaults to None.
        int_ids (bool): Store ids as int (stems must be digits). Defaults
            to False (the stem as a str).
        pool (int): Patch-grid pooling applied on import. Defaults to 1.
        shard_size (int): Items per store shard. Defaults to 4096.
        batch_size (int): Files per write batch. Defaults to 256.
        progress (bool): Show a progress bar. Defaults to False.

    Returns:
        ImportResult: Counts.
    """
    files = find_release_files(release_root, prefix)
    _check_lookup(files, captions, 'caption', 'the caption file',
                  '--captions')
    if clip_scores is not None:
        _check_lookup(files, clip_scores, 'CLIP score', 'the score file',
                      '--clip-scores')
    out_root = os.fspath(out_root)
    writer = FeatureStoreWriter(
        out_root, clip_info, shard_size=shard_size,
        clip_score_text=None if clip_scores is None else CLIP_SCORE_TEXT)
    start = writer.num_items
    if start:
        _check_resume(out_root, files, int_ids)
    todo = files[start:]
    bar = tqdm(total=len(todo), disable=not progress, unit='file')
    for batch in _batches(todo, batch_size):
        items = [read_release_npz(f.path, clip_info, pool) for f in batch]
        records = [
            dict(image_id=_record_id(f.image_id, int_ids, f.path),
                 caption=captions[f.image_id],
                 clip_score=None if clip_scores is None else
                 clip_scores[f.image_id]) for f in batch
        ]
        writer.add(np.stack([it.patch_tokens for it in items]),
                   np.stack([it.global_embed for it in items]), records)
        bar.update(len(batch))
    writer.close()
    bar.close()
    return ImportResult(out_root, len(files), start, len(todo))

