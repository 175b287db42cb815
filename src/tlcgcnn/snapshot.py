"""Carry an unfinished run's results from one machine to the next.

A long study (``config/paper-cpu.yaml`` is about 7 h on 2 cores) outlives the machine it
started on when that machine is a session's sandbox or a cluster's scratch disk. A snapshot
is one ``.tar.xz`` of what the run has finished that is expensive to redo (fine-tuning
cells, finished seeds, pretrained sources, stats, logs, benchmarks), plus a manifest of
every file with its size, mtime and sha256:

* ``save``: the results folder of a config (``results/<name>``) into
  ``resources/snapshots/<name>.tar.xz``. Left out, each listed with its reason in the
  manifest: the *regenerated* folders (``data/``, ``graphs/``, ``splits/``: ingest,
  featurize and the split rules redo them in minutes, and they are tens of MB to GB), files
  Snakemake marks as incomplete, fine-tuning seeds' weights (``runs/s*/model.pt``: a cell's
  results are its metrics and predictions), the per-seed files of a finished cell (its
  own outputs hold them) and atomic-write temporaries. The resumable state of a run that was
  stopped mid-training (``state.pt``; the loop deletes it when the run ends) travels, so
  a stopped source or seed goes on from its last checkpointed epoch.
* ``restore``: unpack into a clean checkout, run Snakemake for the regenerated files only,
  and give every restored file and every regenerated file whose content is identical (same
  sha256, or the same values up to float rounding by its :mod:`tlcgcnn.fingerprint`, which
  another machine's CPU changes) its place in the run's timeline back: mtimes in the
  recorded order, all newer than the checkout's own files (a fresh clone's scripts are
  newer than any saved result, and Snakemake reruns a job whose output is older than its
  script). Snakemake then sees
  the run exactly as it was left: a ``snakemake -n`` lists only the unfinished jobs. A
  regenerated file whose content differs (the dataset or the featurizer changed) keeps its
  new mtime, newer than every restored file, so everything that depends on it runs again:
  a snapshot can never make stale results look current.

* ``save --live``: the same while Snakemake runs; the running jobs' outputs are left out.
* ``run``: restore if the results folder is empty, run Snakemake, save a live snapshot
  every ``--every`` seconds and a last one when it ends: a machine lost without warning
  loses at most that much work.

Snakemake's own metadata (``.snakemake/``) is not carried: for restored files, a change of a
rule's params or code is not detected. The manifest records the config's sha256 and the
code version; ``restore`` warns when either differs.

The module is torch-free; ``restore`` runs Snakemake in a subprocess.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import io as _io
import json
import logging
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlcgcnn import io
from tlcgcnn.fingerprint import close, fingerprint

log = logging.getLogger(__name__)

MANIFEST = "snapshot.json"
FORMAT = 1
REGENERATED = ("data", "graphs", "splits")  # top-level folders of results/<name> that restore rebuilds
DROPPED = {  # fnmatch pattern on the path relative to results/<name>  ->  reason
    "finetune/*/runs/s*/model.pt": "a fine-tuning seed's weights (the cell keeps its metrics and predictions)",
    "*.tmp": "an atomic-write temporary",
}
DIR_STAMP = ".snakemake_timestamp"  # the file that carries a directory() output's mtime


class SnapshotError(ValueError):
    """A snapshot that cannot be saved or restored; the message says why and what to do."""


@dataclass
class Entry:
    """One file of the results folder: ``path`` is relative to it; ``left_out`` is the reason
    it is not in the archive (``None``: it is)."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    left_out: str | None = None
    fingerprint: dict[str, Any] | None = None  # a regenerated file's content, blind to float rounding (tlcgcnn.fingerprint)

    def as_dict(self) -> dict[str, Any]:
        d = {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256, "left_out": self.left_out}
        return d if self.fingerprint is None else {**d, "fingerprint": self.fingerprint}


@dataclass
class RestoreReport:
    restored: int = 0
    restored_bytes: int = 0
    regenerated_same: list[str] = field(default_factory=list)
    regenerated_changed: list[str] = field(default_factory=list)
    regenerated_missing: list[str] = field(default_factory=list)
    regenerated_trusted: list[str] = field(default_factory=list)
    regenerated_rounding: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def default_archive(name: str, root: str | os.PathLike[str] = ".") -> Path:
    return Path(root) / "resources" / "snapshots" / f"{name}.tar.xz"


