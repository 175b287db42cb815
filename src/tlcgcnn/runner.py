"""``tlcgcnn finetune``: fine-tune a pretrained checkpoint on a user's own table with the
pipeline itself.

The command writes a configuration (kept as ``<workdir>/config.yaml``) in which the
pretrained checkpoint is a ``checkpoint:`` pretraining source, and runs the Snakemake
workflow of the repository the package lives in, in a subprocess: there is no second
training path. The run can be repeated or extended with the printed ``snakemake`` command.

The featurization and architecture are the checkpoint's (read torch-free by
:mod:`tlcgcnn.checkpoint_info`), so that the transfer modes can load its weights; the
scratch mode trains the same architecture from random weights, which is what the paired
scratch-vs-transfer t-test compares.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SOURCE = "pretrained"  # the name of the checkpoint source in the written config
MODES: dict[str, dict[str, Any]] = {
    "scratch": {},
    "transfer": {"pretrained": SOURCE},
    "head_reinit": {"pretrained": SOURCE, "reinit": "head"},
    "freeze_convs": {"pretrained": SOURCE, "freeze": -1},  # -1: every convolution (the checkpoint's n_conv)
}
MODE_HELP = {
    "scratch": "random initial weights (the baseline of the t-tests)",
    "transfer": "every pretrained layer fine-tuned",
    "head_reinit": "pretrained convolutions, re-initialised head, all fine-tuned",
    "freeze_convs": "embedding and every convolution frozen, head fine-tuned",
}
MODEL_KEYS = ("kind", "atom_fea_len", "n_conv", "h_fea_len", "n_h", "gaussian_step")
FEATURIZE_KEYS = ("radius", "max_neighbors", "radius_growth", "max_radius")


class RunnerError(ValueError):
    """A fine-tuning request that cannot be run; the message says why and what to do."""


def repo_root() -> Path:
    """The repository the package lives in (an editable install): it holds the Snakefile."""
    import tlcgcnn

    root = Path(tlcgcnn.__file__).resolve().parents[2]
    if not (root / "Snakefile").is_file() or not (root / "rules").is_dir():
        raise RunnerError(
            f"the Snakemake workflow is not next to the installed package ({root} has no Snakefile and rules/): "
            "tlcgcnn finetune runs the repository's workflow, which a non-editable install does not ship. "
            "Clone the repository and install it with `pip install -e .` (see README.md)"
        )
    return root


def slug(text: str) -> str:
    """``text`` as a config name (letters, digits, ``_ . -``; starting with a letter or digit)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-")
    return name if name and name[0].isalnum() else f"run_{name}"


def default_name(data: str | Path, prop: str) -> str:
    """The run name of ``data`` (its file stem) and the property."""
    return slug(f"{Path(data).name.split('.')[0]}_{prop}")


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (values read as YAML scalars: 3, 0.01, none, true)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RunnerError(f"--train-overrides: {item!r} is not KEY=VALUE (e.g. epochs=50)")
        out[key.strip()] = yaml.safe_load(value)
    return out


