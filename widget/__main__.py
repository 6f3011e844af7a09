import sys

from widget.cli import main

sys.exit(main())