def snakemake_records(workdir: str | os.PathLike[str], kind: str = "incomplete") -> dict[str, Path]:
    """Snakemake's per-file records under ``.snakemake/<kind>`` (``incomplete``: outputs of a
    job that has not finished; ``metadata``: what each output was made with), keyed by the
    output's path as Snakemake names it (relative to ``workdir``)."""
    base = Path(workdir) / ".snakemake" / kind
    found: dict[str, Path] = {}
    if not base.is_dir():
        return found
    for dirpath, _, files in os.walk(base):
        for name in files:
            if name == "migration_underway":
                continue
            rel = Path(dirpath, name).relative_to(base)
            encoded = "".join(part.removeprefix("@") for part in rel.parts)
            try:
                found[os.path.normpath(base64.urlsafe_b64decode(encoded).decode())] = Path(dirpath, name)
            except (ValueError, UnicodeDecodeError):
                log.warning("unreadable Snakemake record %s: ignored", rel)
    return found


def _active_locks(workdir: str | os.PathLike[str]) -> list[str]:
    locks = Path(workdir) / ".snakemake" / "locks"
    return sorted(p.name for p in locks.iterdir()) if locks.is_dir() else []


FINISHED_SEEDS = "a finished cell's per-seed files (the cell's metrics and predictions hold them)"


def _left_out(rel: str, incomplete: bool, regenerate: Sequence[str], finished_cells: set[str]) -> str | None:
    if rel.split("/", 1)[0] in regenerate:
        return "regenerated"
    if incomplete:
        return "incomplete (its job had not finished)"
    if "/runs/" in rel and rel.split("/runs/", 1)[0] in finished_cells:
        return FINISHED_SEEDS
    for pattern, reason in DROPPED.items():
        if fnmatch.fnmatch(rel, pattern):
            return reason
    return None


def scan(results_dir: str | os.PathLike[str], workdir: str | os.PathLike[str] = ".", regenerate: Sequence[str] = REGENERATED) -> list[Entry]:
    """Every file under ``results_dir`` with what :func:`save` does with it."""
    results = Path(results_dir)
    incomplete = _incomplete_paths(results, workdir)
    found = []
    for dirpath, dirs, files in os.walk(results):
        dirs.sort()
        for name in sorted(files):
            path = Path(dirpath, name)
            rel = path.relative_to(results).as_posix()
            found.append((path, rel, any(rel == p or rel.startswith(p + "/") for p in incomplete)))
    # a fine-tuning cell whose job finished: its runs/ folder only repeats what it wrote
    finished_cells = {rel.rsplit("/", 1)[0] for _, rel, inc in found if rel.startswith("finetune/") and rel.endswith("/metrics.json") and "/runs/" not in rel and not inc}
    entries = []
    for path, rel, inc in found:
        try:
            st = path.stat()
            digest = io.sha256_file(path)
        except FileNotFoundError:  # a live run removed it (a temporary renamed, a finished run's state.pt)
            continue
        why = _left_out(rel, inc, regenerate, finished_cells)
        entries.append(Entry(rel, st.st_size, st.st_mtime_ns, digest, why, fingerprint(path) if why == "regenerated" else None))
    return entries


