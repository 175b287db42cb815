"""The figure registry: labels, which figures a config requests, and every figure drawn."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

from tlcgcnn import config as C
from tlcgcnn.analysis import stats
from tlcgcnn.report import figures
from tlcgcnn.report.figures import labels

PAPER_FIGURES = [
    "ef_eg_density",
    "subset_scaling",
    "improvement",
    "freeze_heatmap",
    "protocol_sensitivity",
    "multitask",
    "multitask_sources",
    "pretrain_size",
    "models",
    "roc",
]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())


def requested(raw: dict) -> list[str]:
    """The figures a raw config requests (the registry reads the typed config)."""
    return figures.requested(C.load(raw))


# ----------------------------------------------------------------------------- labels
def test_scheme_says_what_transfer_does_to_the_layers():
    assert labels.scheme(0, "none") == "all layers fine-tuned"
    assert labels.scheme(0, "head") == "all layers fine-tuned, head re-initialised"
    assert labels.scheme(0, "unfrozen") == "embedding kept, convs and head re-initialised"
    assert labels.scheme(1, "unfrozen") == "embedding + 1 conv frozen, rest re-initialised"
    assert labels.scheme(2, "unfrozen") == "embedding + 2 convs frozen, rest re-initialised"
    assert labels.scheme(3, "none") == "embedding + 3 convs frozen, rest fine-tuned"
    assert labels.scheme(2, "head") == "embedding + 2 convs frozen, head re-initialised"
    assert labels.scheme(np.nan, None) == labels.scheme(0.0, np.nan) == "all layers fine-tuned"
    every = {labels.scheme(f, r) for f in range(4) for r in labels.REINIT}
    assert len(every) == 12 and not any("only" in s for s in every)
    with pytest.raises(ValueError, match="unknown reinit 'all'"):
        labels.scheme(0, "all")
    assert sorted([(2, "head"), (0, "head"), (0, "none"), (2, "none")], key=lambda x: labels.scheme_key(*x)) == [
        (0, "none"),
        (0, "head"),
        (2, "none"),
        (2, "head"),
    ]
    assert (
        labels.fine_tunes_all(0, "none")
        and not labels.fine_tunes_all(0, "head")
        and not labels.fine_tunes_all(1, "none")
    )


def test_mode_and_source_labels():
    row = {
        "family": "transfer",
        "pretrain_property": "formation_energy_per_atom+band_gap+efermi",
        "pretrain_subset": "all",
        "pretrain_size": 500.0,
        "freeze": 0,
        "reinit": "head",
    }
    assert labels.mode_label(row) == "TL MT (ΔEf + Eg + E_F), n=500: all layers fine-tuned, head re-initialised"
    row = {
        "family": "transfer",
        "pretrain_property": "formation_energy_per_atom",
        "pretrain_subset": "metal",
        "pretrain_size": None,
        "freeze": 2,
        "reinit": "unfrozen",
    }
    assert labels.mode_label(row) == "TL ΔEf, metals: embedding + 2 convs frozen, rest re-initialised"
    assert labels.mode_label({"family": "scratch", "model_kind": "attention"}) == "attention scratch"
    assert labels.mode_label({"family": "scratch", "model_kind": "cgcnn"}) == "CGCNN scratch"
    assert labels.mode_label({"family": "baseline", "model_kind": "rf"}) == "RF"
    assert labels.source_label(None) == "none"


def test_labels_name_the_fine_tuning_protocol():
    row = {
        "family": "transfer",
        "pretrain_property": "formation_energy_per_atom",
        "pretrain_subset": "all",
        "pretrain_size": None,
        "freeze": 0,
        "reinit": "head",
        "backbone_lr_scale": 0.1,
        "lr": 3e-4,
    }
    assert labels.mode_label(row) == "TL ΔEf: all layers fine-tuned, head re-initialised, pretrained layers at 0.1× lr"
    assert (
        labels.mode_label(row, ("lr",))
        == "TL ΔEf: all layers fine-tuned, head re-initialised, pretrained layers at 0.1× lr, lr 3e-4"
    )
    assert labels.mode_label({**row, "backbone_lr_scale": 1.0}) == "TL ΔEf: all layers fine-tuned, head re-initialised"
    kept = {**row, "reinit": "none", "backbone_lr_scale": 1.0, "validate_source": True}
    assert labels.mode_label(kept) == "TL ΔEf: all layers fine-tuned, source kept where no epoch beats it"
    assert labels.mode_label({**kept, "validate_source": float("nan")}) == "TL ΔEf: all layers fine-tuned"
    runs = pd.DataFrame(
        [
            {
                "mode": "scratch",
                "family": "scratch",
                "model_kind": "cgcnn",
                "lr": 1e-3,
                "epochs": 100,
                "warmup_epochs": 0.0,
            },
            {**row, "mode": "ef_head", "epochs": 100, "warmup_epochs": 0.0},
            {**row, "mode": "ef_warm", "backbone_lr_scale": 1.0, "lr": 3e-4, "epochs": 100, "warmup_epochs": 2.0},
            {"mode": "rf", "family": "baseline", "model_kind": "rf"},
        ]
    )
    assert labels.varying_settings(runs) == ("lr", "warmup_epochs")  # epochs are the same everywhere
    assert labels.mode_labels(runs) == {
        "scratch": "CGCNN scratch, lr 1e-3, warm-up 0 epochs",
        "ef_head": (
            "TL ΔEf: all layers fine-tuned, head re-initialised, pretrained layers at 0.1× lr, "
            "lr 3e-4, warm-up 0 epochs"
        ),
        "ef_warm": "TL ΔEf: all layers fine-tuned, head re-initialised, lr 3e-4, warm-up 2 epochs",
        "rf": "RF",
    }
    assert (
        labels.protocol_labels(runs)["ef_warm"]
        == "all layers fine-tuned, head re-initialised, lr 3e-4, warm-up 2 epochs"
    )


# -------------------------------------------------------------------------- requested
def test_requested_on_the_shipped_configs():
    small = requested(load("paper-small"))
    targets = [t["name"] for t in load("paper-small")["finetune"]["targets"]]
    assert small == ["learning_curve", *[f"learning_curve_{t}" for t in targets], *PAPER_FIGURES]
    # per-seed configs: their records lack the mode fields the paper figures read
    assert requested(load("mp500")) == ["learning_curve"]
    assert requested(load("config")) == ["learning_curve"]
    assert "roc" in requested(load("paper-cpu")) and "roc" in small


def test_roc_is_requested_where_a_target_is_a_classifier():
    """The ROC figure needs a classification target only (stats/roc.csv reads the cells'
    predictions, not the paper tables): not without one, and with one also in a per-seed config."""
    small = load("paper-small")
    small["finetune"]["targets"] = [t for t in small["finetune"]["targets"] if t.get("task") != "classification"]
    assert "roc" not in requested(small)
    cfg = load("config")
    cfg["finetune"]["targets"].append({"name": "metal", "property": "is_metal", "task": "classification"})
    assert requested(cfg) == ["learning_curve", "roc"]
    assert figures.input_paths("roc", "results/x") == {
        "roc": "results/x/stats/roc.csv",
        "metrics": "results/x/stats/metrics.csv",
        "tests": "results/x/stats/ttests.csv",
    }


def test_a_figure_is_requested_only_where_the_config_has_what_it_needs():
    base = load("paper-small")

    def without(modes: set[str]) -> list[str]:
        cfg = copy.deepcopy(base)
        ft = cfg["finetune"]
        ft["modes"] = {m: s for m, s in ft["modes"].items() if m not in modes}
        for t in ft["targets"]:
            if t.get("modes"):
                t["modes"] = [m for m in t["modes"] if m not in modes]
        return requested(cfg)

    assert "models" not in without({"attention"})
    assert "freeze_heatmap" not in without(
        {"ef_freeze1", "ef_freeze2", "ef_freeze3", "ef_head", "mt_freeze2", "mt_head", "ef_ridge"}
    )
    # frozen features beside fine-tuning all layers of the same source: two schemes
    assert "freeze_heatmap" in without({"ef_freeze1", "ef_freeze2", "ef_freeze3", "ef_head", "mt_freeze2", "mt_head"})
    # one scheme less still leaves several schemes of one source
    assert "freeze_heatmap" in without({"ef_freeze1", "mt_head"})
    assert "multitask" not in without({"mt_ft"})
    assert "pretrain_size" not in without({"ef200_ft", "ef100_ft"})
    assert "pretrain_size" in without({"ef100_ft"})
    no_transfer = without({m for m, s in base["finetune"]["modes"].items() if s.get("pretrained")})
    assert {"improvement", "freeze_heatmap", "multitask", "pretrain_size"}.isdisjoint(no_transfer)
    assert "models" in no_transfer

    cfg = copy.deepcopy(base)
    cfg["pretrain"] = [p for p in cfg["pretrain"] if p["name"] in ("ef_all", "mt_all", "eg_all")]
    cfg["finetune"]["modes"] = {
        m: s for m, s in cfg["finetune"]["modes"].items() if s.get("pretrained") in (None, "ef_all", "mt_all", "eg_all")
    }
    got = requested(cfg)
    assert "subset_scaling" not in got and "pretrain_size" not in got and "multitask" in got

    mp = load("mp500")
    mp["finetune"]["group_seeds"] = True
    assert requested(mp) == ["learning_curve", "learning_curve_gap_nonmetal", "ef_eg_density", "improvement"]
    # two ways of fine-tuning one source: the protocol figure (another source's mode is no choice)
    mp["finetune"]["modes"]["slow"] = {"pretrained": "ef_all", "backbone_lr_scale": 0.1, "train": {"lr": 0.0003}}
    assert "protocol_sensitivity" in requested(mp)
    mp["finetune"]["targets"][0]["modes"] = ["scratch", "slow"]
    assert "protocol_sensitivity" not in requested(mp)
    del mp["finetune"]["targets"][0]["modes"]
    mp["finetune"]["targets"][0]["property"] = "k_vrh"
    assert "ef_eg_density" not in requested(mp)


def test_resolve_and_wildcard_pattern():
    import re

    fig, target = figures.resolve("learning_curve_log_kvrh")
    assert fig.name == "target_curve" and target == "log_kvrh"
    assert figures.resolve("learning_curve") == (figures.REGISTRY["learning_curve"], None)
    assert figures.subcategory("models") is None and figures.category("models") == "Models"
    with pytest.raises(KeyError, match="no registered figure has the file name 'nope'"):
        figures.resolve("nope")
    pattern = figures.stem_pattern(C.load(load("paper-small")))
    assert re.fullmatch(pattern, "learning_curve_metal_cls") and re.fullmatch(pattern, "models")
    assert not re.fullmatch(pattern, "learning_curve_unknown") and not re.fullmatch(pattern, "nope")
    assert figures.input_paths("ef_eg_density", "results/x") == {
        "table": "results/x/data/structures.parquet",
        "corr": "results/x/stats/ef_eg_correlation.json",
    }


def test_every_figure_has_its_caption():
    from docutils.core import publish_parts

    for stem in figures.stems(C.load(load("paper-small"))):
        text = figures.caption(stem, ROOT / "report")
        assert len(text) > 50 and "{{" not in text, stem
        html = publish_parts(text, writer="html", settings_overrides={"report_level": 2, "halt_level": 2})["body"]
        assert "system-message" not in html, stem
    with pytest.raises(FileNotFoundError, match="caption of figure 'models' not found"):
        figures.caption("models", ROOT / "docs")
    assert "snakemake.params.caption" in (ROOT / "report" / "figure.rst").read_text()


# ------------------------------------------------------------------------------- draw
MODES = {
    "scratch": dict(family="scratch", model_kind="cgcnn"),
    "attention": dict(family="scratch", model_kind="attention"),
    "ef_ft": dict(
        family="transfer",
        pretrained="ef",
        pretrain_property="formation_energy_per_atom",
        pretrain_size=500,
        freeze=0,
        reinit="none",
        gain=0.8,
    ),
    "ef_head": dict(
        family="transfer",
        pretrained="ef",
        pretrain_property="formation_energy_per_atom",
        pretrain_size=500,
        freeze=0,
        reinit="head",
        gain=0.9,
        backbone_lr_scale=0.1,
    ),
    "ef_freeze2": dict(
        family="transfer",
        pretrained="ef",
        pretrain_property="formation_energy_per_atom",
        pretrain_size=500,
        freeze=2,
        reinit="unfrozen",
        gain=1.05,
    ),
    "ef200_ft": dict(
        family="transfer",
        pretrained="ef200",
        pretrain_property="formation_energy_per_atom",
        pretrain_size=200,
        freeze=0,
        reinit="none",
        gain=0.85,
    ),
    "mt_ft": dict(
        family="transfer",
        pretrained="mt",
        pretrain_property="formation_energy_per_atom+band_gap+efermi",
        pretrain_size=500,
        freeze=0,
        reinit="none",
        gain=0.75,
    ),
    "rf": dict(family="baseline", model_kind="rf", gain=1.2),
}


def _runs() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for target, prop, task, sizes, modes in (
        ("gap", "band_gap", "regression", (50, 150), list(MODES)),
        ("metal", "is_metal", "classification", (100,), ["scratch", "ef_ft", "rf"]),
    ):
        for size in sizes:
            for seed in range(4):
                noise = 0.02 * rng.normal()
                for mode in modes:
                    m = MODES[mode]
                    err = (
                        (0.3 if task == "classification" else 1.0 / np.sqrt(size / 50)) * m.get("gain", 1.0)
                        + noise
                        + 0.01 * rng.normal()
                    )
                    rows.append(
                        {
                            "target": target,
                            "property": prop,
                            "transform": "none",
                            "task": task,
                            "size": size,
                            "seed": seed,
                            "mode": mode,
                            "family": m["family"],
                            "model_kind": m.get("model_kind", "cgcnn"),
                            "freeze": m.get("freeze", 0),
                            "reinit": m.get("reinit", "none"),
                            "pretrained": m.get("pretrained"),
                            "pretrain_property": m.get("pretrain_property"),
                            "backbone_lr_scale": m.get("backbone_lr_scale", 1.0 if m.get("pretrained") else None),
                            "best_val_mae": err * (1.2 if mode == "ef_ft" else 1.0) + 0.01 * rng.normal(),
                            "n_val": 60,
                            "pretrain_subset": "all" if m["family"] == "transfer" else None,
                            "pretrain_size": m.get("pretrain_size"),
                            "error": err,
                            "mae": err,
                            "n_params": 1000 if m["family"] != "baseline" else None,
                            "n_train": size,
                        }
                    )
    return pd.DataFrame(rows)


def test_every_registered_figure_draws(tmp_path, monkeypatch):
    """Every figure of the registry draws from the fixtures and passes the figure-quality
    guard on its way out (units on every axis, legends of at most 8, at most 3,000 px)."""
    from PIL import Image

    from tlcgcnn.analysis import roc
    from tlcgcnn.report.figures import curves, external, models, quality, transfer
    from tlcgcnn.report.figures import roc as roc_figure

    def nothing_to_draw(ax, text):
        raise AssertionError(f"placeholder panel drawn: {text}")

    for module in (curves, external, models, transfer, roc_figure):  # every figure has its data: no placeholder
        monkeypatch.setattr(module, "empty", nothing_to_draw)
    checked, check = [], quality.check

    def recorded(fig, name):
        checked.append(name)
        check(fig, name)

    monkeypatch.setattr(quality, "check", recorded)
    res = tmp_path / "results"
    (res / "stats").mkdir(parents=True)
    (res / "data").mkdir()
    runs = _runs()
    runs.to_csv(res / "stats" / "metrics.csv", index=False)
    tests = stats.error_tests(runs)
    tests.to_csv(res / "stats" / "ttests.csv", index=False)
    stats.model_summary(runs).to_csv(res / "stats" / "models.csv", index=False)
    protocol = stats.protocol_table(runs, mode_order=list(MODES))
    assert (
        set(protocol["target"]) == {"gap"} and protocol["selected"].sum() == 2
    )  # 2 sizes; metal: ef_ft alone, no choice
    protocol.to_csv(res / "stats" / "protocol.csv", index=False)
    # the selected modes' tests (their own family) beside the others: the figures read one test per mode
    tests = pd.concat([tests, stats.selected_tests(runs, protocol)], ignore_index=True)
    tests.to_csv(res / "stats" / "ttests.csv", index=False)
    pre = pd.DataFrame(
        [
            {
                "property": "formation_energy_per_atom",
                "task": "regression",
                "subset": s,
                "n_train": n,
                "mae": 0.2 * (100 / n) ** 0.3 * f,
            }
            for s, f in (("all", 1.0), ("metal", 1.2), ("nonmetal", 0.9))
            for n in (100, 200, 500)
        ]
    )
    pre.to_csv(res / "stats" / "pretrain.csv", index=False)
    mt = pd.DataFrame(
        [
            {
                "property": p,
                "size": n,
                "mt_source": f"mt_{n}",
                "st_source": f"{p}_{n}",
                "n_test": 200,
                "mae_mt": m * (100 / n) ** 0.3,
                "mae_st": 1.1 * m * (100 / n) ** 0.3,
                "change_pct": -9.1,
                "spearman_mt": 0.9,
                "spearman_st": 0.89,
                "t": -2.5,
                "p": 0.01,
                "p_holm": 0.04,
                "holm_family": "multitask_vs_single",
            }
            for p, m in (("formation_energy_per_atom", 0.1), ("band_gap", 0.4))
            for n in (100, 500)
        ]
    )
    mt.to_csv(res / "stats" / "multitask.csv", index=False)
    rng = np.random.default_rng(1)
    # the classifier's cells: ROC curves computed from generated test predictions
    cells, paths = [], []
    for mode, shift in (("scratch", 0.5), ("ef_ft", 1.0), ("rf", 1.5)):
        y = (np.arange(50) % 3 == 0).astype(float)
        paths.append(res / f"metal_{mode}.parquet")
        pd.concat(
            [
                pd.DataFrame({"y_true": y, "y_pred": 1 / (1 + np.exp(-shift * (2 * y - 1) - rng.normal(0, 1, 50)))})
                for _ in range(4)
            ],
            keys=range(4),
            names=["seed", "i"],
        ).reset_index().to_parquet(paths[-1])
        cells.append({"target": "metal", "size": 100, "mode": mode})
    roc.write_table(cells, paths, res / "stats" / "roc.csv")
    ef = rng.uniform(-3, 0, 400)
    table = pd.DataFrame({"formation_energy_per_atom": ef, "band_gap": np.clip(-ef + rng.normal(0, 0.5, 400), 0, None)})
    table.to_parquet(res / "data" / "structures.parquet")
    stats.correlation(res / "data" / "structures.parquet", res / "stats" / "ef_eg_correlation.json")
    y = rng.normal(1.0, 0.5, 40)
    ext_preds = pd.DataFrame(
        [
            {
                "external": "lab",
                "target": "gap",
                "size": str(n),
                "mode": m,
                "seed": s,
                "material_id": f"x{i}",
                "y_true": y[i],
                "y_pred": y[i] + rng.normal(0, 0.2),
                "in_training": i < 6,
            }
            for n in (50, 100)
            for m in ("scratch", "tl_ef")
            for s in (0, 1)
            for i in range(40)
        ]
    )
    ext_preds.to_parquet(res / "stats" / "external_predictions.parquet")
    ext = (
        ext_preds.assign(err=(ext_preds["y_pred"] - ext_preds["y_true"]).abs())
        .groupby(["external", "target", "size", "mode", "seed"])
        .agg(mae_external=("err", "mean"))
        .reset_index()
    )
    ext.assign(
        property="band_gap",
        transform="none",
        n_external=40,
        n_in_training=6,
        mae_external_no_overlap=ext["mae_external"] * 1.1,
        mae_test=0.3,
    ).to_csv(res / "stats" / "external.csv", index=False)

    two_targets = {
        "name": "two",
        "dataset": {"path": "data.csv"},
        "finetune": {
            "targets": [{"name": "gap", "property": "band_gap"}, {"name": "metal", "property": "band_gap"}],
            "sizes": [10],
            "seeds": [0],
            "modes": {"scratch": {}},
        },
    }
    stems = figures.stems(C.load(two_targets))
    assert set(stems) == {
        "learning_curve",
        "learning_curve_gap",
        "learning_curve_metal",
        "external_parity",
        *PAPER_FIGURES,
    }
    for stem in stems:
        png, pdf = tmp_path / f"{stem}.png", tmp_path / f"{stem}.pdf"
        figures.draw(
            stem, figures.input_paths(stem, str(res)), png, pdf, {"gap": "PBE gap", "metal": "metal / non-metal"}
        )
        assert png.stat().st_size > 10_000 and pdf.stat().st_size > 1_000, stem
        with Image.open(png) as im:
            assert max(im.size) <= quality.MAX_PIXELS, (stem, im.size)
    assert sorted(checked) == sorted(stems)  # the guard saw every figure
    with pytest.raises(KeyError, match=r"needs inputs \['corr'\]"):
        figures.draw(
            "ef_eg_density", {"table": res / "data" / "structures.parquet"}, tmp_path / "x.png", tmp_path / "x.pdf"
        )


def test_learning_curve_of_size_all_sits_at_the_mean_training_size(tmp_path):
    """config/zoo.yaml fine-tunes on the whole pool (size "all"): the curve is drawn at the
    runs' mean training-set size instead of failing on a text x value."""
    from tlcgcnn.report.figures.curves import learning_curve

    rng = np.random.default_rng(0)
    rows = [
        {
            "target": t,
            "size": "all",
            "mode": m,
            "seed": s,
            "mae": 0.06 + 0.01 * rng.random(),
            "n_train": 2300 + s,
            "property": "k_vrh",
            "transform": "log10",
        }
        for t in ("log_kvrh", "hse_gap")
        for m in ("scratch", "ef_ft")
        for s in range(3)
    ]
    tests = pd.DataFrame(
        [{"target": "log_kvrh", "size": "all", "p_holm": 0.01, "mae_mode": 0.06, "mae_baseline": 0.07}]
    )
    learning_curve(pd.DataFrame(rows), tests, tmp_path / "lc.png", tmp_path / "lc.pdf")
    assert (tmp_path / "lc.png").stat().st_size > 1000 and (tmp_path / "lc.pdf").exists()


