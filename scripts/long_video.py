"""Chained long videos: python scripts/long_video.py "PROMPT" --segments N -o long.mp4 (see --help)."""

import sys

from vidgen.long_video_cli import main

if __name__ == "__main__":
    sys.exit(main())
