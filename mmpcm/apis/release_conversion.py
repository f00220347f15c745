"""Convert the authors' released PCM-Net models (X-modaler) to mmpcm.

:func:`convert_release_model` maps every release key to ``PCMCaptioner`` (or
reports it) and the release's token ids to mmpcm's; conventions and key map:
``docs/method.md``, "Converting a release model".
"""
import copy
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config

from mmpcm.utils.cli import UserError

RELEASE_EOS = '.'
RELEASE_UNK = 'UNK'
_ABSENT_BIAS = -1e4


class ReleaseConversionError(UserError, ValueError):
    """A release file, or its pairing with a config, cannot be converted."""


# --------------------------------------------------------------------------
# reading the release's files
# --------------------------------------------------------------------------
def read_release_vocabulary(path: str) -> List[str]:
    """The release's id -> word list: ``'.'`` (id 0), then the file's lines.

    Args:
        path (str): ``vocabulary.txt``, one word per line.

    Returns:
        list[str]: Words by release id.

    Raises:
        ReleaseConversionError: For a missing, empty or duplicated file.
    """
    if not osp.isfile(path):
        raise ReleaseConversionError(
            f'{path}: vocabulary file not found; pass the vocabulary.txt '
            'released with the model')
    with open(path, encoding='utf-8') as file:
        words = [line.strip() for line in file]
    while words and not words[-1]:
        words.pop()
    if not words or any(not w for w in words):
        raise ReleaseConversionError(
            f'{path}: empty vocabulary or an empty line inside it; pass the '
            'vocabulary.txt released with the model')
    seen = set()
    for word in words:
        if word in seen or word == RELEASE_EOS:
            raise ReleaseConversionError(
                f'{path}: the word {word!r} appears twice (the release adds '
                f'{RELEASE_EOS!r} as id 0 itself); not a release vocabulary')
        seen.add(word)
    return [RELEASE_EOS] + words