def test_many_targets_wrap_into_rows_of_three(tmp_path):
    """paper-cpu has 9 targets: the pooled learning curve and the freezing heatmap were one
    row of 9 panels (9,328 and 14,683 px wide, 843 / 739 px high, legends over the curves).
    Panels now wrap into rows of 3, with one legend under them once modes are many."""
    from matplotlib.image import imread

    from tlcgcnn.report.figures.curves import learning_curve
    from tlcgcnn.report.figures.transfer import freeze_heatmap, improvement, protocol_sensitivity

    gap = _runs().query("target == 'gap'")
    many = pd.concat([gap.assign(target=f"t{i}") for i in range(7)], ignore_index=True)
    # more modes than one panel's legend can hold: the same runs under other source names
    many = pd.concat(
        [many, many[many["family"] == "transfer"].assign(mode=lambda d: d["mode"] + "_b", pretrain_size=900)],
        ignore_index=True,
    )
    tests = stats.error_tests(many)
    for name, draw in (
        ("lc", lambda png, pdf: learning_curve(many, tests, png, pdf)),
        ("freeze", lambda png, pdf: freeze_heatmap(many, tests, {}, png, pdf)),
        ("improvement", lambda png, pdf: improvement(many, tests, {}, png, pdf)),
        ("protocol", lambda png, pdf: protocol_sensitivity(stats.protocol_table(many), many, {}, png, pdf)),
    ):
        png = tmp_path / f"{name}.png"
        draw(png, tmp_path / f"{name}.pdf")
        h, w = imread(png).shape[:2]
        assert w / h < 2.0, (name, w, h)  # 3 columns × 3 rows (+ the legend), not 7 × 1
        assert max(w, h) <= 3000, (name, w, h)  # protocol_sensitivity was 6,303 × 15,993 px


