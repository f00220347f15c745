"""Write the tiny built-in data set of configs/pcm/pcm_smoke.py."""
import argparse
import sys
from typing import List, Optional

from mmpcm.utils.cli import add_debug_flag, run_tool


def write(args: argparse.Namespace) -> int:
    from mmpcm.testing import write_smoke_data
    write_smoke_data(args.out, args.seed)
    print(f'smoke data written to {args.out}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', default='data/smoke', help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    add_debug_flag(parser)
    return run_tool(write, parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
