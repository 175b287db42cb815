"""``tlcgcnn finetune`` end to end on 300 real Materials Project crystals (../shared/data;
skipped where absent): the written config, the Snakemake run it starts (a tiny pretrained
checkpoint, tiny model, few epochs), the t-tests, figures and external set, and the
Snakemake report holding every requested figure."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ATOM_FEATURES, MP500, require_shared

from tlcgcnn import config as C
from tlcgcnn.analysis.stats import read_table
from tlcgcnn.cli import runner
from tlcgcnn.cli.main import main
from tlcgcnn.data import ingest, table
from tlcgcnn.data.targets import Target
from tlcgcnn.features.featurize import FeaturizeParams, featurize
from tlcgcnn.report import figures
from tlcgcnn.train.loop import TrainConfig, train

PARAMS = FeaturizeParams(radius=6.0, max_neighbors=8)  # not the defaults: the run must take the checkpoint's
TRAIN = ["epochs=3", "batch_size=16", "patience=50", "device=cpu", "amp=none", "checkpoint_every=0"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny formation-energy model trained (2 epochs) on rows 300-500 of mp500, which the
    fine-tuning table does not hold."""
    raw = pd.read_csv(require_shared(MP500))
    d = tmp_path_factory.mktemp("pretrained")
    df, _, _ = ingest.ingest_frame(
        raw.iloc[300:][["material_id", "formation_energy_per_atom", "cif"]], ingest.IngestOptions(), progress=False
    )
    table.write(df, d / "structures.parquet")
    featurize(d / "structures.parquet", d / "graphs", PARAMS, progress=False)
    ids = df["material_id"].tolist()
    train(
        table_df=df,
        graph_dir=d / "graphs",
        atom_table_path=ATOM_FEATURES,
        split_ids={"train": ids[:150], "val": ids[150:180], "test": ids[180:]},
        target=Target("ef", "formation_energy_per_atom"),
        model_cfg={"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 8, "radius": PARAMS.radius},
        train_cfg=TrainConfig(epochs=2, batch_size=32, patience=50, device="cpu", amp="none"),
        seed=0,
        out_checkpoint=d / "model.pt",
        progress=False,
        meta={"stage": "pretrain", "mode": "pretrain", "size": "all"},
    )
    return {"model": d / "model.pt", "raw": raw}


@pytest.fixture(scope="module")
def run(pretrained, tmp_path_factory):
    """The command on the first 300 rows (band gap), with an external set of 60 other rows
    plus 100 rows of the table itself; its wall time is recorded."""
    raw = pretrained["raw"]
    d = tmp_path_factory.mktemp("finetune")
    raw.iloc[:300].to_csv(d / "mine.csv", index=False)
    pd.concat([raw.iloc[:100], raw.iloc[440:500]]).to_csv(d / "other.csv", index=False)
    wd = d / "wd"
    args = [
        "finetune",
        "--pretrained",
        str(pretrained["model"]),
        "--data",
        str(d / "mine.csv"),
        "--property",
        "band_gap",
        "--sizes",
        "40",
        "80",
        "--seeds",
        "0",
        "1",
        "--modes",
        "scratch",
        "transfer",
        "--external",
        str(d / "other.csv"),
        "--train-overrides",
        *TRAIN,
        "--name",
        "ft",
        "--workdir",
        str(wd),
        "--cores",
        "2",
    ]
    t0 = time.perf_counter()
    code = main(args)
    seconds = time.perf_counter() - t0
    return {"code": code, "wd": wd, "r": wd / "results" / "ft", "seconds": seconds, "args": args}


@pytest.mark.e2e
def test_finetune_command_end_to_end(run, pretrained, capfd):
    assert run["code"] == 0
    print(f"tlcgcnn finetune wall time: {run['seconds']:.1f} s")
    cfg = yaml.safe_load((run["wd"] / "config.yaml").read_text())
    assert cfg["pretrain"] == [{"name": "pretrained", "checkpoint": str(pretrained["model"].resolve())}]
    assert (
        cfg["featurize"]["radius"] == 6.0
        and cfg["featurize"]["max_neighbors"] == 8
        and cfg["model"]["atom_fea_len"] == 8
    )
    r = run["r"]
    for size in (40, 80):
        for mode in ("scratch", "transfer"):
            cell = r / "finetune" / "band_gap" / f"n{size}" / mode
            assert (cell / "predictions.parquet").exists()
            assert all((cell / "runs" / f"s{s}" / "model.pt").exists() for s in (0, 1))
    tests = read_table(r / "stats" / "ttests.csv")
    assert sorted(tests["size"]) == [40, 80] and set(tests["mode"]) == {"transfer"} and (tests["n_pairs"] == 2).all()
    metrics = read_table(r / "stats" / "metrics.csv")
    transfer = metrics[metrics["mode"] == "transfer"]
    assert (transfer["pretrain_property"] == "formation_energy_per_atom").all() and (
        transfer["pretrain_size"] == 150
    ).all()
    assert (r / "figures" / "learning_curve.png").stat().st_size > 10_000
    # the external set: 100 of its rows are rows of the table, some of them training materials
    ext = read_table(r / "stats" / "external.csv")
    assert len(ext) == 2 * 2 * 2 and (ext["n_external"] == 160).all() and (ext["n_in_training"] > 0).all()
    assert ext["mae_external_no_overlap"].notna().all() and ext["mae_test"].notna().all()
    assert (r / "figures" / "external_parity.png").exists()
    assert not (r / "pretrain").exists()  # the checkpoint source is not trained again


@pytest.mark.e2e
def test_the_written_config_reruns_with_snakemake_as_printed(run):
    """The kept config and the printed command: a second run has nothing to do."""
    cmd = runner.snakemake_command(runner.repo_root(), run["wd"], 1, dry_run=True)
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Nothing to be done" in res.stdout + res.stderr


@pytest.mark.e2e
def test_report_holds_every_requested_figure_and_the_tables(run):
    wanted = figures.requested(C.load(run["wd"] / "config.yaml"))
    assert wanted == ["learning_curve", "external_parity"]
    cmd = [*runner.snakemake_command(runner.repo_root(), run["wd"], 1), "--report", str(run["wd"] / "report.html")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    html = (run["wd"] / "report.html").read_text(errors="replace")
    for stem in wanted:  # each figure, with its caption (the report's results JSON)
        assert f'"filename": "{stem}.png"' in html, stem
        first_words = " ".join(figures.caption(stem, runner.repo_root() / "report").split("\n")[0].split()[:4])
        assert first_words in html, (stem, first_words)
    for t in ("ttests.csv", "external.csv"):
        assert f'"filename": "{t}"' in html, t


def test_finetune_refusals_are_one_line(pretrained, tmp_path, capsys, monkeypatch):
    raw = pretrained["raw"]
    raw.iloc[:50].to_csv(tmp_path / "mine.csv", index=False)
    base = [
        "finetune",
        "--pretrained",
        str(pretrained["model"]),
        "--data",
        str(tmp_path / "mine.csv"),
        "--property",
        "band_gap",
        "--workdir",
        str(tmp_path / "wd"),
    ]
    assert main([*base, "--modes", "transfer"]) == 2
    assert "--modes must include scratch" in capsys.readouterr().err
    assert main([*base, "--train-overrides", "epochz=3"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("tlcgcnn: error: config: train: Additional properties are not allowed ('epochz' was unexpected)")
        and err.count("\n") == 1
    )
    (tmp_path / "junk.pt").write_text("junk")
    assert main([*base[:2], str(tmp_path / "junk.pt"), *base[3:]]) == 2
    assert f"{tmp_path / 'junk.pt'}: not a tlcgcnn checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "wd").exists()  # nothing written before the request is valid
    # a non-editable install: no Snakefile next to the package
    import tlcgcnn

    monkeypatch.setattr(tlcgcnn, "__file__", str(tmp_path / "site-packages" / "tlcgcnn" / "__init__.py"))
    assert main(base) == 2
    assert "not next to the installed package" in capsys.readouterr().err


def test_dry_run_writes_the_config_and_lists_the_jobs(pretrained, tmp_path, capfd):
    raw = pretrained["raw"]
    raw.iloc[:300].to_csv(tmp_path / "mine.csv", index=False)
    code = main(
        [
            "finetune",
            "--pretrained",
            str(pretrained["model"]),
            "--data",
            str(tmp_path / "mine.csv"),
            "--property",
            "band_gap",
            "--modes",
            "scratch",
            "transfer",
            "head_reinit",
            "freeze_convs",
            "--workdir",
            str(tmp_path / "wd"),
            "--dry-run",
        ]
    )
    out = capfd.readouterr()
    assert code == 0, out.err[-2000:]
    cfg = yaml.safe_load((tmp_path / "wd" / "config.yaml").read_text())
    assert cfg["finetune"]["modes"]["freeze_convs"] == {"pretrained": "pretrained", "freeze": 1}
    assert cfg["finetune"]["sizes"] == [50, 100, "all"] and cfg["name"] == "mine_band_gap"
    assert f"--snakefile {runner.repo_root() / 'Snakefile'} --directory {tmp_path / 'wd'}" in out.err
    assert "finetune" in out.out + out.err and "rule pretrain:" not in out.out + out.err
    assert runner.snakemake_command(runner.repo_root(), tmp_path, 1)[0] in (
        str(Path(sys.executable).parent / "snakemake"),
        sys.executable,
    )


@pytest.mark.e2e
def test_snakemake_refuses_a_config_that_does_not_fit_its_checkpoint(run, pretrained, tmp_path):
    """The DAG-parse check, as Snakemake reports it: one message, the file, what differs."""
    cfg = yaml.safe_load((run["wd"] / "config.yaml").read_text())
    cfg["model"]["atom_fea_len"] = 16
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        runner.snakemake_command(runner.repo_root(), wd, 1, dry_run=True), capture_output=True, text=True
    )
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert (
        f"config: pretrain pretrained: checkpoint {pretrained['model'].resolve()} does not fit this configuration"
        in out
    )
    assert "mode transfer: the architecture differs (atom_fea_len: 8 in the checkpoint vs 16 in model)" in out
    assert "Traceback" not in out


def test_refine_takes_a_label_of_the_models_own_quantity_only(pretrained, tmp_path):
    """``--modes refine`` (validate_source): the tiny ΔEf model on a ΔEf label, under an alias
    too; a band-gap label or a log10 transform is refused with the reason."""
    raw = pretrained["raw"]
    raw.iloc[:60].rename(columns={"formation_energy_per_atom": "e_form"}).to_csv(tmp_path / "mine.csv", index=False)
    common = {"pretrained": pretrained["model"], "data": tmp_path / "mine.csv", "modes": ("scratch", "refine")}
    cfg = runner.build_config(prop="e_form", **common)
    assert cfg["finetune"]["modes"]["refine"] == {"pretrained": "pretrained", "validate_source": True}
    assert C.load(cfg).modes["refine"].validate_source
    assert cfg["finetune"]["targets"][0]["property"] == "formation_energy_per_atom"  # the alias resolved
    raw.iloc[:60].to_csv(tmp_path / "mine.csv", index=False)
    with pytest.raises(runner.RunnerError, match="the model predicts formation_energy_per_atom, not band_gap"):
        runner.build_config(prop="band_gap", **common)
    with pytest.raises(runner.RunnerError, match="transform none, not log10"):
        runner.build_config(prop="formation_energy_per_atom", transform="log10", **common)


def test_outputs_name_the_roc_curves_of_a_classification_run(tmp_path):
    """A classification run's summary points to its ROC curves; a regression run's does not."""
    raw = {"name": "mine", "finetune": {"targets": [{"name": "is_stiff", "task": "classification"}]}}
    out = runner.outputs(raw, tmp_path)
    assert out["ROC curves"].endswith("results/mine/figures/roc.png")
    assert out["ROC table"].endswith("results/mine/stats/roc.csv")
    raw["finetune"]["targets"][0]["task"] = "regression"
    assert "ROC curves" not in runner.outputs(raw, tmp_path)
