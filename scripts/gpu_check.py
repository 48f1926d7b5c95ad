"""Measure vidgen on one CUDA GPU in one command (about 6 minutes): CUDA tests and parity with diffusers, Wan 2.1 1.3B
at 480p, the VAE decode, a 14B block at 720p, and the memory modes; writes gpu_check.json and the `gpu_check` section of
docs/benchmarks.md. See docs/gpu_check.md.

    python scripts/gpu_check.py [--dry-run] [--out gpu_check.json] [--no-write] [--docs DIR] [--budget S] [--only ...]
"""

import sys
from pathlib import Path

# A GPU machine runs this from a plain copy of the repository, without `pip install -e .`: the root is the package path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidgen_lab.gpu_check import main  # noqa: E402

if __name__ == "__main__":
    main()
