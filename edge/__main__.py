"""``python -m edge``: the same as the ``showsay`` command."""
import sys

from edge.cli import main

sys.exit(main())
