"""The package's layout: concerns as subpackages, each saying what it owns, and the
torch-free ones importable without torch (Snakemake parses the workflow with them)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import tlcgcnn

SRC = Path(__file__).resolve().parents[1] / "src"
SUBPACKAGES = ("data", "features", "nn", "train", "analysis", "report", "cli", "utils")
TORCH_FREE = ("tlcgcnn.config", "tlcgcnn.zoo", "tlcgcnn.data", "tlcgcnn.features", "tlcgcnn.analysis", "tlcgcnn.report")
BLOCK = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("torch is blocked")
sys.meta_path.insert(0, Block())
for root in sys.argv[1:]:
    mod = importlib.import_module(root)
    for m in pkgutil.walk_packages(getattr(mod, "__path__", []), root + "."):
        if not m.name.endswith("__main__"):
            importlib.import_module(m.name)
print("ok")
"""


def test_subpackages_say_what_they_own():
    top = sorted(p.stem for p in (SRC / "tlcgcnn").glob("*.py"))
    assert top == ["__init__", "__main__", "api", "config", "predict", "zoo"], top
    for name in SUBPACKAGES:
        mod = importlib.import_module(f"tlcgcnn.{name}")
        assert mod.__doc__ and len(mod.__doc__.split()) >= 15, name


def test_torch_free_subpackages_import_without_torch():
    res = subprocess.run([sys.executable, "-c", BLOCK, *TORCH_FREE], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]


def test_every_module_imports():
    for m in pkgutil.walk_packages(tlcgcnn.__path__, "tlcgcnn."):
        if not m.name.endswith("__main__"):
            importlib.import_module(m.name)


def test_the_tests_mirror_the_subpackages():
    """tests/<name>/ holds the tests of src/tlcgcnn/<name>/ (config: tlcgcnn.config; workflow:
    the Snakemake rules, envs and profiles); only shared helpers and whole-package tests
    (README, package layout, zoo) stay at the top of tests/."""
    tests = SRC.parent / "tests"
    folders = sorted(p.name for p in tests.iterdir() if p.is_dir() and p.name not in ("__pycache__", "slurm"))
    assert set(folders) <= {*SUBPACKAGES, "config", "workflow"}, folders
    assert {"data", "features", "nn", "train", "analysis", "report", "cli", "config", "workflow"} <= set(folders)
    top = sorted(p.name for p in tests.glob("test_*.py"))
    assert top == ["test_layout.py", "test_readme.py", "test_zoo.py"], top
    for folder in folders:
        assert list((tests / folder).glob("test_*.py")), f"tests/{folder}/ holds no tests"
