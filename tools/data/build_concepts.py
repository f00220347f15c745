"""Build the concept vocabulary of PCM-Net, or convert the released one.

from-corpus: the N most frequent nouns of a caption corpus (Karpathy JSON:
train + restval; or a text file, one caption per line), found with the
shipped noun list (mmpcm/preprocessing/resources/nouns.txt; plural forms
counted with the singular), embedded with the CLIP text encoder by prompt
ensembling, saved as an mmpcm concept file (safetensors).

from-release: read the authors' concept pickle (word list, fp16 tensor)
without unsafe unpickling and save it in mmpcm's format. The pickle does not
say which CLIP made it: give --clip-model.

Examples:
    python tools/data/build_concepts.py from-corpus \\
        data/coco/annotations/train_captions.txt \\
        data/concepts/coco_concepts_vit-b32.safetensors \\
        --clip-model ViT-B-32 --pretrained checkpoints/ViT-B-32-openai.pt
    python tools/data/build_concepts.py from-release coco_concepts.pkl \\
        data/concepts/coco_concepts_vit-b32.safetensors --clip-model ViT-B-32
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import List, Optional

from mmpcm.preprocessing.concepts import (DEFAULT_NUM_CONCEPTS,
                                          DEFAULT_TEMPLATES, NounList,
                                          build_concept_vocabulary,
                                          convert_release_concepts,
                                          load_clip_text_encoder,
                                          read_templates)
from mmpcm.preprocessing.corpus import load_corpus
from mmpcm.utils.cli import add_debug_flag, run_tool


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)

    corpus = sub.add_parser('from-corpus', help='frequent nouns of a corpus')
    corpus.add_argument('corpus', help='Karpathy JSON or text corpus')
    corpus.add_argument('out', help='output .safetensors concept file')
    corpus.add_argument(
        '--clip-model', required=True,
        help='open_clip model name, stored in the file and checked by the '
        'PCM neck (e.g. ViT-B-32; any name with --model-cfg)')
    corpus.add_argument('--pretrained',
                        help='open_clip pretrained tag or local weight file; '
                        'required unless --random-weights')
    corpus.add_argument('--random-weights', action='store_true',
                        help='a randomly initialised CLIP (tests only: its '
                        'concept embeddings mean nothing)')
    corpus.add_argument('--model-cfg',
                        help='JSON file with a custom open_clip model config '
                        '(embed_dim, vision_cfg, text_cfg) instead of the '
                        'named one')
    corpus.add_argument('--num-concepts', type=int,
                        default=DEFAULT_NUM_CONCEPTS,
                        help=f'default: {DEFAULT_NUM_CONCEPTS}')
    corpus.add_argument('--min-count', type=int, default=1,
                        help='minimum corpus count of a concept (default: 1)')
    corpus.add_argument('--nouns', help='noun list file (default: the '
                        'shipped mmpcm/preprocessing/resources/nouns.txt)')
    corpus.add_argument('--templates', help='prompt template file, one '
                        'template with "{}" per line (default: '
                        f'{len(DEFAULT_TEMPLATES)} built-in templates)')
    corpus.add_argument('--batch-size', type=int, default=256,
                        help='prompts per forward pass (default: 256)')
    corpus.add_argument('--device', default='cpu')
    corpus.add_argument('--counts-out',
                        help='also write the chosen nouns and counts (JSON)')

    release = sub.add_parser('from-release',
                             help="convert the authors' concept pickle")
    release.add_argument('pickle', help='the released (words, tensor) file')
    release.add_argument('out', help='output .safetensors concept file')
    release.add_argument('--clip-model', required=True,
                         help='open_clip model name that made the embeddings')
    release.add_argument('--embed-dim', type=int,
                         help='expected width (default: from open_clip\'s '
                         'config of --clip-model when known)')
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if (args.command == 'from-corpus'
            and (args.pretrained is None) != args.random_weights):
        parser.error('give exactly one of --pretrained (an open_clip tag or '
                     'a weight file) and --random-weights')
    return args


def _make_parent(path: str) -> None:
    parent = osp.dirname(osp.abspath(path))
    os.makedirs(parent, exist_ok=True)


def from_corpus(args: argparse.Namespace) -> None:
    corpus = load_corpus(args.corpus)
    if corpus.skipped:
        print(corpus.report(), file=sys.stderr)
    model_cfg = None
    if args.model_cfg:
        with open(args.model_cfg, encoding='utf-8') as f:
            model_cfg = json.load(f)
    encoder = load_clip_text_encoder(
        None if model_cfg else args.clip_model, args.pretrained, model_cfg,
        args.device)
    templates = (read_templates(args.templates)
                 if args.templates else DEFAULT_TEMPLATES)
    vocab, counts = build_concept_vocabulary(
        corpus.captions, encoder, args.clip_model, args.num_concepts,
        NounList.load(args.nouns), templates, args.batch_size,
        args.min_count)
    _make_parent(args.out)
    vocab.save(args.out)
    print(f'{len(vocab.words)} concepts from {len(corpus.captions)} '
          f'captions, {tuple(vocab.embeddings.shape)} embeddings '
          f'({len(templates)} templates) -> {args.out}')
    print('most frequent: ' + ', '.join(f'{c.word} ({c.count})'
                                        for c in counts[:20]))
    if args.counts_out:
        with open(args.counts_out, 'w', encoding='utf-8') as f:
            json.dump([list(c) for c in counts], f, indent=1)


def from_release(args: argparse.Namespace) -> None:
    vocab = convert_release_concepts(args.pickle, args.clip_model,
                                     args.embed_dim)
    _make_parent(args.out)
    vocab.save(args.out)
    print(f'{len(vocab.words)} released concepts, '
          f'{tuple(vocab.embeddings.shape)} embeddings for '
          f'{args.clip_model} -> {args.out}')


def build(args: argparse.Namespace) -> int:
    if args.command == 'from-corpus':
        from_corpus(args)
    else:
        from_release(args)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Build; an error is one line on stderr (traceback with --debug)."""
    return run_tool(build, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
