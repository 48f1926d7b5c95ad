"""Encode a training config's media once: `python scripts/precompute.py --config X.yaml --out cache/ [--overwrite]`.

Then train from it with `data: {cache: cache/}` (same model, VAE and text encoder).
"""

import argparse
import logging

from vidgen.train.config import TrainConfig
from vidgen.train.data import precompute_from_config

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    print(precompute_from_config(TrainConfig.load(args.config), args.out, overwrite=args.overwrite))
