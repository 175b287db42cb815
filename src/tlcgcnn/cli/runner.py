"""``tlcgcnn finetune``: fine-tune a pretrained checkpoint on a user's own table with the
pipeline itself.

The command writes a configuration (kept as ``<workdir>/config.yaml``) in which the
pretrained checkpoint is a ``checkpoint:`` pretraining source, and runs the Snakemake
workflow of the repository the package lives in, in a subprocess: there is no second
training path. The run can be repeated or extended with the printed ``snakemake`` command.

The featurization and architecture are the checkpoint's (read torch-free by
:mod:`tlcgcnn.train.checkpoint_info`), so that the transfer modes can load its weights; the
scratch mode trains the same architecture from random weights, which is what the paired
scratch-vs-transfer t-test compares.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlcgcnn.utils.layout import Layout

SOURCE = "pretrained"  # the name of the checkpoint source in the written config
MODES: dict[str, dict[str, Any]] = {
    "scratch": {},
    "transfer": {"pretrained": SOURCE},
    "head_reinit": {"pretrained": SOURCE, "reinit": "head"},
    "freeze_convs": {"pretrained": SOURCE, "freeze": -1},  # -1: every convolution (the checkpoint's n_conv)
    "refine": {"pretrained": SOURCE, "validate_source": True},
}
MODE_HELP = {
    "scratch": "random initial weights (the baseline of the t-tests)",
    "transfer": "every pretrained layer fine-tuned",
    "head_reinit": "pretrained convolutions, re-initialised head, all fine-tuned",
    "freeze_convs": "embedding and every convolution frozen, head fine-tuned",
    "refine": "every pretrained layer fine-tuned in the model's own units, the model as it is competing on "
    "validation, so that the result is never worse there than the model before fine-tuning (for a label "
    "the model already predicts, e.g. mp2018-ef on your own formation energies)",
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


def declare_label(
    prop: str, unit: str | None = None, task: str = "regression", valid_range: Sequence[float | None] | None = None
) -> dict[str, Any] | None:
    """The ``properties:`` entry for a label the package does not know (None for a built-in
    property, whose units and range are fixed: giving another unit for it is an error)."""
    from tlcgcnn.data import properties

    if prop in properties.BUILTIN:
        known = properties.PROPERTIES[prop]
        if unit is not None and unit != known.unit:
            raise RunnerError(
                f"--unit {unit!r}: {prop} is a built-in property in {known.unit or 'no units'}; "
                "name your column otherwise"
            )
        return None
    if re.fullmatch(properties.NAME_PATTERN, prop) is None:
        raise RunnerError(f"--label {prop!r}: a label name is a letter then letters, digits or _ (rename the column)")
    spec: dict[str, Any] = {"unit": unit or "", "kind": "bool" if task == "classification" else "float"}
    low, high = (list(valid_range) + [None, None])[:2] if valid_range else (None, None)
    if low is not None:
        spec["low"] = float(low)
    if high is not None:
        spec["high"] = float(high)
    return spec


def build_config(
    *,
    pretrained: str | Path,
    data: str | Path,
    prop: str,
    transform: str = "none",
    subset: str = "all",
    unit: str | None = None,
    task: str = "regression",
    valid_range: Sequence[float | None] | None = None,
    labels: str | Path | None = None,
    sizes: Sequence[int | str] = (50, 100, "all"),
    seeds: Sequence[int] = (0, 1, 2),
    modes: Sequence[str] = ("scratch", "transfer"),
    name: str | None = None,
    train: dict[str, Any] | None = None,
    external: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """The configuration of a fine-tuning run of ``pretrained`` (a zoo name or checkpoint) on
    ``data`` (a table, a CIF folder with id_prop.csv, or a folder of structure files with a
    labels CSV), validated by :func:`tlcgcnn.config.load` (raises its ConfigError with the
    reason). ``prop`` is the label column; a name the package does not know is declared
    under ``properties:`` with ``unit``, ``task`` and ``valid_range``."""
    from tlcgcnn import config
    from tlcgcnn.data import inputs
    from tlcgcnn.data.properties import BUILTIN, canonical_name
    from tlcgcnn.train.checkpoint_info import CheckpointInfoError, summary

    pretrained = pretrained_file(pretrained)
    try:
        info = summary(pretrained)
    except CheckpointInfoError as err:
        raise RunnerError(str(err)) from None
    data_path = Path(data)
    if not data_path.exists():
        raise RunnerError(f"{data_path}: no such data file or folder")
    if task not in ("regression", "classification"):
        raise RunnerError(f"--task {task!r}: choose regression or classification")
    if task == "classification" and transform != "none":
        raise RunnerError("--transform log10 is for a regression label, not a classification one")
    alias_of = canonical_name(prop)
    if alias_of is not None and alias_of in BUILTIN:
        prop = alias_of  # an alias (e_form) names its built-in property
    declared = declare_label(prop, unit, task, valid_range)
    columns: dict[str, str] = {}
    try:
        raw_cols = inputs.input_columns(data_path, labels)
    except (OSError, ValueError) as exc:
        raise RunnerError(f"{data_path}: cannot read its columns: {exc}") from None
    if raw_cols is not None:
        if (
            data_path.is_dir()
            and labels is None
            and (data_path / inputs.ID_PROP).is_file()
            and raw_cols == ["material_id", "target"]
        ):
            columns = {"target": prop}  # cgcnn's id_prop.csv without a header: its one label is --label
        elif prop not in raw_cols and not any(canonical_name(c) == prop for c in raw_cols):
            raise RunnerError(f"--label {prop!r}: {data_path} has no such column; its columns: {raw_cols}")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise RunnerError(f"--modes: unknown {unknown}; choose from {sorted(MODES)}")
    if "scratch" not in modes:
        raise RunnerError("--modes must include scratch: the paired t-tests compare every mode with it")
    if len(seeds) < 2:
        print("tlcgcnn: warning: with one seed the paired t-tests have no p-value", file=sys.stderr)
    if "refine" in modes:
        refused = refine_mismatch(info["target"], prop, transform, task)
        if refused:
            raise RunnerError(f"--modes refine: {refused}; use transfer or head_reinit for a new quantity")
    model = {k: info["model_config"][k] for k in MODEL_KEYS if k in info["model_config"]}
    featurize = {k: v for k, v in (info["featurize"] or {}).items() if k in FEATURIZE_KEYS}
    mode_cfg = {}
    for m in modes:
        spec = dict(MODES[m])
        if spec.get("freeze") == -1:
            spec["freeze"] = int(model.get("n_conv", 3))
        mode_cfg[m] = spec
    target = prop + ("_log10" if transform == "log10" else "") + ("" if subset == "all" else f"_{subset}")
    dataset: dict[str, Any] = {"source": "local", "path": str(data_path.resolve())}
    if labels is not None:
        dataset["labels"] = str(Path(labels).resolve())
    if columns:
        dataset["columns"] = columns
    raw: dict[str, Any] = {
        "name": name or default_name(data_path, prop),
        **({"properties": {prop: declared}} if declared is not None else {}),
        "dataset": dataset,
        "featurize": featurize,
        "model": model,
        "train": dict(train or {}),
        "pretrain": [{"name": SOURCE, "checkpoint": str(Path(pretrained).resolve())}],
        "finetune": {
            "targets": [{"name": target, "property": prop, "transform": transform, "subset": subset, "task": task}],
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
        raw["external"] = [
            {"name": n, "path": str(Path(p).resolve()), "property": prop, "transform": transform}
            for n, p in zip(names, external, strict=True)
        ]
    config.load(raw)
    return raw


def refine_mismatch(source: dict[str, Any], prop: str, transform: str, task: str) -> str | None:
    """Why the ``refine`` mode cannot fine-tune a checkpoint whose target is ``source`` on
    ``prop`` (None: it can). Its outputs must already be the label's quantity: a regression
    of one output, the same property (aliases resolved) and the same transform."""
    from tlcgcnn.data.properties import canonical_name

    if task != "regression" or source.get("task", "regression") != "regression":
        return f"the model predicts a {source.get('task', 'regression')} target, the label is a {task} one"
    theirs = str(source.get("property"))
    if (canonical_name(theirs) or theirs) != (canonical_name(prop) or prop):
        return f"the model predicts {theirs}, not {prop} (a label column of the same quantity may be named {theirs})"
    if source.get("transform", "none") != transform:
        return f"the model predicts its property with transform {source.get('transform', 'none')}, not {transform}"
    return None


def pretrained_file(spec: str | Path) -> Path:
    """The checkpoint a ``--pretrained`` names: a zoo name (its seed 0, the source every
    published pretraining model has), or a checkpoint file."""
    from tlcgcnn import zoo

    try:
        files = zoo.resolve(spec)
    except zoo.ZooError as err:
        raise RunnerError(str(err)) from None
    return Path(files[0]).resolve()


def check_atom_table(pretrained: str | Path) -> None:
    """The checkpoint must use the package's atom-feature table (what the written config
    uses); said here, before any job starts (the transfer jobs check it again)."""
    import torch

    from tlcgcnn.features import atom_features
    from tlcgcnn.train.checkpoint import check_compatible, load_checkpoint

    table = Path(__file__).resolve().parents[1] / "features" / "atom_features.csv"
    ckpt = load_checkpoint(pretrained_file(pretrained))
    check_compatible(
        ckpt,
        pretrained,
        atom_table=torch.from_numpy(atom_features.load_matrix(table)),
        table_name=f"the package's {table.name}",
    )


def snakemake_command(root: Path, workdir: Path, cores: int, dry_run: bool = False) -> list[str]:
    exe = Path(sys.executable).parent / "snakemake"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]
    cmd = [
        *base,
        "--snakefile",
        str(root / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        str(cores),
    ]
    return [*cmd, "--dry-run"] if dry_run else cmd


def outputs(raw: dict[str, Any], workdir: Path) -> dict[str, str]:
    """Where a finished run's results are."""
    lay = Layout.for_config(raw["name"], workdir)
    target = raw["finetune"]["targets"][0]["name"]
    out = {
        "fine-tuned models": str(lay.seed_model(target, "<size>", "<mode>", "<seed>")),
        "test predictions": str(lay.cell_predictions(target, "<size>", "<mode>")),
        "paired t-tests (scratch vs transfer)": str(lay.stats("ttests.csv")),
        "learning curve": str(lay.figure("learning_curve")),
    }
    if any(t.get("task") == "classification" for t in raw["finetune"]["targets"]):
        out["ROC curves"] = str(lay.figure("roc"))
        out["ROC table"] = str(lay.stats("roc.csv"))
    if raw.get("external"):
        out["external sets"] = str(lay.stats("external.csv"))
        out["external parity figure"] = str(lay.figure("external_parity"))
    return out


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """A finished (or failed) fine-tuning run: Snakemake's exit status and where it wrote."""

    returncode: int
    workdir: Path
    results: Path
    target: str


