"""Prepare a caption corpus: training captions, references, image lists.

From Karpathy's dataset_coco.json / dataset_flickr30k.json write, into
OUT_DIR: train_captions.txt (train + restval captions, one per line),
karpathy_{val,test}_gt.json (COCO-format references, the configs'
ann_file), karpathy_{val,test}_images.txt (image paths for
tools/data/extract_features.py), karpathy_{val,test}_images.jsonl (the same
with typed ids) and vocab.json (the word vocabulary). A text file with one
caption per line gives train_captions.txt and vocab.json only.

Example:
    python tools/data/prepare_corpus.py data/coco/dataset_coco.json \\
        data/coco/annotations --image-root data/coco/images
"""
import argparse
import sys
from typing import List, Optional

from mmpcm.preprocessing.corpus import (EVAL_SPLITS, ImageIdScheme,
                                        prepare_corpus)
from mmpcm.utils.cli import add_debug_flag, run_tool


# Share of word tokens becoming <unk> above which the tool says so.
UNK_SHARE_NOTE = 0.05

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('corpus', help='Karpathy split JSON or text corpus')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument(
        '--id-scheme',
        default=ImageIdScheme.STEM.value,
        choices=[s.value for s in ImageIdScheme],
        help='image ids of the references (default: the file name stem as '
        'a str, which is what extract_features.py gives a path list)')
    parser.add_argument(
        '--image-root',
        help='folder the Karpathy image paths are relative to; the .txt '
        'image lists are written relative to OUT_DIR from it (default: '
        'OUT_DIR itself)')
    parser.add_argument('--min-count', type=int, default=5,
                        help='vocabulary count threshold (default: 5)')
    parser.add_argument('--splits', nargs='+', default=list(EVAL_SPLITS),
                        help='eval splits to write (default: val test)')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> int:
    result = prepare_corpus(args.corpus, args.out_dir, args.id_scheme,
                            image_root=args.image_root,
                            min_count=args.min_count, eval_splits=args.splits)
    print(f'{result.num_train_captions} training captions -> '
          f'{result.train_captions}')
    print(f'vocabulary of {result.vocab_size - 4} words + 4 special tokens '
          f'(min count {args.min_count}) -> {result.vocab}')
    if result.vocab_report is not None:
        print(result.vocab_report)
        if result.vocab_report.unk_share > UNK_SHARE_NOTE:
            print(f'note: {100 * result.vocab_report.unk_share:.0f}% of the '
                  f'word tokens become <unk> at --min-count '
                  f'{args.min_count}; a small corpus may want a lower one',
                  file=sys.stderr)
    if result.skipped:
        invalid = [s for s in result.skipped if s.reason != 'empty']
        print(f'skipped {len(result.skipped) - len(invalid)} empty and '
              f'{len(invalid)} non-UTF-8 line(s)', file=sys.stderr)
        for line in invalid[:10]:
            print(f'  {line}', file=sys.stderr)
    if result.num_empty_sentences:
        print(f'dropped {result.num_empty_sentences} empty sentence(s)',
              file=sys.stderr)
    for split, files in result.splits.items():
        print(f'{split}: {files.num_images} images, {files.num_captions} '
              f'references -> {files.ground_truth}, {files.path_list}, '
              f'{files.typed_list}')
    if result.splits and result.id_scheme != ImageIdScheme.STEM.value:
        print(f'note: image ids follow {result.id_scheme!r}; the features '
              'of these images must carry the same ids (extract_features.py '
              'names the images of a .txt list by their file stem)',
              file=sys.stderr)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Prepare; an error is one line on stderr (traceback with --debug)."""
    return run_tool(prepare, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
