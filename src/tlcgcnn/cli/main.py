"""The ``tlcgcnn`` command: published and trained models on your own crystals.

* ``tlcgcnn models``: the published models (the zoo), what each predicts and how well;
* ``tlcgcnn predict --model NAME|M.pt|FOLDER INPUT... -o predictions.csv``;
* ``tlcgcnn finetune --pretrained NAME|M.pt --data DATA --label COLUMN [...]``;
* ``tlcgcnn info NAME|M.pt [--json]``.

Thin: argument parsing and messages only; the work is in :mod:`tlcgcnn.predict`,
:mod:`tlcgcnn.cli.runner` (which runs the Snakemake workflow) and :mod:`tlcgcnn.train.checkpoint`.
A user error (a bad checkpoint, an unreadable input) prints one
line ``tlcgcnn: error: ...`` on stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import warnings
from collections.abc import Sequence

EXIT_USAGE = 2


def _device(name: str) -> str:
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name) is None:
        raise argparse.ArgumentTypeError(f"{name!r} is not a device; use auto, cpu, cuda or cuda:N")
    return name


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    from tlcgcnn.cli.runner import MODE_HELP  # light: no torch

    parser = argparse.ArgumentParser(
        prog="tlcgcnn",
        description=(
            "Transfer learning on crystal graphs: predict properties of your own crystals with published or trained "
            "models, fine-tune a pretrained model on your own labels, inspect a model."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tlcgcnn {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser(
        "models",
        help="list the published models: what each predicts (units), training size, test MAE, seeds",
        description="List the published models (the model zoo). A name works wherever a checkpoint path does.",
    ).add_argument("--json", action="store_true", help="print JSON instead of a table")

    sub.add_parser(
        "config",
        help="the configuration schema with every default, or the defaults alone",
        description=(
            "schema: config/schema/config.schema.yaml with every default filled in from tlcgcnn.config (JSON, which "
            "YAML readers and editors' JSON-schema support read; the file itself holds no defaults); "
            "defaults: each default, keyed by its place in the config (train.epochs, finetune.modes.*.freeze, ...)."
        ),
    ).add_argument("what", choices=("schema", "defaults"))

    p = sub.add_parser(
        "predict",
        help="predict a property for structure files, folders or tables of structures",
        description=(
            "Predict the property a model was trained on for new crystals. "
            "INPUT: structure files (CIF, POSCAR/CONTCAR, .vasp, extended XYZ), folders of them (id = file name), "
            "or CSV/Parquet/JSON tables with a structure column "
            "(cif, structure, poscar: CIF, POSCAR, extended-XYZ text or pymatgen JSON) and an optional id column such "
            "as material_id. Structures are validated as in ingest; every dropped input is listed with its reason in "
            "the dropped report. Outputs are in the property's units (a log10 target also as log10_<property>); with "
            "several seeds each column is their mean and <column>_std their standard deviation; a published model "
            "adds its calibrated 90 %% interval (<column>_lo90, <column>_hi90)."
        ),
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="structure file, folder of structure files, or table (.csv[.gz], .parquet, .json)",
    )
    p.add_argument(
        "--model",
        "-m",
        action="append",
        required=True,
        metavar="MODEL",
        help="a published model's name (tlcgcnn models), a checkpoint, or a folder of seed checkpoints "
        "(a zoo folder or a fine-tuning cell's results/.../n<size>/<mode>); repeat for an ensemble",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="predictions.csv",
        help="predictions table: .csv, .csv.gz, .parquet or .json",
    )
    p.add_argument(
        "--dropped",
        metavar="dropped.csv",
        help="report of dropped inputs with reasons (default: <output stem>.dropped.csv next to -o)",
    )
    p.add_argument(
        "--device", default="auto", type=_device, help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)"
    )
    p.add_argument("--batch-size", type=_positive, default=512, help="crystals per forward pass (default: 512)")
    p.add_argument(
        "--threads",
        type=_positive,
        default=1,
        help="processes for parsing and graph building, and torch threads (default: 1)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summary")

    f = sub.add_parser(
        "finetune",
        help="fine-tune a pretrained checkpoint on your own table with the pipeline "
        "(scratch vs transfer, t-tests, figures)",
        description=(
            "Fine-tune a pretrained checkpoint on a table of your own structures and labels "
            "with the Snakemake workflow: "
            "writes WORKDIR/config.yaml (the checkpoint as a `checkpoint:` pretraining source, its featurization and "
            "architecture), prints the snakemake command that repeats the run, and runs it. Results under "
            "WORKDIR/results/NAME/: fine-tuned models and test predictions per (size, mode), "
            "the paired scratch-vs-transfer t-tests (stats/ttests.csv) and the learning-curve figure. Modes: "
            + "; ".join(f"{k}: {v}" for k, v in MODE_HELP.items())
            + "."
        ),
    )
    f.add_argument(
        "--pretrained",
        required=True,
        metavar="MODEL",
        help="a published model's name (e.g. mp2018-ef) or a pretrained checkpoint",
    )
    f.add_argument(
        "--data",
        required=True,
        metavar="DATA",
        help="a CIF folder with id_prop.csv (cgcnn's layout, header optional); "
        "a folder of structure files (CIF, POSCAR, "
        "extxyz) with a labels CSV; or a table (csv/parquet/json) with an id column, a structure column and the label",
    )
    f.add_argument(
        "--label",
        "--property",
        dest="label",
        required=True,
        metavar="COLUMN",
        help="the label column: any name (a built-in property name such as k_vrh or band_gap keeps its units and valid "
        "range; id_prop.csv without a header: the name to give its values)",
    )
    f.add_argument("--unit", help="units of a label the package does not know (e.g. GPa; default: dimensionless)")
    f.add_argument(
        "--task",
        choices=("regression", "classification"),
        default="regression",
        help="regression, or binary classification of a 0/1 label (default: regression)",
    )
    f.add_argument(
        "--range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        dest="valid_range",
        help="valid range of a new label: values outside are set to missing and listed",
    )
    f.add_argument(
        "--labels",
        metavar="labels.csv",
        help="the labels CSV of a folder of structure files (default: the folder's only CSV)",
    )
    f.add_argument(
        "--transform", choices=("none", "log10"), default="none", help="fit log10 of the label (default: none)"
    )
    f.add_argument(
        "--subset",
        choices=("all", "metal", "nonmetal"),
        default="all",
        help="fit only metals / non-metals (needs is_metal or band_gap; default: all)",
    )
    f.add_argument(
        "--sizes",
        nargs="+",
        default=["50", "100", "all"],
        metavar="N",
        help="training-set sizes, integers or 'all' (default: 50 100 all)",
    )
    f.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0, 1, 2],
        metavar="S",
        help="seeds of every (size, mode) (default: 0 1 2)",
    )
    f.add_argument(
        "--modes",
        nargs="+",
        default=["scratch", "transfer"],
        choices=sorted(MODE_HELP),
        metavar="MODE",
        help=f"modes, scratch included (choose from {', '.join(sorted(MODE_HELP))}; default: scratch transfer)",
    )
    f.add_argument(
        "--external",
        nargs="+",
        default=[],
        metavar="TABLE",
        help="outside labelled tables of the same property: every fine-tuned model predicts them (stats/external.csv)",
    )
    f.add_argument(
        "--train-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="training settings (config train:), e.g. epochs=50 batch_size=32 device=cpu",
    )
    f.add_argument("--name", help="run name: results go to WORKDIR/results/NAME (default: <data stem>_<property>)")
    f.add_argument("--workdir", metavar="DIR", help="working directory of the run, holds config.yaml (default: ./NAME)")
    f.add_argument("--cores", type=_positive, default=1, help="cores for snakemake --cores (default: 1)")
    f.add_argument("--dry-run", action="store_true", help="write the config and show the jobs without running them")

    i = sub.add_parser(
        "info",
        help="describe a checkpoint: target, units, data, featurization, model, metrics, code version",
        description=(
            "Describe a checkpoint: target (property, units, transform, task, subset), training data hash and split "
            "sizes, featurization parameters, model config and parameter count, validation score, test metrics (from "
            "a metrics.json next to the checkpoint, if any), code and torch versions, transfer settings."
        ),
    )
    i.add_argument(
        "checkpoint",
        metavar="MODEL",
        help="a published model's name, a checkpoint, or a folder of seeds (the first is described)",
    )
    i.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def _predict(args: argparse.Namespace) -> int:
    from tlcgcnn import predict

    summary = predict.run(
        args.model,
        args.inputs,
        args.output,
        dropped=args.dropped,
        device=args.device,
        batch_size=args.batch_size,
        threads=args.threads,
        progress=not args.quiet,
    )
    if not args.quiet:
        units = ", ".join(f"{c} [{u or 'dimensionless'}]" for c, u in summary["units"].items())
        reasons = ", ".join(f"{k}: {v}" for k, v in summary["dropped_by_reason"].items()) or "none"
        interval = "; calibrated 90 % interval" if summary["interval"] else ""
        print(
            f"predicted {summary['predicted']} crystals with {len(summary['models'])} model(s) "
            f"of {summary['target']} ({units}{interval}) -> {summary['out']}\n"
            f"dropped {summary['dropped']} ({reasons}) -> {summary['dropped_report']}",
            file=sys.stderr,
        )
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from tlcgcnn.cli import runner

    outcome = runner.run(
        pretrained=args.pretrained,
        data=args.data,
        prop=args.label,
        unit=args.unit,
        task=args.task,
        valid_range=args.valid_range,
        labels=args.labels,
        transform=args.transform,
        subset=args.subset,
        sizes=args.sizes,
        seeds=args.seeds,
        modes=args.modes,
        name=args.name,
        train=runner.parse_overrides(args.train_overrides),
        external=args.external,
        workdir=args.workdir,
        cores=args.cores,
        dry_run=args.dry_run,
    )
    return outcome.returncode


def _models(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from tlcgcnn import zoo

    models = zoo.list_models()
    if args.json:
        print(json.dumps([asdict(m) for m in models], indent=2, default=str))
    else:
        print(zoo.format_table(models))
    return 0


def _config(args: argparse.Namespace) -> int:
    from tlcgcnn.config import defaults, schema_with_defaults

    if args.what == "schema":
        print(json.dumps(schema_with_defaults(), indent=2, ensure_ascii=False))
    else:
        for key, value in defaults().items():
            print(f"{key}: {json.dumps(value)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from tlcgcnn import zoo
    from tlcgcnn.train.checkpoint import describe_checkpoint, format_description

    d = describe_checkpoint(zoo.resolve(args.checkpoint)[0])
    print(json.dumps(d, indent=2, default=str) if args.json else format_description(d))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tlcgcnn")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    from tlcgcnn.cli.runner import RunnerError
    from tlcgcnn.config import ConfigError
    from tlcgcnn.data.ingest import IngestError
    from tlcgcnn.predict import PredictError
    from tlcgcnn.train.checkpoint import CheckpointError
    from tlcgcnn.zoo import ZooError

    command = {"models": _models, "config": _config, "predict": _predict, "finetune": _finetune, "info": _info}[
        args.command
    ]
    try:
        with warnings.catch_warnings():  # restores the default display afterwards
            warnings.showwarning = _show_warning
            return command(args)
    except (
        CheckpointError,
        PredictError,
        IngestError,
        ConfigError,
        RunnerError,
        ZooError,
        OSError,
    ) as exc:  # OSError: e.g. an unwritable -o
        print("tlcgcnn: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_USAGE


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """A warning (e.g. a checkpoint that does not record its featurization) as one line."""
    print("tlcgcnn: warning: " + " ".join(str(message).split()), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