def save(
    results_dir: str | os.PathLike[str],
    archive: str | os.PathLike[str],
    *,
    workdir: str | os.PathLike[str] = ".",
    regenerate: Sequence[str] = REGENERATED,
    config_path: str | os.PathLike[str] | None = None,
    live: bool = False,
) -> dict[str, Any]:
    """Write the snapshot of ``results_dir`` (a path relative to ``workdir``, as in the rules)
    to ``archive``; returns its manifest.

    ``live``: take it while Snakemake runs (a checkpoint of a run that may not get the chance
    to stop gracefully). Every kept file is read whole into memory and re-read if it changed
    while being read; Snakemake's incomplete records are read before and after, and an output
    of any job running at either moment is left out. Outputs are written atomically, so what
    a finished job wrote is whole; a running job's ``state.pt`` travels as it last was."""
    from tlcgcnn.provenance import code_version

    results = Path(workdir) / results_dir
    if not results.is_dir():
        raise SnapshotError(f"{results} does not exist: nothing to save (is the config's name right?)")
    locks = _active_locks(workdir)
    if locks and not live:
        raise SnapshotError(
            f"a Snakemake run holds a lock on {Path(workdir).resolve()} ({', '.join(locks)}): stop it first "
            "(SIGTERM lets running jobs finish) so that the snapshot sees finished files only, or save with "
            "--live; a lock left by a killed run is removed with `snakemake --unlock`"
        )
    entries = scan(results, workdir, regenerate)
    contents = _read_kept(results, entries) if live else None
    if contents is not None:
        started = _incomplete_paths(results, workdir)
        for e in entries:
            if e.left_out is None and any(e.path == p or e.path.startswith(p + "/") for p in started):
                e.left_out = LIVE_STARTED
                contents.pop(e.path, None)
    manifest = {
        "format": FORMAT,
        "results_dir": Path(results_dir).as_posix(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": code_version(workdir),  # the checkout that ran the results, which a live save may read from another
        "config": None if config_path is None else {"path": str(config_path), "sha256": io.sha256_file(config_path), "settings_sha256": _settings_sha256(config_path)},
        "regenerated": list(regenerate),
        "files": [e.as_dict() for e in entries],
    }
    with io.atomic_path(archive) as tmp, tarfile.open(tmp, "w:xz", preset=6) as tar:
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, _io.BytesIO(data))
        for e in entries:
            if e.left_out is not None:
                continue
            if contents is None:
                tar.add(results / e.path, arcname=f"files/{e.path}", recursive=False)
                continue
            member = tarfile.TarInfo(f"files/{e.path}")
            member.size, member.mtime = e.size, e.mtime_ns // 1_000_000_000
            tar.addfile(member, _io.BytesIO(contents[e.path]))
    return manifest


LIVE_STARTED = "incomplete (its job started while the snapshot was taken)"
LIVE_GONE = "removed while the snapshot was taken"


def _incomplete_paths(results: Path, workdir: str | os.PathLike[str]) -> set[str]:
    """Snakemake's incomplete outputs, relative to ``results``."""
    return {os.path.normpath(os.path.relpath(p, os.path.relpath(results, workdir))) for p in snakemake_records(workdir)}


def _read_kept(results: Path, entries: list[Entry], attempts: int = 5) -> dict[str, bytes]:
    """The bytes of every kept entry, each read whole while its mtime and size stood still;
    the entry's size, mtime and sha256 are updated to what was read."""
    contents: dict[str, bytes] = {}
    for e in entries:
        if e.left_out is not None:
            continue
        path = results / e.path
        for _ in range(attempts):
            try:
                before = path.stat()
                data = path.read_bytes()
                after = path.stat()
            except FileNotFoundError:
                e.left_out = LIVE_GONE
                break
            if (before.st_mtime_ns, before.st_size, before.st_ino) == (after.st_mtime_ns, after.st_size, after.st_ino) and len(data) == after.st_size:
                e.size, e.mtime_ns, e.sha256 = len(data), after.st_mtime_ns, hashlib.sha256(data).hexdigest()
                contents[e.path] = data
                break
        else:
            raise SnapshotError(f"{path} kept changing while it was read ({attempts} attempts): try again")
    return contents


def _settings_sha256(config_path: str | os.PathLike[str]) -> str:
    """sha256 of the config's settings (its comments and layout may change freely)."""
    import yaml

    return io.sha256_json(yaml.safe_load(Path(config_path).read_text()))


def read_manifest(archive: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with tarfile.open(archive, "r:xz") as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise KeyError(MANIFEST)
            manifest: dict[str, Any] = json.loads(member.read())
    except (OSError, tarfile.TarError, KeyError, json.JSONDecodeError) as err:
        raise SnapshotError(f"{archive}: not a tlcgcnn snapshot ({err})") from None
    if manifest.get("format") != FORMAT:
        raise SnapshotError(f"{archive}: snapshot format {manifest.get('format')!r}, this version reads {FORMAT}")
    return manifest


def regeneration_targets(entries: Iterable[Entry], results_dir: str) -> list[str]:
    """What Snakemake must be asked for to rebuild the regenerated files: a directory()
    output (it holds a ``.snakemake_timestamp``) as a whole, any other file by itself."""
    regen = [e.path for e in entries if e.left_out == "regenerated"]
    dirs = sorted({p.rsplit("/", 1)[0] for p in regen if p.endswith("/" + DIR_STAMP)})
    targets = [f"{results_dir}/{d}" for d in dirs]
    targets += [f"{results_dir}/{p}" for p in regen if not any(p.startswith(d + "/") for d in dirs)]
    return targets


def _snakemake() -> list[str]:
    exe = Path(sys.executable).parent / "snakemake"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]


