"""Data: what users bring and what the pipeline makes of it.

Owns reading structure inputs (:mod:`.inputs`: tables, CIF folders with ``id_prop.csv``,
folders of CIF / POSCAR / extended-XYZ files), validating them into the canonical structure
table (:mod:`.ingest`, :mod:`.cif_fast`, :mod:`.table`), the properties and their units
(:mod:`.properties`), what a model learns (:mod:`.targets`), subsets and fixed splits
(:mod:`.split`), the committed MP-2018 subset (:mod:`.embedded`), the zoo's held-out list
(:mod:`.heldout`) and downloads from Materials Project, OQMD and matbench (:mod:`.download`).

Torch-free. May import :mod:`tlcgcnn.utils` and :mod:`tlcgcnn.config`; nothing else of the
package.
"""