def test_learning_curve_draws_a_classifier_by_its_error(monkeypatch):
    """A classifier's runs have no MAE (paper-cpu's metal / non-metal panel was empty): the
    pooled learning curve draws its 1 − ROC-AUC."""
    from tlcgcnn.report.figures import curves

    drawn = {}
    monkeypatch.setattr(curves, "finish", lambda fig, png, pdf: drawn.update(axes=fig.axes))
    runs = _runs().query("target == 'metal'").assign(mae=np.nan)
    # and a run of classification targets only, whose records have no MAE column at all
    for table in (runs, runs.drop(columns="mae")):
        curves.learning_curve(table, None, "unused.png")
        ax = drawn["axes"][0]
        assert ax.get_ylabel() == "test 1 − ROC-AUC (dimensionless)"
        assert any(len(line.get_xdata()) for line in ax.lines)


def test_pretrain_size_figure_draws_a_head_reinitialised_sweep_and_its_scratch(monkeypatch):
    """The pretraining-size sweep need not fine-tune every layer as it is: sources of one
    property at several sizes, each fine-tuned with the head re-initialised (paper-cpu's
    log_kvrh_sources), give one line per training size; a scheme at one size draws none."""
    import matplotlib.pyplot as plt

    from tlcgcnn.report.figures import curves

    rows = []
    for size in (100, 500):
        for seed in range(3):
            rows.append(
                dict(
                    target="k",
                    size=size,
                    seed=seed,
                    mode="scratch",
                    family="scratch",
                    error=0.2 - size / 1e4,
                    pretrain_size=None,
                    pretrain_property=None,
                    pretrain_subset=None,
                    freeze=0,
                    reinit="none",
                )
            )
            for n_pre in (1000, 4000, 28525):
                rows.append(
                    dict(
                        target="k",
                        size=size,
                        seed=seed,
                        mode=f"ef{n_pre}_head",
                        family="transfer",
                        error=0.15 - n_pre / 1e6 - size / 1e4,
                        pretrain_size=n_pre,
                        pretrain_property="formation_energy_per_atom",
                        pretrain_subset="all",
                        freeze=0,
                        reinit="head",
                    )
                )
            rows.append(
                dict(
                    target="k",
                    size=size,
                    seed=seed,
                    mode="ef_freeze2",
                    family="transfer",
                    error=0.16,
                    pretrain_size=28525,
                    pretrain_property="formation_energy_per_atom",
                    pretrain_subset="all",
                    freeze=2,
                    reinit="unfrozen",
                )
            )
    seen = []
    monkeypatch.setattr(curves, "finish", lambda fig, png, pdf: (seen.append(fig), plt.close(fig)))
    metrics = pd.DataFrame(rows).assign(task="regression", property="k_vrh", transform="log10")
    curves.pretrain_size(metrics, {"k": "log10 K"}, "x.png", "x.pdf")
    ax = seen[0].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == [
        "scratch, n=100",
        "scratch, n=500",
        "ΔEf, all layers fine-tuned, head re-initialised, n=100",
        "ΔEf, all layers fine-tuned, head re-initialised, n=500",
    ], labels
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "pretraining crystals"
    assert ax.get_ylabel() == "test MAE (log10(K_VRH / GPa))"