def restore(
    archive: str | os.PathLike[str],
    *,
    workdir: str | os.PathLike[str] = ".",
    configfile: str | os.PathLike[str] | None = None,
    cores: int = 2,
    force: bool = False,
    regenerate: bool = True,
    trust_regenerated: bool = False,
) -> RestoreReport:
    """Unpack ``archive`` under ``workdir``, rebuild its regenerated files with Snakemake
    (unless ``regenerate`` is False) and restamp the run's files in their recorded order (see
    the module docstring).

    ``trust_regenerated``: a regenerated file whose bytes differ from the snapshot's is
    restamped as if identical (listed in ``regenerated_trusted``), so nothing reruns for it.
    For a run carried to a machine with another CPU, whose floating-point rounding differs in
    the last bits; never for a changed dataset or featurizer."""
    from tlcgcnn.provenance import code_version

    manifest = read_manifest(archive)
    results_dir = manifest["results_dir"]
    results = Path(workdir) / results_dir
    if results.exists() and any(results.iterdir()) and not force:
        raise SnapshotError(
            f"{results} already holds files: a snapshot is restored into a clean results folder "
            "(remove it, or pass --force to overwrite the snapshot's files in it)"
        )
    report = RestoreReport()
    entries = [Entry(**f) for f in manifest["files"]]
    saved_config = manifest.get("config") or {}
    if configfile is not None and saved_config and (
        _settings_sha256(configfile) != saved_config["settings_sha256"] if "settings_sha256" in saved_config else io.sha256_file(configfile) != saved_config["sha256"]
    ):
        report.warnings.append(
            f"{configfile} differs from the config the snapshot was saved with ({saved_config['path']}): "
            "Snakemake cannot tell whether a changed setting concerns a restored result"
        )
    saved_commit, commit = manifest["code"].get("git_commit"), code_version(workdir).get("git_commit")
    if saved_commit and commit and saved_commit != commit:
        report.warnings.append(f"saved at commit {saved_commit[:10]}, restored at {commit[:10]}: a rule whose code changed is not rerun for restored results")
    stored = {e.path: e for e in entries if e.left_out is None}
    stamps: list[Entry] = []  # the files that get their place in the run's timeline back
    with tarfile.open(archive, "r:xz") as tar:
        for member in tar.getmembers():
            if not member.name.startswith("files/"):
                continue
            rel = member.name.removeprefix("files/")
            entry = stored.get(rel)
            if entry is None or not member.isfile():
                raise SnapshotError(f"{archive}: member {member.name} is not in the manifest")
            dest = results / rel
            src = tar.extractfile(member)
            assert src is not None
            with io.atomic_path(dest) as tmp:
                tmp.write_bytes(src.read())
            if io.sha256_file(dest) != entry.sha256:
                raise SnapshotError(f"{archive}: {rel} does not match its sha256 in the manifest (a damaged archive)")
            stamps.append(entry)
            report.restored += 1
            report.restored_bytes += entry.size
    if report.restored != len(stored):
        raise SnapshotError(f"{archive}: {len(stored) - report.restored} files of its manifest are missing from it (a damaged archive)")

    targets = regeneration_targets(entries, results_dir)
    if targets and regenerate:
        cmd = [*_snakemake(), *targets, "--cores", str(cores)]
        if configfile is not None:
            cmd += ["--configfile", str(configfile)]
        log.info("regenerating %d outputs: %s", len(targets), " ".join(cmd))
        res = subprocess.run(cmd, cwd=workdir)
        if res.returncode != 0:
            raise SnapshotError(f"Snakemake could not regenerate {', '.join(targets)} (exit {res.returncode}); see its log above")
    regen = [e for e in entries if e.left_out == "regenerated"]
    bad_dirs = set()
    for e in regen:
        path = results / e.path
        if not path.exists():
            report.regenerated_missing.append(e.path)
        elif io.sha256_file(path) != e.sha256:
            if e.fingerprint is not None and close(e.fingerprint, fingerprint(path)):
                report.regenerated_rounding.append(e.path)  # the same values up to float rounding: another machine
                continue
            if trust_regenerated:
                report.regenerated_trusted.append(e.path)
                continue
            report.regenerated_changed.append(e.path)
        else:
            continue
        bad_dirs.add(e.path.rsplit("/", 1)[0])
    for e in regen:
        folder = e.path.rsplit("/", 1)[0]
        if e.path in report.regenerated_changed or e.path in report.regenerated_missing:
            continue
        if e.path.endswith("/" + DIR_STAMP) and any(b == folder or b.startswith(folder + "/") for b in bad_dirs):
            report.regenerated_changed.append(e.path)  # the directory's content differs: it stays new
            continue
        stamps.append(e)
        if e.path not in report.regenerated_trusted and e.path not in report.regenerated_rounding:
            report.regenerated_same.append(e.path)
    plan = restamp_plan([e.mtime_ns for e in stamps], _newest_mtime_ns(Path(workdir), ["results", results_dir], configfile))
    for e in stamps:
        os.utime(results / e.path, ns=(plan[e.mtime_ns], plan[e.mtime_ns]))
    for rel in report.regenerated_changed:  # newer than every restored file: what depends on it reruns
        if (results / rel).exists():
            os.utime(results / rel)
    return report


