"""``python -m widget.worker``: the same as ``widget worker``."""

import sys

from widget.cli import main

sys.exit(main(["worker"]))
