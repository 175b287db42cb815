"""``python -m tlcgcnn``: the same as the ``tlcgcnn`` command."""

import sys

from tlcgcnn.cli.main import main

sys.exit(main())