def run(
    *,
    pretrained: str | Path,
    data: str | Path,
    prop: str,
    workdir: str | Path | None = None,
    cores: int = 1,
    dry_run: bool = False,
    **kwargs: Any,
) -> RunOutcome:
    """Write ``<workdir>/config.yaml``, print the snakemake command and run it."""
    import yaml

    from tlcgcnn.utils import fileio as io

    root = repo_root()
    raw = build_config(pretrained=pretrained, data=data, prop=prop, **kwargs)
    check_atom_table(pretrained)
    wd = Path(workdir if workdir is not None else raw["name"]).resolve()
    wd.mkdir(parents=True, exist_ok=True)
    io.write_text(
        wd / "config.yaml",
        "# written by tlcgcnn finetune; rerun with the snakemake command it printed\n"
        + yaml.safe_dump(raw, sort_keys=False),
    )
    cmd = snakemake_command(root, wd, cores, dry_run)
    print(
        f"tlcgcnn: config written to {wd / 'config.yaml'}; running (repeat with):\n  {shlex.join(cmd)}",
        file=sys.stderr,
        flush=True,
    )
    code = subprocess.run(cmd, check=False).returncode
    lay = Layout.for_config(raw["name"], wd)
    if code == 0 and not dry_run:
        lines = "\n".join(f"  {k}: {v}" for k, v in outputs(raw, wd).items())
        print(
            f"tlcgcnn: finished. Results:\n{lines}\n  report: run the command above with --report report.html",
            file=sys.stderr,
        )
    elif code != 0:
        print(
            f"tlcgcnn: the run failed (snakemake exit status {code}); each job's log is under {lay.logs()}",
            file=sys.stderr,
        )
    return RunOutcome(returncode=code, workdir=wd, results=lay.root, target=raw["finetune"]["targets"][0]["name"])
