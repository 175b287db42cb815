"""``python -m tlcgcnn.report readme|check``: the results page's claims table (:mod:`.readme`)."""

import sys

from tlcgcnn.report.readme import main

sys.exit(main())
