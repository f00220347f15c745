"""Refine a feature store's caption-image pairs with SynC.

SynC (Kim et al., ACM MM 2025, arXiv 2507.18616) gives each caption the
synthetic image of the store that suits it best: its --num-candidates
nearest images by CLIP text-to-image cosine, each scored by the best
sentence-embedding cosine between the caption and the --i2t-k captions the
image retrieves over the whole pool; the best --keep-fraction of pairs by
that score are kept and their CLIP scores recomputed. Needs a store with
CLIP text embeddings (extracted with captions).

Both searches use the store's own CLIP embeddings, or, with
--retrieval-store STORE2, those of a second store of the same images and
captions (same image_id and caption row by row; checked) extracted with
another open_clip model (SynC itself retrieves with another model than the
captioner's CLIP), or, with --retrieval-model NAME [--retrieval-pretrained
FILE_OR_TAG] --image-root GEN_DIR, an open_clip model's embeddings of the
store's images (record "image", relative to GEN_DIR) and captions, computed
once and cached in OUT/parts/ (SynC's default: ViT-B-16-SigLIP2-256); the
recomputed CLIP scores (the CXE weights) stay the store's own.
pairing.json's settings.retrieval records which was used.

Writes OUT/pairing.npz and OUT/pairing.json (the pairing; pairing.json last)
and OUT/parts/ (one file per chunk of queries): a rerun of the same command
after an interruption resumes from the finished chunks.

Examples:
    python tools/data/refine_pairs.py data/synthimgcap_coco_vitb32
    python tools/data/refine_pairs.py data/synthimgcap_coco_vitb32 \\
        --out data/coco_sync --sentence-model \\
        sentence-transformers/all-MiniLM-L6-v2
    python tools/data/refine_pairs.py data/synthimgcap_coco_vitb32 \\
        --retrieval-store data/synthimgcap_coco_vitl14  # same pairs, L/14
    python tools/data/refine_pairs.py data/synthimgcap_coco_vitb32 \
        --retrieval-model ViT-B-16-SigLIP2-256 \
        --retrieval-pretrained checkpoints/siglip2_b16_256.bin \
        --image-root data/coco/synthetic  # SynC's SigLIP2
"""
import argparse
import os
import sys
from typing import List, Optional

from mmpcm.utils.cli import InputError, add_debug_flag, run_tool


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('store', help='feature store folder (with text '
                        'embeddings)')
    parser.add_argument('--out', help='output folder (default: '
                        '<STORE>_sync)')
    parser.add_argument('--num-candidates', type=int, default=15,
                        help='K: candidate images per caption (default: 15)')
    parser.add_argument('--i2t-k', type=int, default=2,
                        help='captions each candidate image retrieves '
                        '(default: 2)')
    parser.add_argument('--keep-fraction', type=float, default=0.9,
                        help='share of pairs kept, rounded half up '
                        '(default: 0.9)')
    parser.add_argument('--retrieval-store', metavar='STORE2',
                        help='feature store of the same images and captions '
                        '(same image_id and caption, row by row) extracted '
                        'with another open_clip model: both searches use its '
                        'global and text embeddings; the CLIP scores stay '
                        'STORE\'s own (default: STORE\'s embeddings)')
    parser.add_argument('--retrieval-model', metavar='NAME',
                        help='open_clip model (e.g. ViT-B-16-SigLIP2-256, or '
                        'local-dir:FOLDER) whose image and caption '
                        'embeddings of STORE\'s pairs drive both searches; '
                        'needs --image-root; not with --retrieval-store')
    parser.add_argument('--retrieval-pretrained', metavar='FILE_OR_TAG',
                        help='--retrieval-model\'s open_clip pretrained tag '
                        'or weight file (default: random weights, or the '
                        'local-dir folder\'s)')
    parser.add_argument('--image-root', metavar='GEN_DIR',
                        help='the generation folder the store\'s image '
                        'paths (record "image") are relative to, for '
                        '--retrieval-model')
    parser.add_argument('--sentence-model', metavar='NAME_OR_PATH',
                        help='sentence-transformers model for the cycle '
                        'score (e.g. sentence-transformers/all-MiniLM-L6-v2 '
                        'or a local folder; default: the store\'s CLIP text '
                        'embeddings, offline)')
    parser.add_argument('--chunk-size', type=int, default=4096,
                        help='queries per search call and per part file '
                        '(default: 4096); a rerun with another size '
                        'computes every chunk anew')
    parser.add_argument('--batch-size', type=int, default=256,
                        help='captions per sentence-model batch, and '
                        'images or captions per retrieval-model batch '
                        '(default: 256)')
    parser.add_argument('--device', default=None,
                        help='cpu keeps everything on the CPU (default: a '
                        'GPU where faiss and the sentence and retrieval '
                        'models find one)')
    parser.add_argument('--no-progress', action='store_true')
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.retrieval_model and args.retrieval_store:
        parser.error('--retrieval-model and --retrieval-store exclude each '
                     'other: give one retrieval source')
    for option in ('retrieval_pretrained', 'image_root'):
        if getattr(args, option) and not args.retrieval_model:
            parser.error(f'--{option.replace("_", "-")} goes with '
                         '--retrieval-model')
    if args.retrieval_model and not args.image_root:
        parser.error('--retrieval-model needs --image-root (the generation '
                     'folder of the store\'s images)')
    return args


def refine(args: argparse.Namespace) -> int:
    from mmpcm.preprocessing.refine import SyncConfig, refine_store
    try:
        cfg = SyncConfig(num_candidates=args.num_candidates,
                         i2t_k=args.i2t_k, keep_fraction=args.keep_fraction,
                         chunk_size=args.chunk_size)
    except ValueError as err:
        option = '--' + str(err).split(' ', 1)[0].replace('_', '-')
        raise InputError(option, str(err), 'see --help') from None
    out = args.out or args.store.rstrip('/' + os.sep) + '_sync'
    summary = refine_store(args.store, out, cfg,
                           sentence_model=args.sentence_model,
                           batch_size=args.batch_size, device=args.device,
                           progress=not args.no_progress,
                           retrieval_store=args.retrieval_store,
                           retrieval_model=args.retrieval_model,
                           retrieval_pretrained=args.retrieval_pretrained,
                           image_root=args.image_root)
    share = summary.repaired / max(summary.kept, 1)
    print(f'SynC: {summary.pairs_in} pairs in, {summary.kept} kept, '
          f'{summary.dropped} dropped, {summary.repaired} re-paired '
          f'({share:.1%} of kept), {summary.seconds:.1f} s'
          + (f', {summary.chunks_reused} chunks resumed'
             if summary.chunks_reused else '')
          + f' -> {os.path.join(summary.out_dir, "pairing.json")}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Refine; an error is one line on stderr (traceback with --debug)."""
    return run_tool(refine, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
