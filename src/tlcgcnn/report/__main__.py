"""``python -m tlcgcnn.report readme|papers|check``: the results page's claims tables
(:mod:`.readme`); ``python -m tlcgcnn.report backbones``: a backbone run paired with a published
study (:mod:`.backbones`); ``python -m tlcgcnn.report controls``: a controls run (zero-shot,
recalibrated, Δ-learning) paired with a published study (:mod:`.controls`); ``python -m
tlcgcnn.report scratch-budget``: the transfer against scratch tuned like it (:mod:`.scratch_budget`);
``python -m tlcgcnn.report nm-source``: a non-metal-only source against the all-materials one
(:mod:`.nm_source`); ``python -m tlcgcnn.report berkeley``: the Berkeley report's Tables 2 and 3
beside a study in its own setting (:mod:`.berkeley`); ``python -m tlcgcnn.report effective FOLDER
PAGE``: how many scratch crystals each source of a published study is worth
(``FOLDER/tables/effective_data.csv``)."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "backbones":
    from tlcgcnn.report.backbones import main as backbones_main

    sys.exit(backbones_main(sys.argv[2:]))

if len(sys.argv) > 1 and sys.argv[1] == "controls":
    from tlcgcnn.report.controls import main as controls_main

    sys.exit(controls_main(sys.argv[2:]))

if len(sys.argv) > 1 and sys.argv[1] == "scratch-budget":
    from tlcgcnn.report.scratch_budget import main as scratch_budget_main

    sys.exit(scratch_budget_main(sys.argv[2:]))

if len(sys.argv) > 1 and sys.argv[1] == "nm-source":
    from tlcgcnn.report.nm_source import main as nm_source_main

    sys.exit(nm_source_main(sys.argv[2:]))

if len(sys.argv) > 1 and sys.argv[1] == "berkeley":
    from tlcgcnn.report.berkeley import main as berkeley_main

    sys.exit(berkeley_main(sys.argv[2:]))

if len(sys.argv) > 1 and sys.argv[1] == "effective":
    from tlcgcnn.report.effective import main as effective_main

    sys.exit(effective_main(sys.argv[2:]))

from tlcgcnn.report.readme import main  # noqa: E402

sys.exit(main())
