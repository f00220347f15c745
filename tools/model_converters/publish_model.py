"""Turn a training checkpoint into a release file that loads without pickle.

    python tools/model_converters/publish_model.py CHECKPOINT OUT.safetensors
        [--config TRAIN_CONFIG]

The release is one safetensors file: the captioner's weights (CLIP image
encoder included) and, as JSON metadata, the model config, the word
vocabulary, the concept words when known and the CLIP identity. Without
``--config`` the config text stored in the checkpoint is used (parsed as
literals, never executed). tools/test.py and tools/caption.py take the
release in place of the checkpoint.
"""
import argparse
import sys
from typing import List, Optional

from mmpcm.setup_env import register_all_modules
from mmpcm.utils.cli import (InputError, add_debug_flag, check_output_file,
                             run_tool)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Make a pickle-free PCM-Net release from a checkpoint')
    parser.add_argument('checkpoint', help='training checkpoint (.pth)')
    parser.add_argument('out', help='release file to write (.safetensors)')
    parser.add_argument('--config', help='training config (default: the '
                        'config stored in the checkpoint)')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def publish(args: argparse.Namespace) -> int:
    # Fixes and registries before mmpcm.apis loads; it builds the model in
    # mmpretrain's scope.
    register_all_modules(init_default_scope=False)

    from mmpcm.apis.release import publish_release

    if not args.out.endswith('.safetensors'):
        raise InputError(args.out, 'a release file name must end with '
                         '.safetensors', 'name it OUT.safetensors')
    check_output_file(args.out)
    info = publish_release(args.checkpoint, args.out, args.config)
    concepts = len(info.concepts) if info.concepts is not None else 'unknown'
    print(f'Wrote {args.out}: {len(info.vocab)} words, concept words: '
          f'{concepts}, CLIP {info.clip["model_name"] or "custom"} '
          f'({info.clip["pretrained"]})')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Publish; an error is one line on stderr (traceback with --debug)."""
    return run_tool(publish, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
