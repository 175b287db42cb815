"""Utilities every subpackage may use: atomic file writing and hashing (:mod:`.fileio`),
the workflow scripts' logging set-up (:mod:`.runtime`) and the results folder's paths
(:mod:`.layout`). Imports nothing else of the package."""