STAMP_STEP_NS = 1_000_000  # 1 ms between consecutive restored mtimes: above any filesystem's resolution


def restamp_plan(recorded_ns: Iterable[int], floor_ns: int) -> dict[int, int]:
    """New mtimes for the recorded ones: the same order (ties stay ties), 1 ms apart, all
    after ``floor_ns`` (the newest file of the checkout) and none in the future.

    The recorded mtimes themselves cannot be kept: a clean checkout's files are newer than
    the run's results, and Snakemake reruns a job whose output is older than its script
    ("Code has changed since last execution", whatever its metadata says) or than an input
    (the zoo's checkpoints). Only the order among the run's own files carries meaning."""
    times = sorted(set(recorded_ns))
    start = floor_ns + 1_000_000_000
    late = start + STAMP_STEP_NS * len(times) - time.time_ns()
    if late > 0:  # the checkout changed a moment ago: wait rather than stamp the future
        time.sleep(late / 1e9)
    return {t: start + i * STAMP_STEP_NS for i, t in enumerate(times)}


_NOT_CHECKOUT = {".git", ".snakemake", ".venv", "venv", "__pycache__", ".pytest_cache", ".mypy_cache", "node_modules"}


def _newest_mtime_ns(workdir: Path, results: Sequence[str], configfile: str | os.PathLike[str] | None) -> int:
    """The newest mtime among the checkout's files (workflow, scripts, configs, resources:
    what a job may depend on), outside the results folders and tool folders."""
    skip = {os.path.normpath(workdir / r) for r in results}
    newest = Path(configfile).stat().st_mtime_ns if configfile is not None else 0
    for dirpath, dirs, files in os.walk(workdir):
        dirs[:] = [d for d in dirs if d not in _NOT_CHECKOUT and os.path.normpath(os.path.join(dirpath, d)) not in skip]
        for name in files:
            try:
                newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime_ns)
            except FileNotFoundError:
                continue
    return newest


