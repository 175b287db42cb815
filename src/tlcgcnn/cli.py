"""The ``tlcgcnn`` command: use trained checkpoints outside the pipeline.

* ``tlcgcnn predict --model M.pt [--model M2.pt ...] INPUT... -o predictions.csv``
* ``tlcgcnn info M.pt [--json]``

Thin: argument parsing and messages only; the work is in :mod:`tlcgcnn.predict` and
:mod:`tlcgcnn.checkpoint`. A user error (a bad checkpoint, an unreadable input) prints one
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
    parser = argparse.ArgumentParser(
        prog="tlcgcnn",
        description="Use models trained by the tlcgcnn pipeline: predict properties of your own crystals, inspect a checkpoint.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "predict",
        help="predict a property for CIF files, CIF folders or tables of structures",
        description=(
            "Predict the property a checkpoint was trained on for new crystals. INPUT: CIF files, folders of *.cif "
            "files (id = file name), or CSV/Parquet/JSON tables with a 'cif' or pymatgen 'structure' column (and an "
            "optional id column such as material_id). Structures are validated as in ingest; every dropped input is "
            "listed with its reason in the dropped report. Outputs are in the property's units (a log10 target also "
            "as log10_<property>); with several --model, each column is the mean over the models and <column>_std "
            "their standard deviation."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="CIF file, folder of CIF files, or table (.csv[.gz], .parquet, .json)")
    p.add_argument("--model", "-m", action="append", required=True, metavar="M.pt", help="checkpoint (repeat for an ensemble, e.g. the seeds of a cell)")
    p.add_argument("-o", "--output", required=True, metavar="predictions.csv", help="predictions table (CSV)")
    p.add_argument("--dropped", metavar="dropped.csv", help="report of dropped inputs with reasons (default: <output stem>.dropped.csv next to -o)")
    p.add_argument("--device", default="auto", type=_device, help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--batch-size", type=_positive, default=512, help="crystals per forward pass (default: 512)")
    p.add_argument("--threads", type=_positive, default=1, help="processes for parsing and graph building, and torch threads (default: 1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summary")

    i = sub.add_parser(
        "info",
        help="describe a checkpoint: target, units, data, featurization, model, metrics, code version",
        description=(
            "Describe a checkpoint: target (property, units, transform, task, subset), training data hash and split "
            "sizes, featurization parameters, model config and parameter count, validation score, test metrics (from "
            "a metrics.json next to the checkpoint, if any), code and torch versions, transfer settings."
        ),
    )
    i.add_argument("checkpoint", metavar="M.pt")
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
        print(
            f"predicted {summary['predicted']} crystals with {len(summary['models'])} model(s) of {summary['target']} ({units}) -> {summary['out']}\n"
            f"dropped {summary['dropped']} ({reasons}) -> {summary['dropped_report']}",
            file=sys.stderr,
        )
    return 0


def _info(args: argparse.Namespace) -> int:
    from tlcgcnn.checkpoint import describe_checkpoint, format_description

    d = describe_checkpoint(args.checkpoint)
    print(json.dumps(d, indent=2, default=str) if args.json else format_description(d))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    from tlcgcnn.checkpoint import CheckpointError
    from tlcgcnn.ingest import IngestError
    from tlcgcnn.predict import PredictError

    try:
        with warnings.catch_warnings():  # restores the default display afterwards
            warnings.showwarning = _show_warning
            return _predict(args) if args.command == "predict" else _info(args)
    except (CheckpointError, PredictError, IngestError, OSError) as exc:  # OSError: e.g. an unwritable -o
        print("tlcgcnn: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_USAGE


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None, line: str | None = None) -> None:
    """A warning (e.g. a checkpoint that does not record its featurization) as one line."""
    print("tlcgcnn: warning: " + " ".join(str(message).split()), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