def load_release_state(path: str) -> Dict[str, torch.Tensor]:
    """The X-modaler state dict of a release checkpoint, loaded safely.

    Reads with ``torch.load(weights_only=True)`` (and mmpcm's allowlist);
    accepts a raw state dict or ``{'model': state_dict, ...}``; strips a
    DDP ``module.`` prefix.

    Args:
        path (str): The ``.pth`` file.

    Returns:
        dict[str, torch.Tensor]: The model's tensors.

    Raises:
        ReleaseConversionError: If there is no such file, or it holds no
            release model.
        InputError: For a folder, or a file that is no complete torch
            checkpoint (see
            :func:`mmpcm.utils.checkpoint.check_checkpoint_file`).
    """
    from mmpcm.utils.checkpoint import load_checkpoint_file
    if not osp.exists(path):  # a folder or another file: the loader words it
        raise ReleaseConversionError(f'{path}: checkpoint not found')
    ckpt = load_checkpoint_file(path)
    if isinstance(ckpt, dict) and isinstance(ckpt.get('model'), dict):
        ckpt = ckpt['model']
    if not isinstance(ckpt, dict) or not ckpt or not all(
            isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ReleaseConversionError(
            f'{path}: not an X-modaler state dict (expected tensors, or '
            '{"model": tensors}); pass the released .pth model')
    state = {(k[len('module.'):] if k.startswith('module.') else k): v
             for k, v in ckpt.items()}
    if 'predictor.logits.weight' not in state:
        raise ReleaseConversionError(
            f'{path}: no predictor.logits.weight: not a PCM-Net release '
            'model (X-modaler TransformerEncoderDecoder)')
    return state


# --------------------------------------------------------------------------
# the architecture a release state dict describes
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ReleaseArchitecture:
    """Sizes read off a release state dict.

    Attributes:
        patch_dim (int): CLIP patch width (768 B/32, 1024 L/14).
        embed_dim (int): CLIP joint-space width (512 B/32, 768 L/14).
        num_patches (int): Patch tokens (49 B/32, 64 L/14).
        model_dim (int): Captioner width.
        ffn_dim (int): Feed-forward width.
        encoder_layers (int): Encoder layers.
        decoder_layers (int): Decoder layers.
        vocab_size (int): Release ids (``'.'`` included).
    """
    patch_dim: int
    embed_dim: int
    num_patches: int
    model_dim: int
    ffn_dim: int
    encoder_layers: int
    decoder_layers: int
    vocab_size: int

    @classmethod
    def of(cls, state: Dict[str, torch.Tensor]) -> 'ReleaseArchitecture':
        """Read the sizes from a release state dict."""
        def layers(prefix: str) -> int:
            ids = {int(k[len(prefix):].split('.')[0]) for k in state
                   if k.startswith(prefix)}
            return max(ids) + 1 if ids else 0

        visual = state['visual_embed.embeddings.weight']  # (d, Dv)
        textual = state['visual_embed.t_embeddings.weight']  # (d, D)
        pos = state['visual_embed.embeddings_pos']  # (1, 1 + N, d)
        return cls(
            patch_dim=visual.shape[1], embed_dim=textual.shape[1],
            num_patches=pos.shape[1] - 1, model_dim=visual.shape[0],
            ffn_dim=state['encoder.layers.0.intermediate.dense.weight'].shape[0],
            encoder_layers=layers('encoder.layers.'),
            decoder_layers=layers('decoder.g_layers.'),
            vocab_size=state['predictor.logits.weight'].shape[0])

    def describe(self) -> str:
        clip = {(768, 512): ' (CLIP ViT-B/32)',
                (1024, 768): ' (CLIP ViT-L/14)'}.get(
                    (self.patch_dim, self.embed_dim), '')
        return (f'{self.num_patches} patches of width {self.patch_dim}, '
                f'{self.embed_dim}-d joint space{clip}')


def _model_sizes(model_cfg: dict) -> ReleaseArchitecture:
    """The sizes a config's model would have (vocabulary size left 0)."""
    from mmpcm.models.backbones.clip_dims import clip_dims
    neck, enc, head = model_cfg['neck'], model_cfg['encoder'], model_cfg['head']
    backbone = model_cfg['backbone']
    stated = ('num_patches', 'patch_dim', 'embed_dim')
    if all(backbone.get(k) is not None for k in stated):  # CLIPJointProjection
        clip = {k: backbone[k] for k in stated}
    else:
        clip = clip_dims(backbone.get('model_name'), backbone.get('model_cfg'),
                         backbone.get('patch_pool', 1))._asdict()
    clip.update({k: neck[k] for k in clip if neck.get(k) is not None})
    return ReleaseArchitecture(
        **clip, model_dim=neck['model_dim'],
        ffn_dim=enc['ffn_dim'], encoder_layers=enc['num_layers'],
        decoder_layers=head['num_layers'], vocab_size=0)


def _clip_dims_of(model_cfg: dict) -> dict:
    """``num_patches``, ``patch_dim`` and ``embed_dim`` of a model config
    (the neck's where stated, else its backbone's)."""
    sizes = _model_sizes(model_cfg)
    return dict(num_patches=sizes.num_patches, patch_dim=sizes.patch_dim,
                embed_dim=sizes.embed_dim)


def check_release_matches_config(arch: ReleaseArchitecture, model_cfg: dict,
                                 checkpoint: str, config: str) -> None:
    """Raise one clear error when the release and the config disagree.

    Raises:
        ReleaseConversionError: Naming both files and the first mismatch.
    """
    want = _model_sizes(model_cfg)
    clip_fields = ('patch_dim', 'embed_dim', 'num_patches')
    if any(getattr(arch, f) != getattr(want, f) for f in clip_fields):
        raise ReleaseConversionError(
            f'{checkpoint}: the release model takes {arch.describe()}, but '
            f'{config} is for {want.describe()}; convert with the config of '
            'the same CLIP (e.g. pcm_coco_vit-l14.py for ViT-L/14 models)')
    for field in ('model_dim', 'ffn_dim', 'encoder_layers', 'decoder_layers'):
        if getattr(arch, field) != getattr(want, field):
            raise ReleaseConversionError(
                f'{checkpoint}: {field} is {getattr(arch, field)} in the '
                f'release model but {getattr(want, field)} in {config}; '
                'convert with a config of the same architecture')


# --------------------------------------------------------------------------
# vocabulary
# --------------------------------------------------------------------------
def release_to_mmpcm_vocabulary(release_words: Sequence[str]
                                ) -> Tuple[List[str], List[Optional[int]]]:
    """mmpcm's vocabulary for release ids, and each mmpcm id's release id.

    Args:
        release_words (Sequence[str]): Words by release id (``'.'`` first).

    Returns:
        tuple[list[str], list[int | None]]: mmpcm's words (special tokens
        first) and, per mmpcm id, the release id whose rows it takes
        (None: no release row).
    """
    from mmpcm.text.vocab import SPECIAL_TOKENS
    unk = (release_words.index(RELEASE_UNK)
           if RELEASE_UNK in release_words else None)
    words = list(SPECIAL_TOKENS)
    source: List[Optional[int]] = [None, 0, 0, unk]  # pad, bos, eos, unk
    for i, word in enumerate(release_words):
        if i == 0 or i == unk:
            continue
        words.append(word)
        source.append(i)
    return words, source


def _take_rows(table: torch.Tensor, source: Sequence[Optional[int]],
               fill: float = 0.0) -> torch.Tensor:
    """Rows of ``table`` in ``source`` order; ``fill`` where None."""
    out = table.new_full((len(source), ) + tuple(table.shape[1:]), fill)
    for i, j in enumerate(source):
        if j is not None:
            out[i] = table[j]
    return out


# --------------------------------------------------------------------------
# the key map
# --------------------------------------------------------------------------
def _pair(dst: str, src: str) -> Dict[str, str]:
    return {f'{dst}.weight': f'{src}.weight', f'{dst}.bias': f'{src}.bias'}


def _attention(out: Dict[str, torch.Tensor], used: set,
               state: Dict[str, torch.Tensor], dst: str, src: str) -> None:
    """BERT q/k/v + output dense -> ``nn.MultiheadAttention``."""
    for kind in ('weight', 'bias'):
        keys = [f'{src}.self.{n}.{kind}' for n in ('query', 'key', 'value')]
        out[f'{dst}.in_proj_{kind}'] = torch.cat([state[k] for k in keys])
        out[f'{dst}.out_proj.{kind}'] = state[f'{src}.output.dense.{kind}']
        used.update(keys + [f'{src}.output.dense.{kind}'])


def map_release_state(state: Dict[str, torch.Tensor],
                      arch: ReleaseArchitecture,
                      vocab_source: Sequence[Optional[int]],
                      backbone_prefix: str = 'backbone.'
                      ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Map a release state dict onto ``PCMCaptioner``'s keys.

    Args:
        state (dict): The release's tensors.
        arch (ReleaseArchitecture): Its sizes.
        vocab_source (Sequence[int | None]): Per mmpcm id, its release id.
        backbone_prefix (str): Where ``ln_post``/``proj`` go. Defaults to
            ``'backbone.'`` (:class:`CLIPJointProjection`).

    Returns:
        tuple[dict, list[str]]: mmpcm tensors, and the release keys that
        were not used (the caller reports them).

    Raises:
        ReleaseConversionError: For a release key the map expects but the
            state dict lacks.
    """
    out: Dict[str, torch.Tensor] = {}
    used: set = set()
    simple = {
        **_pair('neck.visual_proj', 'visual_embed.embeddings'),
        **_pair('neck.global_proj', 'visual_embed.g_embeddings'),
        **_pair('neck.textual_proj', 'visual_embed.t_embeddings'),
        **_pair('neck.norm', 'visual_embed.embeddings_norm'),
        'neck.type_embed.weight': 'visual_embed.embeddings_token_type.weight',
        **_pair(backbone_prefix + 'ln_post', 'visual_embed.ln_post'),
        backbone_prefix + 'proj': 'visual_embed.proj',
        **_pair('encoder.global_rebuild.0', 'encoder.gvfeat_embed.0'),
        **_pair('encoder.global_rebuild.1', 'encoder.gvfeat_embed.1'),
        **_pair('head.embed_norm', 'token_embed.embeddings_norm'),
    }
    for i in range(arch.encoder_layers):
        dst, src = f'encoder.layers.{i}', f'encoder.layers.{i}'
        simple.update({
            **_pair(f'{dst}.norm1', f'{src}.attention.output.LayerNorm'),
            **_pair(f'{dst}.linear1', f'{src}.intermediate.dense'),
            **_pair(f'{dst}.linear2', f'{src}.output.dense'),
            **_pair(f'{dst}.norm2', f'{src}.output.LayerNorm'),
        })
    for i in range(arch.decoder_layers):
        dst, src = f'head.decoder.layers.{i}', f'decoder.g_layers.{i}'
        simple.update({
            **_pair(f'{dst}.norm1', f'{src}.self_attn.output.LayerNorm'),
            **_pair(f'{dst}.norm2', f'{src}.x_att.output.LayerNorm'),
            **_pair(f'{dst}.linear1', f'{src}.intermediate.dense'),
            **_pair(f'{dst}.linear2', f'{src}.output.dense'),
            **_pair(f'{dst}.norm3', f'{src}.output.LayerNorm'),
        })
    try:
        for dst, src in simple.items():
            out[dst] = state[src]
            used.add(src)
        out['neck.pos_embed.weight'] = state['visual_embed.embeddings_pos'][0]
        used.add('visual_embed.embeddings_pos')
        for i in range(arch.encoder_layers):
            _attention(out, used, state, f'encoder.layers.{i}.self_attn',
                       f'encoder.layers.{i}.attention')
        for i in range(arch.decoder_layers):
            _attention(out, used, state,
                       f'head.decoder.layers.{i}.self_attn',
                       f'decoder.g_layers.{i}.self_attn')
            _attention(out, used, state,
                       f'head.decoder.layers.{i}.multihead_attn',
                       f'decoder.g_layers.{i}.x_att')
        out['head.word_embed.weight'] = _take_rows(
            state['token_embed.embeddings.weight'], vocab_source)
        out['head.output.weight'] = _take_rows(
            state['predictor.logits.weight'], vocab_source)
        bias = _take_rows(state['predictor.logits.bias'], vocab_source,
                          fill=_ABSENT_BIAS)
        bias[:2] = 0.0  # <pad>, <bos>: masked at every use
        out['head.output.bias'] = bias
        used.update({'token_embed.embeddings.weight',
                     'predictor.logits.weight', 'predictor.logits.bias'})
    except KeyError as missing:
        raise ReleaseConversionError(
            f'the release state dict has no {missing.args[0]!r}') from None
    # Buffers the release keeps that mmpcm computes: accepted when equal.
    used.add('token_embed.embeddings_pos.pe')
    used.add('visual_embed.tag_vocab_embed')
    return out, sorted(set(state) - used)


def _check_position_table(state: Dict[str, torch.Tensor],
                          table: torch.Tensor, path: str) -> None:
    pe = state.get('token_embed.embeddings_pos.pe')
    if pe is None:
        return
    n = min(pe.shape[1], table.shape[0])
    if not torch.allclose(pe[0, :n].float(), table[:n], atol=1e-5):
        raise ReleaseConversionError(
            f'{path}: its sinusoidal position table differs from mmpcm\'s '
            '(base 10000); not a PCM-Net release model')


# --------------------------------------------------------------------------
# the whole conversion
# --------------------------------------------------------------------------
@dataclass
class ConvertedModel:
    """A release model in mmpcm's terms.

    Attributes:
        model_cfg (dict): Buildable ``PCMCaptioner`` config (vocabulary
            included, no file to read).
        state_dict (dict[str, torch.Tensor]): Weights for it (strict).
        vocab (list[str]): mmpcm's word vocabulary.
        concept_words (list[str]): The concept words.
        source (dict): The release files' names.
    """
    model_cfg: dict
    state_dict: Dict[str, torch.Tensor]
    vocab: List[str]
    concept_words: List[str]
    source: dict


def convert_release_model(checkpoint: str, vocabulary: str, concepts: str,
                          config: str,
                          clip_weights: Optional[str] = None
                          ) -> ConvertedModel:
    """Convert a release model to a strict-loading ``PCMCaptioner``.

    Args:
        checkpoint (str): The release ``.pth`` (X-modaler state dict).
        vocabulary (str): Its ``vocabulary.txt``.
        concepts (str): Its concept pickle (``(words, (C, D) tensor)``).
        config (str): The mmpcm config of the same setting (e.g.
            ``configs/pcm/pcm_coco.py`` for COCO ViT-B/32); its ``model``
            gives the architecture.
        clip_weights (str, optional): open_clip weights of the CLIP the
            release used; with them the converted model carries the full
            image tower (to caption images), else only ``ln_post`` and
            ``proj`` (features only). Defaults to None.

    Returns:
        ConvertedModel: Config and weights, already loaded strictly once.

    Raises:
        ReleaseConversionError: Naming the file and the mismatch.
    """
    from mmpcm.apis.release import build_model
    from mmpcm.models.utils.concepts import ConceptVocabulary
    from mmpcm.preprocessing.concepts import load_release_concepts

    state = load_release_state(checkpoint)
    arch = ReleaseArchitecture.of(state)
    model_cfg = copy.deepcopy(Config.fromfile(config).model.to_dict())
    check_release_matches_config(arch, model_cfg, checkpoint, config)
    release_words = read_release_vocabulary(vocabulary)
    if len(release_words) != arch.vocab_size:
        raise ReleaseConversionError(
            f'{vocabulary}: {len(release_words) - 1} words + {RELEASE_EOS!r} '
            f'= {len(release_words)} ids, but {checkpoint} predicts '
            f'{arch.vocab_size} ids; pass the vocabulary.txt released with '
            'this model')
    try:
        concept_words, table = load_release_concepts(concepts)
    except (OSError, ValueError) as error:
        raise ReleaseConversionError(f'{error}') from None
    if table.shape[1] != arch.embed_dim:
        raise ReleaseConversionError(
            f'{concepts}: concepts of width {table.shape[1]}, but the model '
            f'in {checkpoint} embeds {arch.embed_dim}-d concepts '
            f'({arch.describe()}); pass the concept file of the same CLIP')
    words, vocab_source = release_to_mmpcm_vocabulary(release_words)

    clip_name = model_cfg['neck'].get('clip_model')
    if clip_weights is None:
        model_cfg['backbone'] = dict(
            type='CLIPJointProjection', patch_dim=arch.patch_dim,
            embed_dim=arch.embed_dim, num_patches=arch.num_patches,
            patch_pool=model_cfg['backbone'].get('patch_pool', 1),
            model_name=model_cfg['backbone'].get('model_name'))
        prefix = 'backbone.'
    else:
        model_cfg['backbone']['pretrained'] = clip_weights
        prefix = 'backbone.visual.'
    model_cfg['neck']['concepts'] = ConceptVocabulary(
        concept_words, table, clip_name)
    model_cfg['head']['vocab'] = words
    mapped, unused = map_release_state(state, arch, vocab_source, prefix)
    if unused:
        raise ReleaseConversionError(
            f'{checkpoint}: {len(unused)} release keys have no place in '
            f'mmpcm\'s model: {", ".join(unused[:8])}'
            f'{" ..." if len(unused) > 8 else ""}')
    model = build_model(model_cfg)
    _check_position_table(state, model.head.pos_table, checkpoint)
    full = model.state_dict()
    if clip_weights is not None:
        _check_clip_weights(model, mapped, prefix, clip_weights, checkpoint)
        mapped.update({k: v for k, v in full.items()
                       if k.startswith(prefix) and k not in mapped})
    mapped['neck.concept_embeds'] = full['neck.concept_embeds']
    mapped['head.vocab_bytes'] = full['head.vocab_bytes']
    missing = sorted(set(full) - set(mapped))
    if missing:
        raise ReleaseConversionError(
            f'{checkpoint}: no release weights for mmpcm\'s '
            f'{", ".join(missing[:8])}')
    model.load_state_dict(mapped, strict=True)
    model_cfg['neck']['concepts'] = None
    if clip_weights is not None:
        model_cfg['backbone']['pretrained'] = None
    return ConvertedModel(
        model_cfg=model_cfg,
        state_dict={k: v.contiguous() for k, v in model.state_dict().items()},
        vocab=words, concept_words=list(concept_words),
        source=dict(checkpoint=osp.basename(checkpoint),
                    vocabulary=osp.basename(vocabulary),
                    concepts=osp.basename(concepts),
                    config=osp.basename(config)))


def _check_clip_weights(model: torch.nn.Module,
                        mapped: Dict[str, torch.Tensor], prefix: str,
                        clip_weights: str, checkpoint: str) -> None:
    """The release's ln_post/proj must be those of the given CLIP."""
    full = model.state_dict()
    for key in (prefix + 'ln_post.weight', prefix + 'ln_post.bias',
                prefix + 'proj'):
        if not torch.allclose(full[key].float(), mapped[key].float(),
                              atol=1e-5):
            raise ReleaseConversionError(
                f'{clip_weights}: its {key[len(prefix):]} differs from the '
                f'one in {checkpoint}; pass the CLIP weights the release '
                'was trained with')


def converted_paths(out_prefix: str) -> Tuple[str, str]:
    """``(OUT.pth, OUT.safetensors)`` for an output path without suffix.

    A prefix ending in ``.pth`` or ``.safetensors`` loses that suffix.

    Args:
        out_prefix (str): Output path without suffix (``work/pcm_coco``).

    Returns:
        tuple[str, str]: The checkpoint and the release file.

    Raises:
        InputError: If ``out_prefix`` is an existing folder or ends with a
            path separator (it would be read as a file name prefix).
    """
    from mmpcm.utils.cli import InputError
    if osp.isdir(out_prefix) or out_prefix.endswith(('/', os.sep)):
        raise InputError(
            out_prefix, 'is a folder, but --out is a path without suffix '
            '(OUT.pth and OUT.safetensors are written)',
            f'give a file name in it, e.g. {osp.join(out_prefix, "pcm_coco")}')
    stem, suffix = osp.splitext(out_prefix)
    if suffix in ('.pth', '.safetensors'):
        out_prefix = stem
    return out_prefix + '.pth', out_prefix + '.safetensors'


def save_converted(converted: ConvertedModel, out_prefix: str
                   ) -> Tuple[str, str]:
    """Write ``OUT.pth`` (mmengine checkpoint) and ``OUT.safetensors``.

    Args:
        converted (ConvertedModel): The conversion.
        out_prefix (str): Output path without suffix (see
            :func:`converted_paths`).

    Returns:
        tuple[str, str]: The two files.
    """
    ckpt_path, release_path = converted_paths(out_prefix)
    from mmpcm.apis.release import (ReleaseInfo, save_release,
                                    strip_model_files)
    from mmpcm.utils.fileio import atomic_write
    stored = strip_model_files(converted.model_cfg)
    stored['head']['vocab'] = None
    backbone = stored['backbone']
    info = ReleaseInfo(
        model=json.loads(json.dumps(stored)), vocab=list(converted.vocab),
        clip=dict(model_name=backbone.get('model_name'),
                  model_cfg=backbone.get('model_cfg'), pretrained=None,
                  pretrained_sha256=None,
                  patch_pool=backbone.get('patch_pool', 1), image_size=None,
                  **_clip_dims_of(converted.model_cfg)),
        concepts=list(converted.concept_words))
    os.makedirs(osp.dirname(osp.abspath(release_path)), exist_ok=True)
    save_release(release_path, converted.state_dict, info)
    cfg_text = Config(dict(model=converted.model_cfg)).pretty_text
    ckpt = dict(meta=dict(cfg=cfg_text, converted_from=converted.source),
                state_dict=converted.state_dict)
    atomic_write(ckpt_path, lambda file: torch.save(ckpt, file))
    return ckpt_path, release_path


__all__ = [
    'ConvertedModel', 'ReleaseArchitecture', 'ReleaseConversionError',
    'check_release_matches_config', 'convert_release_model',
    'converted_paths',
    'load_release_state', 'map_release_state', 'read_release_vocabulary',
    'release_to_mmpcm_vocabulary', 'save_converted'
]
