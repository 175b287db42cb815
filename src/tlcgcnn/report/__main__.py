"""``python -m tlcgcnn.report readme|papers|check``: the results page's claims tables
(:mod:`.readme`); ``python -m tlcgcnn.report backbones``: a backbone run paired with a published
study (:mod:`.backbones`)."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "backbones":
    from tlcgcnn.report.backbones import main as backbones_main

    sys.exit(backbones_main(sys.argv[2:]))

from tlcgcnn.report.readme import main  # noqa: E402

sys.exit(main())