def checkpointed_run(
    command: Sequence[str],
    results_dir: str,
    archive: str | os.PathLike[str],
    *,
    every_s: float,
    workdir: str | os.PathLike[str] = ".",
    config_path: str | os.PathLike[str] | None = None,
    cores: int = 2,
) -> int:
    """Run ``command`` (Snakemake) and save a live snapshot of ``results_dir`` every
    ``every_s`` seconds while it runs and a last one when it ends, so that a machine lost
    without warning loses at most ``every_s`` of work. SIGTERM and SIGINT are passed on to
    the command (Snakemake then lets its running jobs finish). After each snapshot the log
    says how far the run is (:func:`tlcgcnn.progress.progress_line`; ``cores`` for its wall
    time). Returns the command's exit status."""
    import signal

    def checkpoint(live: bool) -> None:
        try:
            manifest = save(results_dir, archive, workdir=workdir, config_path=config_path, live=live)
        except SnapshotError as err:  # a failed checkpoint must not stop the run
            log.warning("snapshot not saved: %s", err)
            return
        kept = [f for f in manifest["files"] if f["left_out"] is None]
        log.info("snapshot saved to %s: %d files (%s)", archive, len(kept), "live" if live else "final")
        if config_path is not None:
            try:  # how far the run is, for a person reading the log (never fails the run)
                from . import progress
                from .config import load

                cfg = load(config_path)
                log.info("progress: %s", progress.progress_line(cfg, Path(workdir) / results_dir, progress.default_parallel(cfg, cores)))
            except Exception as err:  # noqa: BLE001 - a log line must not stop a long run
                log.warning("progress not estimated: %s", err)

    proc = subprocess.Popen(list(command), cwd=workdir)
    handlers = {sig: signal.signal(sig, lambda signum, _frame: proc.send_signal(signum)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                rc = proc.wait(timeout=every_s)
                break
            except subprocess.TimeoutExpired:
                if (Path(workdir) / results_dir).is_dir():
                    checkpoint(live=True)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if (Path(workdir) / results_dir).is_dir():
        checkpoint(live=bool(_active_locks(workdir)))  # a killed Snakemake leaves its lock behind
    return rc


def _summary(manifest: dict[str, Any], cells_total: int | None = None, sources_total: int | None = None) -> str:
    files = manifest["files"]
    kept = [f for f in files if f["left_out"] is None]
    reasons: dict[str, list[int]] = {}
    for f in files:
        if f["left_out"] is not None:
            n, b = reasons.setdefault(f["left_out"], [0, 0])
            reasons[f["left_out"]] = [n + 1, b + f["size"]]
    lines = [
        f"snapshot of {manifest['results_dir']} saved {manifest['created_utc']} at commit {str(manifest['code'].get('git_commit'))[:10]}"
        + (" (uncommitted changes)" if manifest["code"].get("git_dirty") else ""),
        f"  in the archive: {len(kept)} files, {sum(f['size'] for f in kept) / 1e6:.1f} MB",
    ]
    lines += [f"  left out, {why}: {n} files, {b / 1e6:.1f} MB" for why, (n, b) in sorted(reasons.items())]
    cells = sorted({f["path"].rsplit("/", 1)[0] for f in kept if f["path"].startswith("finetune/") and f["path"].endswith("/metrics.json") and "/runs/" not in f["path"]})
    seeds = [f for f in kept if "/runs/s" in f["path"] and f["path"].endswith("/metrics.json")]
    sources = [f for f in kept if f["path"].startswith("pretrain/") and f["path"].endswith("/model.pt")]
    of_cells = f" of {cells_total}" if cells_total is not None else ""
    of_sources = f" of {sources_total}" if sources_total is not None else ""
    lines.append(f"  finished: {len(cells)}{of_cells} fine-tuning cells (+ {len(seeds)} seeds of unfinished ones), {len(sources)}{of_sources} pretrained sources")
    return "\n".join(lines)


TRUST_HELP = (
    "restamp regenerated files whose bytes differ from the snapshot's as if identical, so nothing reruns for them: "
    "for a run carried to a machine whose CPU rounds floats differently in the last bits, never for a changed dataset or featurizer"
)


def _print_report(rep: RestoreReport, configfile: str, cores: int, *, then: bool) -> None:
    for w in rep.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"restored {rep.restored} files ({rep.restored_bytes / 1e6:.1f} MB)")
    print(f"regenerated {len(rep.regenerated_same)} files identical to the snapshot's (restamped in the run's order)")
    listed = (
        ("differ from the snapshot; what depends on them will run again (--trust-regenerated if only the machine differs)", rep.regenerated_changed),
        ("were not rebuilt as in the snapshot; what depends on them will run again", rep.regenerated_missing),
        ("differ from the snapshot's bytes but hold the same values up to float rounding (another machine): restamped in the run's order", rep.regenerated_rounding),
        ("differ from the snapshot and were trusted (--trust-regenerated): restamped as if identical", rep.regenerated_trusted),
    )
    for what, paths in listed:
        if paths:
            print(f"{len(paths)} regenerated files {what}: {', '.join(paths[:5])}" + (" ..." if len(paths) > 5 else ""))
    if then:
        print(f"continue with: snakemake --cores {cores} --configfile {configfile}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tlcgcnn.snapshot", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (("save", "write the snapshot of a config's results folder"), ("restore", "restore a snapshot into a clean checkout")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--configfile", required=True, help="the run's config (its name gives results/<name>)")
        p.add_argument("--archive", help="default: resources/snapshots/<name>.tar.xz")
        if name == "restore":
            p.add_argument("--cores", type=int, default=2, help="for Snakemake's regeneration of data/, graphs/ and splits/")
            p.add_argument("--force", action="store_true", help="restore into a results folder that already holds files")
            p.add_argument("--trust-regenerated", action="store_true", help=TRUST_HELP)
        else:
            p.add_argument("--live", action="store_true", help="save while Snakemake runs (the running jobs' outputs are left out)")
    run = sub.add_parser(
        "run",
        help="restore the snapshot if the results folder is empty, run Snakemake, and save a snapshot every --every seconds and at the end",
    )
    run.add_argument("--configfile", required=True)
    run.add_argument("--archive", help="default: resources/snapshots/<name>.tar.xz")
    run.add_argument("--cores", type=int, default=2)
    run.add_argument("--trust-regenerated", action="store_true", help=TRUST_HELP)
    run.add_argument("--every", type=float, default=1800.0, help="seconds between live snapshots (default 1800)")
    run.add_argument("snakemake_args", nargs="*", help="more Snakemake arguments (after --)")
    show = sub.add_parser("show", help="what a snapshot holds")
    show.add_argument("archive")
    show.add_argument("--configfile", help="the run's config: also say how many of its cells and sources are finished")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "run":
        own = sorted({a.split("=")[0] for a in args.snakemake_args} & {"--trust-regenerated", "--every", "--archive"})
        if own:  # after `--` they would go to Snakemake, not to this command
            parser.error(f"{', '.join(own)} is an option of `snapshot run`, not of Snakemake: put it before `--`")
    try:
        from tlcgcnn.config import load

        if args.command == "show":
            cfg = load(args.configfile) if args.configfile else None
            totals = (len(cfg.cells()), len(cfg.trained_pretrain_names)) if cfg is not None else (None, None)
            print(_summary(read_manifest(args.archive), *totals))
            return 0

        name = load(args.configfile).name
        archive = Path(args.archive) if args.archive else default_archive(name)
        if args.command == "run":
            results = Path("results") / name
            if archive.exists() and not (results.is_dir() and any(results.iterdir())):
                rep = restore(archive, configfile=args.configfile, cores=args.cores, trust_regenerated=args.trust_regenerated)
                _print_report(rep, args.configfile, args.cores, then=False)
                if rep.regenerated_changed:  # running now would redo restored work, and the next save would overwrite the archive
                    print(
                        f"stopped before running: {len(rep.regenerated_changed)} rebuilt files differ from the snapshot, so restored jobs "
                        f"would run again (`snakemake -n --configfile {args.configfile}` lists them). Run this command again to go on "
                        f"anyway (results/{name} is no longer empty, so it does not restore again), or remove results/{name} and "
                        "add --trust-regenerated if nothing but the machine changed.",
                        file=sys.stderr,
                    )
                    return 3
            cmd = [*_snakemake(), "--cores", str(args.cores), "--configfile", args.configfile, "--rerun-incomplete", *args.snakemake_args]
            return checkpointed_run(cmd, results.as_posix(), archive, every_s=args.every, config_path=args.configfile, cores=args.cores)
        if args.command == "save":
            manifest = save(f"results/{name}", archive, config_path=args.configfile, live=args.live)
            print(_summary(manifest))
            print(f"wrote {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
            return 0
        rep = restore(archive, configfile=args.configfile, cores=args.cores, force=args.force, trust_regenerated=args.trust_regenerated)
        _print_report(rep, args.configfile, args.cores, then=True)
        return 0
    except SnapshotError as err:
        print(f"tlcgcnn.snapshot: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
