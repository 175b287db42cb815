"""Utilities every subpackage may use: atomic file writing and hashing (:mod:`.fileio`) and
the workflow scripts' logging set-up (:mod:`.runtime`). Imports nothing else of the package."""
