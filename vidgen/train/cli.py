"""`vidgen train --config FILE [--resume]`: registered by vidgen.cli through `add_parser` and `run`."""

from __future__ import annotations

import argparse
import logging
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train the DiT or the VAE from a YAML config",
        description="Train per a configs/train/*.yaml file (see docs/training.md). For several GPUs: "
                    "accelerate launch --config_file configs/accelerate/... -m vidgen train --config ...")
    p.add_argument("--config", required=True, help="training config (YAML or JSON)")
    p.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint in output_dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    return p


def run(args: argparse.Namespace) -> int:
    from vidgen.train.config import TrainConfig
    from vidgen.train.trainer import train

    from vidgen.train.checkpoint import CheckpointError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = TrainConfig.load(args.config)
        result = train(config, resume=args.resume, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FileExistsError, CheckpointError) as e:  # the user's input: no traceback
        print(f"vidgen train: error: {e}", file=sys.stderr)
        return 2
    print(f"trained to step {result.step}; weights in {result.output_dir / 'final'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidgen")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))
