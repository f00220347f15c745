"""Write the objects of each test image, the ground truth of PCMCHAIRMetric.

From a COCO instances file (instances_val2014.json, ...): the category
names of each image's annotations, under the image's file name stem (as
prepare_corpus.py's default ids) or, with --id-scheme cocoid, COCO's id.
With --from-references, from the
objects that the reference captions of each image mention (for a test set
without instance annotations, such as the toy world's test_gt.json; give
its synonym table with --synonyms). The output is
{"objects": {image_id: [name, ...]}}, the metric's objects_file.

Example:
    python tools/data/coco_objects.py \\
        data/coco/annotations/instances_val2014.json \\
        data/coco/annotations/coco_val2014_objects.json
"""
import argparse
import sys
from typing import List, Optional

from mmpcm.utils.cli import add_debug_flag, check_output_file, run_tool


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        'instances_json',
        help='COCO instances_<split>.json (with --from-references: COCO '
        'caption references, e.g. karpathy_test_gt.json)')
    parser.add_argument('out_json', help='the objects file to write')
    parser.add_argument(
        '--id-scheme', default='stem', choices=('stem', 'cocoid'),
        help='image ids to write, as the caption references have them: '
        'the file name stem (default, as prepare_corpus.py writes them) or '
        "COCO's image id")
    parser.add_argument(
        '--from-references', action='store_true',
        help='take the objects the reference captions mention instead of '
        'instance annotations')
    parser.add_argument(
        '--synonyms',
        help='synonym table JSON for --from-references (default: the '
        'shipped COCO table)')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def write(args: argparse.Namespace) -> int:
    from mmpcm.evaluation.metrics.object_truth import (
        coco_objects_from_instances, objects_from_references,
        write_objects_file)
    from mmpcm.evaluation.metrics.object_vocabulary import ObjectVocabulary
    check_output_file(args.out_json)
    if args.from_references:
        vocabulary = (ObjectVocabulary.from_file(args.synonyms)
                      if args.synonyms else ObjectVocabulary.coco())
        objects = objects_from_references(args.instances_json, vocabulary)
        write_objects_file(objects, args.out_json)
    else:
        if args.synonyms:
            print('warning: --synonyms is used with --from-references only',
                  file=sys.stderr)
        objects = coco_objects_from_instances(args.instances_json,
                                              args.out_json, args.id_scheme)
    empty = sum(1 for names in objects.values() if not names)
    print(f'{len(objects)} images ({empty} without objects), '
          f'{sum(map(len, objects.values()))} image-object pairs -> '
          f'{args.out_json}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Write; an error is one line on stderr (traceback with --debug)."""
    return run_tool(write, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
