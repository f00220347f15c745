"""Write the tiny built-in data set of configs/pcm/pcm_smoke.py."""
import argparse

from mmpcm.testing import write_smoke_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', default='data/smoke', help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    write_smoke_data(args.out, args.seed)
    print(f'smoke data written to {args.out}')


if __name__ == '__main__':
    main()