# ------------------------------------------------------------------ figure-quality guard
def _plot(xlabel="training crystals", ylabel="test MAE (eV/atom)", series=3, size=(4.0, 3.0), title="gap"):
    from tlcgcnn.report.figures.style import setup

    setup()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    for i in range(series):
        ax.plot([50, 100, 200], [0.5 + i, 0.4 + i, 0.3 + i], label=f"mode {i}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return fig


def test_quality_guard_passes_a_figure_with_units_few_series_and_a_small_image(tmp_path):
    from tlcgcnn.report.figures.style import finish

    finish(_plot(series=8), tmp_path / "ok.png", tmp_path / "ok.pdf")
    assert (tmp_path / "ok.png").stat().st_size > 1000 and (tmp_path / "ok.pdf").exists()


@pytest.mark.parametrize(
    "xlabel, ylabel, why",
    [
        ("training crystals", "test MAE", "names no unit"),
        ("training crystals", "test MAE (log10 k_vrh)", "is not a unit"),  # a property key is no unit
        ("training crystals", "test MAE (band_gap)", "is not a unit"),
        ("training crystals", "", "no label"),
        ("training set size", "test MAE (eV)", "names no unit"),  # only the listed count labels go without
    ],
)
def test_quality_guard_rejects_an_axis_without_its_unit(tmp_path, xlabel, ylabel, why):
    from tlcgcnn.report.figures import quality
    from tlcgcnn.report.figures.style import finish

    png, pdf = tmp_path / "bad.png", tmp_path / "bad.pdf"
    with pytest.raises(quality.FigureQualityError, match=why) as err:
        finish(_plot(xlabel, ylabel), png, pdf)
    assert "figure 'bad'" in str(err.value) and "panel 1 'gap'" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left


def test_quality_guard_rejects_nine_legend_entries(tmp_path):
    import matplotlib.pyplot as plt

    from tlcgcnn.report.figures import quality
    from tlcgcnn.report.figures.style import finish

    with pytest.raises(quality.FigureQualityError, match=r"panel 1 'gap': legend has 9 entries \(at most 8"):
        finish(_plot(series=9), tmp_path / "many.png", tmp_path / "many.pdf")
    fig = _plot(series=9)  # a figure-level legend counts the same
    fig.axes[0].get_legend().remove()
    fig.legend(*fig.axes[0].get_legend_handles_labels())
    assert quality.problems(fig) == ["figure legend: legend has 9 entries (at most 8: split the series over panels)"]
    plt.close(fig)
    assert list(tmp_path.iterdir()) == []


def test_quality_guard_rejects_an_image_over_3000_px(tmp_path):
    from PIL import Image

    from tlcgcnn.report.figures import quality
    from tlcgcnn.report.figures.style import finish

    with pytest.raises(quality.FigureQualityError, match=r"image is 3\d{3} × \d+ px, over 3000 px on a side"):
        finish(_plot(size=(16.0, 3.0)), tmp_path / "wide.png", tmp_path / "wide.pdf")
    assert list(tmp_path.iterdir()) == []
    finish(_plot(size=(14.0, 3.0)), tmp_path / "fits.png", None)
    with Image.open(tmp_path / "fits.png") as im:
        assert 2500 < im.size[0] <= 3000


def test_quality_guard_units_counts_and_categories(monkeypatch):
    """The unit rule: a trailing bracketed unit made of known units (powers, quotients,
    log10(quantity / unit)); categorical axes and the count labels go without."""
    import matplotlib.pyplot as plt

    from tlcgcnn.data import properties
    from tlcgcnn.report.figures import quality

    assert quality.trailing_unit("test MAE (log10(K_VRH / GPa))") == "log10(K_VRH / GPa)"
    assert quality.trailing_unit("Eg [eV]") == "eV" and quality.trailing_unit("ratio (a) of b") is None
    for unit in ("eV/atom", "atom/eV²", "Å^3", "%", "dimensionless", "log10(K_VRH / GPa)", "dex"):
        assert quality.unit_problem(unit) is None, unit
    for unit in ("log10(K_VRH)", "k_vrh", "furlong/fortnight", " "):
        assert quality.unit_problem(unit) is not None, unit
    # a user's property declared with its unit makes the unit known
    user = properties.Property("ionic_speed", "furlong/fortnight", "a user's property")
    monkeypatch.setitem(properties.PROPERTIES, "ionic_speed", user)
    assert quality.unit_problem("furlong/fortnight") is None
    fig, ax = plt.subplots()
    ax.bar([0, 1], [3.0, 5.0])
    ax.set_xticks([0, 1], ["ΔEf", "Eg"])
    ax.set_xlabel("pretraining source")  # categories: no unit
    ax.set_ylabel("improvement over scratch (%)")
    assert quality.problems(fig) == []
    ax.set_xticks([0, 1], ["50", "100"])  # numbers are a quantity again
    assert quality.problems(fig) == [
        "panel 1, x axis: label 'pretraining source' names no unit: end it with the unit in parentheses, "
        "e.g. '(eV/atom)', '(%)'"
    ]
    plt.close(fig)


def test_error_labels_carry_the_targets_unit():
    from tlcgcnn.report.figures.style import error_label, unit_text

    assert unit_text("formation_energy_per_atom") == "eV/atom" and unit_text("band_gap_hse") == "eV"
    assert unit_text("k_vrh", "log10") == "log10(K_VRH / GPa)" and unit_text("poisson") == "dimensionless"
    assert unit_text("dielectric_total", "log10") == "dex"
    rows = pd.DataFrame({"property": ["g_vrh"], "transform": ["log10"], "task": ["regression"]})
    assert error_label(rows) == "test MAE (log10(G_VRH / GPa))"
    assert error_label(rows.assign(task="classification")) == "test 1 − ROC-AUC (dimensionless)"
    # a property this process does not know cannot name its unit: the guard refuses the label
    from tlcgcnn.report.figures import quality

    assert quality.unit_problem(unit_text("not_declared")) is not None


def _capture(monkeypatch, module):
    """Figures a module finishes, kept open for inspection (the guard still runs on them)."""
    from tlcgcnn.report.figures import quality

    seen = []

    def keep(fig, png, pdf):
        quality.check(fig, str(png))
        seen.append(fig)

    monkeypatch.setattr(module, "finish", keep)
    return seen


def test_improvement_axis_shows_small_effects_and_marks_points_below_it(monkeypatch):
    """paper-cpu's improvement axis ran to −500 %: ±10 % effects were flat lines. It now ends
    at −25 %, a worse point sits on that edge as ▼ with its value printed; one line per
    pretraining source (the mode selected on validation)."""
    import matplotlib.pyplot as plt

    from tlcgcnn.report.figures import transfer

    runs = _runs().query("target == 'gap'")
    bad = runs[runs["mode"] == "ef_ft"].assign(
        mode="eg_ft", pretrained="eg", pretrain_property="band_gap", error=lambda d: 4 * d["error"]
    )
    runs = pd.concat([runs, bad.assign(mae=bad["error"])], ignore_index=True)
    tests = stats.error_tests(runs)
    seen = _capture(monkeypatch, transfer)
    transfer.improvement(runs, tests, {"gap": "PBE gap"}, "imp.png", "imp.pdf")
    ax = seen[0].axes[0]
    assert ax.get_ylim()[0] == transfer.IMPROVEMENT_FLOOR and ax.get_ylabel() == "improvement over scratch (%)"
    eg = tests[tests["mode"] == "eg_ft"].sort_values("size")
    assert (eg["improvement_rate"] < -1.0).all()  # below −100 %
    printed = sorted(t.get_text() for t in ax.texts)
    assert printed == sorted(f"{100 * v:.0f}" for v in eg["improvement_rate"])
    # one line per source: ΔEf (its largest pretraining set, 500 crystals: ef200_ft is the sweep), Eg, MT
    assert sorted(t.get_text() for t in seen[0].legends[0].get_texts()) == ["Eg", "MT (ΔEf + Eg + E_F)", "ΔEf"]
    plt.close("all")


def test_freeze_heatmap_shows_one_mode_per_cell_chosen_on_validation(monkeypatch):
    """Two modes with one scheme and source (another learning rate): the cell shows the one
    with the lower validation score even though the other is better on test, says it was
    one of 2, and stars it only when its own Holm-adjusted p passes."""
    import matplotlib.pyplot as plt

    from tlcgcnn.report.figures import transfer

    runs = _runs().query("target == 'gap'")
    other = runs[runs["mode"] == "ef_head"].assign(
        mode="ef_head_lr", lr=3e-4, error=lambda d: 0.5 * d["error"], best_val_mae=lambda d: 2 * d["best_val_mae"]
    )
    runs = pd.concat([runs.assign(lr=1e-3), other.assign(mae=other["error"])], ignore_index=True)
    tests = stats.error_tests(runs)
    seen = _capture(monkeypatch, transfer)
    transfer.freeze_heatmap(runs, tests, {"gap": "PBE gap"}, "fh.png", "fh.pdf")
    ax = seen[0].axes[0]
    t = tests[(tests["size"] == 50) & (tests["mode"] == "ef_head")].iloc[0]
    star = "★" if t["p_holm"] < 0.05 else ""
    cells = [x.get_text() for x in ax.texts]
    assert f"{100 * t['improvement_rate']:+.0f} %{star}\n1 of 2" in cells, cells
    chosen_on_test = tests[(tests["size"] == 50) & (tests["mode"] == "ef_head_lr")].iloc[0]
    assert not any(c.startswith(f"{100 * chosen_on_test['improvement_rate']:+.0f} %") for c in cells)
    # one colour bar for the figure, labelled with its unit
    bars = [a for a in seen[0].axes if getattr(a, "_colorbar", None) is not None]
    assert len(bars) == 1 and bars[0].get_ylabel() == "improvement over scratch (%)"
    plt.close("all")


def test_target_curve_splits_a_source_family_over_panels_of_at_most_eight(monkeypatch):
    """A source fine-tuned in 14 ways: its modes spread over panels of at most 7 beside the
    scratch reference, every panel labelled with the target's unit."""
    import matplotlib.pyplot as plt

    from tlcgcnn.report.figures import curves

    runs = _runs().query("target == 'gap'").assign(lr=1e-3)
    extra = pd.concat(
        [runs[runs["mode"] == "ef_head"].assign(mode=f"ef_head_{i}", lr=1e-4 * (i + 2)) for i in range(10)],
        ignore_index=True,
    )
    runs = pd.concat([runs, extra], ignore_index=True)
    tests = stats.error_tests(runs)
    seen = _capture(monkeypatch, curves)
    curves.target_curve(runs, tests, "gap", "PBE gap", "tc.png", "tc.pdf")
    panels = [a for a in seen[0].axes if a.axison]
    titles = [a.get_title() for a in panels]
    assert titles == [
        "trained from scratch",
        "fine-tuned from ΔEf (1/2)",
        "fine-tuned from ΔEf (2/2)",
        "fine-tuned from MT (ΔEf + Eg + E_F)",
        "composition-descriptor baselines",
    ]
    # scratch and attention; 7 + 7 ΔEf modes, MT, RF: each beside the scratch reference
    assert [len(a.get_legend().get_texts()) for a in panels] == [2, 8, 8, 2, 2]
    assert {a.get_ylabel() for a in panels} == {"test MAE (eV)"} and {a.get_xlabel() for a in panels} == {
        "training crystals"
    }
    plt.close("all")


def test_pooled_learning_curve_draws_one_line_per_source_family(monkeypatch):
    """The pooled curve had ~40 modes in one legend: it now draws each scratch model and,
    per family, the mode selected on validation data at each size."""
    import matplotlib.pyplot as plt

    from tlcgcnn.report.figures import curves

    runs = _runs()
    best_on_test = (runs["mode"] == "ef_ft") & (runs["target"] == "gap")
    runs.loc[best_on_test, ["error", "mae"]] *= 0.8  # below mt_ft's test error; its validation score stays worse
    picked = curves.pooled_series(runs)
    transfer = picked[picked["series"] == curves.POOLED_SERIES["transfer"]]
    # gap: ef_ft has the best test error but a worse validation score: mt_ft is chosen
    assert set(transfer.loc[transfer["target"] == "gap", "mode"]) == {"mt_ft"}
    seen = _capture(monkeypatch, curves)
    curves.learning_curve(runs, stats.error_tests(runs), "lc.png", "lc.pdf", labels={"gap": "PBE gap"})
    assert sorted(t.get_text() for t in seen[0].legends[0].get_texts()) == sorted(
        ["CGCNN scratch", "attention scratch", curves.POOLED_SERIES["transfer"], curves.POOLED_SERIES["baseline"]]
    )
    plt.close("all")
