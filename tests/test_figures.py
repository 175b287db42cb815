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
    from tlcgcnn.report.figures import curves, external, models, transfer

    def nothing_to_draw(ax, text):
        raise AssertionError(f"placeholder panel drawn: {text}")

    for module in (curves, external, models, transfer):  # every figure has its data here: no placeholder
        monkeypatch.setattr(module, "empty", nothing_to_draw)
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
    from tlcgcnn.report.figures.transfer import freeze_heatmap

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
    ):
        png = tmp_path / f"{name}.png"
        draw(png, tmp_path / f"{name}.pdf")
        h, w = imread(png).shape[:2]
        assert w / h < 2.0, (name, w, h)  # 3 columns × 3 rows (+ the legend), not 7 × 1


def test_learning_curve_draws_a_classifier_by_its_error(monkeypatch):
    """A classifier's runs have no MAE (paper-cpu's metal / non-metal panel was empty): the
    pooled learning curve draws its 1 − ROC-AUC."""
    from tlcgcnn.report.figures import curves

    drawn = {}
    monkeypatch.setattr(curves, "finish", lambda fig, png, pdf: drawn.update(axes=fig.axes))
    runs = _runs().query("target == 'metal'").assign(mae=np.nan)
    curves.learning_curve(runs, None, "unused.png")
    ax = drawn["axes"][0]
    assert ax.get_ylabel() == "1 − ROC-AUC" and any(len(line.get_xdata()) for line in ax.lines)


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
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "pretraining set size (crystals)"
