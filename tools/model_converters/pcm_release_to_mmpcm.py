"""Convert an authors' released PCM-Net model (X-modaler) to mmpcm.

    python tools/model_converters/pcm_release_to_mmpcm.py CONFIG RELEASE.pth \
        VOCABULARY.txt CONCEPTS.pickle --out OUT [--clip-weights CLIP.pt]

CONFIG is mmpcm's config of the same setting (``configs/pcm/pcm_coco.py``
for COCO ViT-B/32, ``pcm_coco_vit-l14.py`` for ViT-L/14, ...). Writes
``OUT.pth`` (an mmengine checkpoint for ``tools/test.py CONFIG OUT.pth``)
and ``OUT.safetensors`` (a release for ``tools/test.py``, ``tools/caption.py``
and ``PCMCaptionInferencer``; no pickle). The release file is read with
``torch.load(weights_only=True)``, the concept pickle with an unpickler that
rebuilds tensors only. Without ``--clip-weights`` the converted model keeps
only CLIP's ``ln_post`` and ``proj`` and tests from pre-extracted features;
with them it carries the CLIP image tower and captions images too.
"""
import argparse
import sys
from typing import List, Optional

from mmpcm.setup_env import register_all_modules
from mmpcm.utils.cli import InputError, add_debug_flag, error_line, run_tool


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert a released PCM-Net model (X-modaler) to mmpcm')
    parser.add_argument('config', help='mmpcm config of the same setting')
    parser.add_argument('checkpoint', help='released model (.pth)')
    parser.add_argument('vocabulary', help='its vocabulary.txt')
    parser.add_argument('concepts', help='its concept pickle')
    parser.add_argument('--out', required=True,
                        help='output path without suffix: writes OUT.pth '
                        'and OUT.safetensors')
    parser.add_argument('--clip-weights',
                        help='open_clip weights of the release\'s CLIP, to '
                        'caption images (default: features only)')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def convert(args: argparse.Namespace) -> int:
    # Fixes and registries before mmpcm.apis loads; it builds the model in
    # mmpretrain's scope.
    register_all_modules(init_default_scope=False)

    from mmpcm.apis.release_conversion import (convert_release_model,
                                               converted_paths, save_converted)

    converted_paths(args.out)  # a bad --out fails before the conversion
    try:
        converted = convert_release_model(
            args.checkpoint, args.vocabulary, args.concepts, args.config,
            clip_weights=args.clip_weights)
    except Exception as error:  # noqa: BLE001  corrupt or foreign files
        if error_line(error)[1]:  # already names the file at fault
            raise
        raise InputError(
            f'{args.checkpoint}, {args.vocabulary}, {args.concepts}',
            f'not readable as a PCM-Net release ({type(error).__name__}: '
            f'{error})', 'pass the files released with the model (--debug '
            'for the traceback)') from error
    ckpt, release = save_converted(converted, args.out)
    print(f'Wrote {ckpt} and {release}: {len(converted.vocab)} words, '
          f'{len(converted.concept_words)} concepts, CLIP '
          f'{converted.model_cfg["backbone"]["type"]}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Convert; an error is one line on stderr (traceback with --debug)."""
    return run_tool(convert, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
