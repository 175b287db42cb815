"""Packaging hook: a wheel built from the repository ships the published model zoo.

All other packaging settings live in pyproject.toml. This file only extends setuptools'
``build_py`` so that ``resources/pretrained/<name>/{card.json,card.md,model_s*.pt}`` (each
folder with a model card) are copied into the build's ``tlcgcnn/_zoo/<name>/``, where
:func:`tlcgcnn.zoo.zoo_dirs` looks for published models in an installed package. An editable
install gets no copy: it reads ``resources/pretrained`` from the repository itself. The
source distribution carries the same files, so a wheel built from it ships the zoo as well.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
ZOO = ROOT / "resources" / "pretrained"
PATTERNS = ("card.json", "card.md", "model_s*.pt")


def zoo_files() -> list[tuple[Path, Path]]:
    """(source file, path below ``tlcgcnn/_zoo``) of every published model's shipped files."""
    out: list[tuple[Path, Path]] = []
    if not ZOO.is_dir():
        return out
    for folder in sorted(p for p in ZOO.iterdir() if (p / "card.json").is_file()):
        for pattern in PATTERNS:
            for f in sorted(folder.glob(pattern)):
                out.append((f, Path(folder.name) / f.name))
    return out


class BuildPyWithZoo(build_py):
    """``build_py`` that also copies the model zoo into ``<build_lib>/tlcgcnn/_zoo``."""

    def _zoo_targets(self) -> list[tuple[Path, Path]]:
        if getattr(self, "editable_mode", False):
            return []
        dest = Path(self.build_lib) / "tlcgcnn" / "_zoo"
        return [(src, dest / rel) for src, rel in zoo_files()]

    def run(self) -> None:
        super().run()
        targets = self._zoo_targets()
        if not targets and not getattr(self, "editable_mode", False):
            self.announce(f"{ZOO}: no published model found; the wheel ships no model zoo", level=3)
        for src, dst in targets:
            self.mkpath(str(dst.parent))
            self.copy_file(str(src), str(dst), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *(str(dst) for _, dst in self._zoo_targets())]


class SdistWithZoo(sdist):
    """``sdist`` that also packs the zoo's shipped files, so that a wheel built from the sdist
    (``python -m build`` builds the wheel that way) ships the zoo too."""

    def make_distribution(self) -> None:
        self.filelist.extend(src.relative_to(ROOT).as_posix() for src, _ in zoo_files())
        super().make_distribution()


setup(cmdclass={"build_py": BuildPyWithZoo, "sdist": SdistWithZoo})
