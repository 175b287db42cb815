"""Reporting: what a run publishes.

* :mod:`.claims`: the papers' claims tested on a run's statistics tables (claims.csv);
* :mod:`.summary`: a published folder's summary.md and the Markdown tables it shares;
* :mod:`.provenance`: code version, machine, the devices a run computed on, provenance.json;
* :mod:`.publish`: the published results folder (rule ``report``) and its check;
* :mod:`.readme`: the results page's claims table (``python -m tlcgcnn.report readme|check``);
* :mod:`.paper_claims`: the papers' claims in the papers' own terms, one Holm family
  (claims_papers.csv; ``python -m tlcgcnn.report papers``);
* :mod:`.figures`: the figures; :mod:`.cards`: model cards; :mod:`.progress`: the progress of
  a long run.

Torch-free at import. May import every other subpackage.
"""
