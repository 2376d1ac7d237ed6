"""``python -m helixflow STAGE ...``: the same command line as the ``helixflow`` script."""

import sys

from .cli import main

sys.exit(main())
