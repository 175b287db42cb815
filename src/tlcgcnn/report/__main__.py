"""``python -m tlcgcnn.report``: the results page's claims table (:mod:`.published`)."""

import sys

from tlcgcnn.report.published import main

sys.exit(main())
