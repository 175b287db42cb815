"""README maintenance: the claims table of the results page (docs/results.md).

:func:`rewrite_readme` writes the claims of one or more published folders (:mod:`.publish`)
between the page's markers :data:`BEGIN` and :data:`END`, one section per folder marked
:data:`FOLDER_MARK`; :func:`check_readme` verifies that every cell there is the one its
folder's claims.csv gives, and :func:`readme_folders` lists the folders the page shows.
:func:`main` is ``python -m tlcgcnn.report readme|papers|check`` (``make results-readme``); ``papers``
writes the papers' claims in the papers' own terms (:mod:`.paper_claims`). Torch-free.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from tlcgcnn.report.claims import ALPHA, ReportError, read_claims
from tlcgcnn.report.paper_claims import check_papers, main_papers
from tlcgcnn.report.publish import check_published
from tlcgcnn.report.summary import README_HEADER, claim_cells, claims_table, table_rows
from tlcgcnn.utils import fileio as io

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
FOLDER_MARK = "<!-- results:folder {} -->"
_FOLDER_RE = re.compile(r"<!-- results:folder (\S+) -->")
EMPTY_STATE = (
    "No results are published yet. `snakemake docs/results/<name>/summary.md --cores 2 --configfile <config file>` "
    "publishes a finished run to `docs/results/<name>/`; `make results-readme` then writes its claims here."
)
RESULTS_PAGE = "docs/results.md"  # the page whose claims table `readme` writes and `check` checks


def _markers(text: str, readme: Path) -> tuple[int, int]:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ReportError(f"{readme}: needs one {BEGIN} followed by one {END} (where the results table goes)")
    return text.index(BEGIN) + len(BEGIN), text.index(END)


def readme_block(folders: Sequence[str | Path], readme: str | Path) -> str:
    """The README's results block: per published folder, a line saying where the numbers
    come from and the claims table."""
    if not folders:
        return EMPTY_STATE
    parts = []
    base = Path(readme).resolve().parent
    for folder in folders:
        f = Path(folder)
        prov_path = f / "provenance.json"
        if not prov_path.is_file():
            raise ReportError(f"{prov_path}: not found (is {f} a published results folder?)")
        prov = io.read_json(prov_path)
        rel = Path(os.path.relpath(f.resolve(), base)).as_posix()
        files = ", ".join(f"`{c}`" for c in prov.get("configfiles") or []) or f"name `{prov['name']}`"
        parts.append(
            f"{FOLDER_MARK.format(rel)}\n**`{prov['name']}`** ({files}; [summary]({rel}/summary.md), "
            f"[provenance]({rel}/provenance.json)). Test errors, mean over paired seeds; a claim holds with a "
            f"Holm-adjusted paired t-test p < {ALPHA} in the claimed direction.\n\n"
            f"{claims_table(read_claims(f / 'claims.csv'))}"
        )
    return "\n\n".join(parts)


def page_order(readme: str | Path, folders: Sequence[str | Path]) -> list[Path]:
    """``folders`` in the order the page's results block already shows them, the folders it
    does not show yet after them in the order given (``make results-readme`` passes every
    published folder alphabetically; the page keeps its order)."""
    path = Path(readme)
    shown = {f: i for i, f in enumerate(readme_folders(path))} if path.is_file() else {}
    given = [Path(f) for f in folders]
    rank = {f: (shown.get(f.resolve(), len(shown)), i) for i, f in enumerate(given)}
    return sorted(given, key=rank.__getitem__)


def rewrite_readme(readme: str | Path, folders: Sequence[str | Path]) -> bool:
    """Replace the text between the README's markers with :func:`readme_block` of ``folders``
    in :func:`page_order`; True when the file changed (running it twice changes nothing the
    second time)."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    start, end = _markers(text, path)
    new = text[:start] + "\n" + readme_block(page_order(path, folders), path) + "\n" + text[end:]
    if new == text:
        return False
    io.write_text(path, new)
    return True


