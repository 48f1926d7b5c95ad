"""`python -m vidgen ...` is the `vidgen` command."""

import sys

from vidgen.cli import main

sys.exit(main())
