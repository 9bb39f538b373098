"""``python -m pyswoole``: the same command line as ``pyswoole``."""

import sys

from .cli import main

sys.exit(main())