def readme_folders(readme: str | Path) -> list[Path]:
    """The published folders the README's results block shows (absolute paths)."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    start, end = _markers(text, path)
    return [(path.resolve().parent / m).resolve() for m in _FOLDER_RE.findall(text[start:end])]


def check_readme(readme: str | Path) -> list[str]:
    """Problems with the README's results block: a table row whose cells differ from its
    folder's claims.csv as formatted here, a claim missing from the table, a row naming no
    claim, a folder that is not published. Empty when every number agrees."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    try:
        start, end = _markers(text, path)
    except ReportError as err:
        return [str(err)]
    block = text[start:end]
    pieces = _FOLDER_RE.split(block)  # [before, folder1, text1, folder2, text2, ...]
    problems = [
        f"{path}: results table row outside a folder section: {line.strip()}"
        for line in pieces[0].splitlines()
        if line.strip().startswith("|")
    ]
    for rel, body in zip(pieces[1::2], pieces[2::2], strict=True):
        folder = path.resolve().parent / rel
        try:
            claims = read_claims(folder / "claims.csv")
        except ReportError as err:
            problems.append(f"{path}: section {rel}: {err}")
            continue
        expected = {str(r["id"]): claim_cells(r) for r in claims.to_dict("records")}
        seen: set[str] = set()
        for cells in table_rows(body, README_HEADER):
            rid = cells[0] if cells else ""
            if rid not in expected:
                problems.append(f"{path}: section {rel}: row {rid!r} is not a claim of {folder / 'claims.csv'}")
                continue
            seen.add(rid)
            for col, got, want in zip(README_HEADER, cells, expected[rid], strict=False):
                if got != want:
                    problems.append(
                        f"{path}: claim {rid} ({rel}): {col} is {got!r}, but {folder / 'claims.csv'} gives {want!r}"
                    )
            if len(cells) != len(README_HEADER):
                problems.append(f"{path}: claim {rid} ({rel}): {len(cells)} cells, expected {len(README_HEADER)}")
        problems += [
            f"{path}: claim {i} of {folder / 'claims.csv'} is missing from the results table"
            for i in sorted(set(expected) - seen)
        ]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tlcgcnn.report readme|papers|check``: exit 0 when every number agrees, 1 when a
    check finds problems (printed to stderr), 2 when the page or a folder cannot be read."""
    parser = argparse.ArgumentParser(
        prog="python -m tlcgcnn.report",
        description="The results page's claims table (docs/results.md) from published results folders.",
        epilog="examples: python -m tlcgcnn.report readme docs/results/paper-cpu docs/results/quickstart "
        "docs/results.md; python -m tlcgcnn.report check (make results-readme runs readme on every "
        "published folder)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{readme,papers,check}")
    rd = sub.add_parser(
        "readme",
        help="rewrite the claims table between the results page's markers, then check it",
        description="Rewrite the block between the results page's markers "
        f"({BEGIN} ... {END}) with the claims of the published folders (in the order the page shows "
        "them, new ones last in the order given), then "
        "check it against their claims.csv. With no folder the block says that nothing is published.",
    )
    rd.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="published folders (docs/results/<name>), then the results page (docs/results.md) last",
    )
    pp = sub.add_parser(
        "papers",
        help="write claims_papers.csv of a published folder and the results page's papers' claims table, then check",
        description="Test the papers' claims declared in DECLARATION (config/claims/<name>.yaml: paper id, the "
        "paper's number, the expected direction, the test) on FOLDER's published tables, write "
        "FOLDER/claims_papers.csv (estimate, 95 % CI, raw p, Holm p and BH q over the one claims family, "
        "verdict) and the block of PAGE between <!-- papers:begin --> and <!-- papers:end -->, then check it.",
    )
    pp.add_argument("declaration", help="the claims declaration, e.g. config/claims/paper-cpu.yaml")
    pp.add_argument("folder", help="the published folder, e.g. docs/results/paper-cpu")
    pp.add_argument("page", help="the results page, e.g. docs/results.md")
    ck = sub.add_parser(
        "check",
        help="check the results page's claims table and the folders it shows against their CSVs",
        description="Check every cell of the results page's claims table against its folder's claims.csv, and "
        "each folder it shows: claims.csv recomputed from its published tables, and every figure its "
        "summary.md links present; and the papers' claims table against claims_papers.csv, recomputed from "
        "its declaration and tables.",
    )
    ck.add_argument("readme", nargs="?", default=RESULTS_PAGE, help=f"the results page (default {RESULTS_PAGE})")
    args = parser.parse_args(argv)
    try:
        if args.command == "readme":
            *folders, readme = args.paths
            if Path(readme).is_dir():
                parser.error(f"the last path must be the README file, not the folder {readme}")
            changed = rewrite_readme(readme, folders)
            print(f"{readme}: results block {'rewritten' if changed else 'unchanged'} ({len(folders)} folder(s))")
            problems = check_readme(readme)
        elif args.command == "papers":
            problems = main_papers([args.declaration, args.folder, args.page])
            print(f"{args.page}: papers' claims written from {args.folder} ({args.declaration})")
        else:
            problems = check_readme(args.readme) + check_papers(args.readme)
            for folder in readme_folders(args.readme):
                problems += check_published(folder)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0
