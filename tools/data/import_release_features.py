"""Import the authors' released SynthImgCap features into a feature store.

The release has one .npz per synthetic image (keys 'features': patch tokens
(N, Dv); 'g_feature': global embedding (D,) or (1, D)) in folders named
<feats>_sp<k>; each file name stem is the image's caption id. Files are
imported in a fixed order (k, then file name) with the caption of their id,
an optional CLIP score, and g_feature L2-normalised. Rerunning the command
resumes an interrupted import.

CLIP scores: the release's `clipscore` is 2.5 x cosine; the store holds the
raw cosine, so every score is divided by --clip-score-scale (2.5). A score
beyond +-2.5 is refused (it cannot be 2.5 x a cosine), and a file that looks
like raw cosines already (median |score| / 2.5 below 0.15) gets a warning:
pass --clip-score-scale 1 for such a file.

Example:
    python tools/data/import_release_features.py release/coco \\
        data/coco/synth_features_vit-b32 --clip-model ViT-B-32 \\
        --captions data/coco/dataset_coco.json
"""
import argparse
import sys
from typing import List, Optional

from mmpcm.preprocessing.release_import import (LOW_COSINE,
                                                RELEASE_CLIP_SCORE_SCALE,
                                                clip_feature_info,
                                                import_release_features,
                                                load_caption_map,
                                                load_clip_scores)
from mmpcm.utils.cli import add_debug_flag, run_tool


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('release_root',
                        help='folder holding the <feats>_sp<k> folders')
    parser.add_argument('out', help='feature store folder to write')
    parser.add_argument(
        '--captions', required=True,
        help='id -> caption: COCO-format JSON (annotation --id-key), '
        'Karpathy JSON (sentid), JSON {id: caption} or list, or a text '
        'corpus (id = 0-based caption index)')
    parser.add_argument('--id-key', default='id',
                        help='id field of COCO annotations / JSON object '
                        'lists (default: id)')
    parser.add_argument('--clip-scores',
                        help='JSON {id: CLIP score}, the release\'s '
                        'clipscore values; default: null scores')
    parser.add_argument(
        '--clip-score-scale', type=float, default=RELEASE_CLIP_SCORE_SCALE,
        help='the scores are this times the cosine and are divided by it '
        f'(default: {RELEASE_CLIP_SCORE_SCALE}, the release\'s clipscore; 1 '
        'for raw cosines). Scores beyond +-scale are refused; a median '
        f'|score| / scale below {LOW_COSINE} is warned about')
    parser.add_argument('--clip-model', required=True,
                        help='open_clip model name of the features '
                        '(ViT-B-32, ViT-L-14); sets the expected sizes')
    parser.add_argument('--pretrained', default='openai',
                        help='weights tag recorded in the store '
                        '(default: openai)')
    parser.add_argument('--patch-pool', type=int,
                        help='patch-grid pooling of the features (default: '
                        '1 for ViT-B-32, 2 for ViT-L-14)')
    parser.add_argument('--num-patches', type=int)
    parser.add_argument('--patch-dim', type=int)
    parser.add_argument('--embed-dim', type=int)
    parser.add_argument('--pool', type=int, default=1,
                        help='average-pool the patch grid by this factor on '
                        'import, for files holding the unpooled grid '
                        '(default: 1)')
    parser.add_argument('--prefix', help='<feats> of the folders, if the '
                        'release root holds several kinds')
    parser.add_argument('--int-ids', action='store_true',
                        help='store ids as int (default: the file stem '
                        'as a str)')
    parser.add_argument('--shard-size', type=int, default=4096)
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument('--no-progress', action='store_true')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def import_features(args: argparse.Namespace) -> int:
    info = clip_feature_info(args.clip_model, args.pretrained,
                             args.patch_pool, args.num_patches,
                             args.patch_dim, args.embed_dim)
    captions = load_caption_map(args.captions, args.id_key)
    scores = (load_clip_scores(args.clip_scores, args.clip_score_scale)
              if args.clip_scores else None)
    result = import_release_features(
        args.release_root, args.out, captions, info, clip_scores=scores,
        prefix=args.prefix, int_ids=args.int_ids, pool=args.pool,
        shard_size=args.shard_size, batch_size=args.batch_size,
        progress=not args.no_progress)
    print(f'{result.num_files} released files: {result.num_resumed} already '
          f'stored, {result.num_written} imported -> {result.store}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Import; an error is one line on stderr (traceback with --debug)."""
    return run_tool(import_features, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