def build_config(
    *,
    pretrained: str | Path,
    data: str | Path,
    prop: str,
    transform: str = "none",
    subset: str = "all",
    sizes: Sequence[int | str] = (50, 100, "all"),
    seeds: Sequence[int] = (0, 1, 2),
    modes: Sequence[str] = ("scratch", "transfer"),
    name: str | None = None,
    train: dict[str, Any] | None = None,
    external: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """The configuration of a fine-tuning run of ``pretrained`` on the table ``data``,
    validated by :func:`tlcgcnn.config.load` (raises its ConfigError with the reason)."""
    from tlcgcnn import config
    from tlcgcnn.checkpoint_info import CheckpointInfoError, summary

    try:
        info = summary(pretrained)
    except CheckpointInfoError as err:
        raise RunnerError(str(err)) from None
    data_path = Path(data)
    if not data_path.exists():
        raise RunnerError(f"{data_path}: no such data file")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise RunnerError(f"--modes: unknown {unknown}; choose from {sorted(MODES)}")
    if "scratch" not in modes:
        raise RunnerError("--modes must include scratch: the paired t-tests compare every mode with it")
    if len(seeds) < 2:
        print("tlcgcnn: warning: with one seed the paired t-tests have no p-value", file=sys.stderr)
    model = {k: info["model_config"][k] for k in MODEL_KEYS if k in info["model_config"]}
    featurize = {k: v for k, v in (info["featurize"] or {}).items() if k in FEATURIZE_KEYS}
    mode_cfg = {}
    for m in modes:
        spec = dict(MODES[m])
        if spec.get("freeze") == -1:
            spec["freeze"] = int(model.get("n_conv", 3))
        mode_cfg[m] = spec
    target = prop + ("_log10" if transform == "log10" else "") + ("" if subset == "all" else f"_{subset}")
    raw: dict[str, Any] = {
        "name": name or default_name(data_path, prop),
        "dataset": {"source": "local", "path": str(data_path.resolve())},
        "featurize": featurize,
        "model": model,
        "train": dict(train or {}),
        "pretrain": [{"name": SOURCE, "checkpoint": str(Path(pretrained).resolve())}],
        "finetune": {
            "targets": [{"name": target, "property": prop, "transform": transform, "subset": subset}],
            "sizes": [config.parse_size(s) for s in sizes],
            "seeds": [int(s) for s in seeds],
            "modes": mode_cfg,
            "baseline": "scratch",
        },
    }
    if external:
        names = [slug(Path(p).name.split(".")[0]) for p in external]
        if len(set(names)) != len(names):
            raise RunnerError(f"--external: two files give the same set name {names}; rename one")
        raw["external"] = [{"name": n, "path": str(Path(p).resolve()), "property": prop, "transform": transform} for n, p in zip(names, external, strict=True)]
    config.load(raw)
    return raw


def check_atom_table(pretrained: str | Path) -> None:
    """The checkpoint must use the package's atom-feature table (what the written config
    uses); said here, before any job starts (the transfer jobs check it again)."""
    import torch

    from tlcgcnn import atom_features
    from tlcgcnn.checkpoint import check_compatible, load_checkpoint

    table = Path(__file__).resolve().parent / "data" / "atom_features.csv"
    ckpt = load_checkpoint(pretrained)
    check_compatible(ckpt, pretrained, atom_table=torch.from_numpy(atom_features.load_matrix(table)), table_name=f"the package's {table.name}")


def snakemake_command(root: Path, workdir: Path, cores: int, dry_run: bool = False) -> list[str]:
    exe = Path(sys.executable).parent / "snakemake"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]
    cmd = [*base, "--snakefile", str(root / "Snakefile"), "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", str(cores)]
    return [*cmd, "--dry-run"] if dry_run else cmd


def outputs(raw: dict[str, Any], workdir: Path) -> dict[str, str]:
    """Where a finished run's results are."""
    r = workdir / "results" / raw["name"]
    target = raw["finetune"]["targets"][0]["name"]
    out = {
        "fine-tuned models": f"{r}/finetune/{target}/n<size>/<mode>/runs/s<seed>/model.pt",
        "test predictions": f"{r}/finetune/{target}/n<size>/<mode>/predictions.parquet",
        "paired t-tests (scratch vs transfer)": f"{r}/stats/ttests.csv",
        "learning curve": f"{r}/figures/learning_curve.png",
    }
    if raw.get("external"):
        out["external sets"] = f"{r}/stats/external.csv"
        out["external parity figure"] = f"{r}/figures/external_parity.png"
    return out


def run(
    *,
    pretrained: str | Path,
    data: str | Path,
    prop: str,
    workdir: str | Path | None = None,
    cores: int = 1,
    dry_run: bool = False,
    **kwargs: Any,
) -> int:
    """Write ``<workdir>/config.yaml``, print the snakemake command and run it; returns
    Snakemake's exit status."""
    import yaml

    from tlcgcnn import io

    root = repo_root()
    raw = build_config(pretrained=pretrained, data=data, prop=prop, **kwargs)
    check_atom_table(pretrained)
    wd = Path(workdir if workdir is not None else raw["name"]).resolve()
    wd.mkdir(parents=True, exist_ok=True)
    io.write_text(wd / "config.yaml", "# written by tlcgcnn finetune; rerun with the snakemake command it printed\n" + yaml.safe_dump(raw, sort_keys=False))
    cmd = snakemake_command(root, wd, cores, dry_run)
    print(f"tlcgcnn: config written to {wd / 'config.yaml'}; running (repeat with):\n  {shlex.join(cmd)}", file=sys.stderr, flush=True)
    code = subprocess.run(cmd, check=False).returncode
    if code == 0 and not dry_run:
        lines = "\n".join(f"  {k}: {v}" for k, v in outputs(raw, wd).items())
        print(f"tlcgcnn: finished. Results:\n{lines}\n  report: run the command above with --report report.html", file=sys.stderr)
    return code
