"""Train the DiT or the VAE: `python scripts/train.py --config configs/train/shapes_dit.yaml [--resume]`."""

import sys

from vidgen.train.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
