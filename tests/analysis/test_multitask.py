"""MT-CGCNN's multi-task vs single-task comparison: pairing sources from a config, the table
on synthetic test predictions, and its figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT
from scipy import stats as sstats

from tlcgcnn import config as C
from tlcgcnn.analysis import multitask
from tlcgcnn.analysis.multitask import (
    COLUMNS,
    PairMismatchError,
    SourcePair,
    multitask_table,
    source_pairs,
    write_table,
)
from tlcgcnn.analysis.stats import read_table
from tlcgcnn.report import figures

PROPS = ["formation_energy_per_atom", "band_gap", "efermi"]
ST_NAMES = dict(zip(PROPS, ["ef", "eg", "efermi"], strict=True))


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())


def typed(name: str) -> C.Config:
    return C.load(load(name))


def with_sources(pretrain: list[dict], variants: dict | None = None) -> C.Config:
    """A config with these pretraining sources and model variants (default: attention), only
    their required keys set, and a fine-tuning grid that uses none of them."""
    return C.load(
        {
            "name": "pairs",
            "dataset": {"path": "data.csv"},
            "model_variants": variants or {"attention": {"kind": "attention"}},
            "pretrain": pretrain,
            "finetune": {
                "targets": [{"name": "t", "property": PROPS[0]}],
                "sizes": [10],
                "seeds": [0],
                "modes": {"scratch": {}},
            },
        }
    )


def _st(name: str, prop: str, **kw) -> dict:
    return {"name": name, "property": prop, **kw}


def _mt(name: str, **kw) -> dict:
    return {"name": name, "property": PROPS[0], "properties": PROPS, "weights": [1.0, 1.0, 0.5], **kw}


# ----------------------------------------------------------------------------- pairing
def test_pairs_share_size_seed_subset_labels_transform_and_model():
    lab = {"labelled_with": PROPS}
    cfg = {
        "pretrain": [
            {
                "name": "zoo_mt",
                "checkpoint": "resources/pretrained/mp2018-mt/model_s0.pt",
            },  # no evaluation: never pairs
            _mt("mt_1k", size=1000, **lab),
            _mt("mt_4k", size=4000, **lab),
            _st("ef_1k", PROPS[0], size=1000, **lab),
            _st("eg_1k", PROPS[1], size=1000, **lab),
            _st("efermi_1k", PROPS[2], size=1000, **lab),
            _st("ef_4k", PROPS[0], size=4000, seed=0, subset="all", **lab),  # defaults spelt out: still pairs
            _st("eg_4k_seed1", PROPS[1], size=4000, seed=1, **lab),  # another seed: other training crystals
            _st("eg_4k_metal", PROPS[1], size=4000, subset="metal", **lab),  # another subset
            _st("eg_4k_unlabelled", PROPS[1], size=4000),  # no labelled_with: another test set
            _st("eg_4k_log", PROPS[1], size=4000, transform="log10", **lab),  # another label scale
            _st("eg_4k_att", PROPS[1], size=4000, model="attention", **lab),  # another architecture
            _st("ef_8k", PROPS[0], size=8000, **lab),  # no multi-task source of that size
            _st("kvrh_1k", "k_vrh", size=1000, **lab),  # not a property of the multi-task source
        ]
    }
    got = [(p.property, p.size, p.mt_source, p.st_source) for p in source_pairs(with_sources(cfg["pretrain"]))]
    assert got == [
        (PROPS[0], 1000, "mt_1k", "ef_1k"),
        (PROPS[0], 4000, "mt_4k", "ef_4k"),
        (PROPS[1], 1000, "mt_1k", "eg_1k"),
        (PROPS[2], 1000, "mt_1k", "efermi_1k"),
    ]
    # without labelled_with a multi-task source's split is that of its first property only
    plain = with_sources([_mt("mt"), _st("ef", PROPS[0]), _st("eg", PROPS[1]), _st("ef_500", PROPS[0], size=500)])
    assert source_pairs(plain) == [SourcePair(PROPS[0], "all", "mt", "ef")]
    assert source_pairs(with_sources([_st("ef", PROPS[0]), _st("eg", PROPS[1])])) == []
    assert source_pairs(with_sources([])) == []
    # the architecture is compared resolved: a variant that changes nothing is the base model
    same = with_sources([_mt("mt", model="same"), _st("ef", PROPS[0])], {"same": {"n_conv": C.ModelSettings.n_conv}})
    assert source_pairs(same) == [SourcePair(PROPS[0], "all", "mt", "ef")]


def test_pairs_of_the_shipped_configs():
    cpu = source_pairs(typed("paper-cpu"))
    assert len(cpu) == 9
    assert {(p.property, p.size): (p.mt_source, p.st_source) for p in cpu}[("band_gap", 4000)] == ("mt_4k", "eg_4k")
    assert [p.property for p in cpu] == [PROPS[0]] * 3 + [PROPS[1]] * 3 + [PROPS[2]] * 3
    assert [p.size for p in cpu[:3]] == [1000, 4000, 8000]
    assert "ef_16k" not in {p.st_source for p in cpu}
    assert source_pairs(typed("config")) == [] and source_pairs(typed("mp500")) == []


# ------------------------------------------------------------------------------- table
def _predictions(tmp_path, n: int = 40, seed: int = 0):
    """Test predictions of a multi-task source and the single-task ΔEf and Eg sources on the
    same n crystals, with known absolute errors; returns (files, errors)."""
    rng = np.random.default_rng(seed)
    ids = [f"mp-{i}" for i in range(n)]
    y = {p: rng.normal(size=n) for p in PROPS}
    sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    err = {
        ("mt", PROPS[0]): 0.10 + 0.05 * rng.random(n),
        ("st", PROPS[0]): 0.20 + 0.05 * rng.random(n),  # the multi-task model is better on ΔEf
        ("mt", PROPS[1]): 0.30 + 0.05 * rng.random(n),
        ("st", PROPS[1]): 0.30 + 0.05 * rng.random(n),  # and no better on Eg
    }
    mt = pd.DataFrame({"material_id": ids})
    for p in PROPS:
        mt[f"y_true_{p}"] = y[p]
        mt[f"y_pred_{p}"] = y[p] + sign * err.get(("mt", p), 0.5)
    mt["y_true"], mt["y_pred"] = mt[f"y_true_{PROPS[0]}"], mt[f"y_pred_{PROPS[0]}"]
    files = {"mt": tmp_path / "mt.parquet"}
    mt.to_parquet(files["mt"])
    order = rng.permutation(n)  # another row order: rows are matched by material id
    for name, p in (("ef", PROPS[0]), ("eg", PROPS[1])):
        st = pd.DataFrame({"material_id": ids, "y_true": y[p], "y_pred": y[p] - sign * err[("st", p)]}).iloc[order]
        files[name] = tmp_path / f"{name}.parquet"
        st.to_parquet(files[name])
    return files, err


def test_table_on_synthetic_predictions(tmp_path):
    files, err = _predictions(tmp_path)
    pairs = [SourcePair(PROPS[0], 1000, "mt", "ef"), SourcePair(PROPS[1], 1000, "mt", "eg")]
    out = tmp_path / "multitask.csv"
    write_table([p.as_dict() for p in pairs], {k: str(v) for k, v in files.items()}, out)
    with open(out, encoding="utf-8") as fh:
        assert fh.readline().strip() == ",".join(COLUMNS)
    t = read_table(out)
    assert list(t.columns) == list(COLUMNS) and len(t) == 2
    ef, eg = t.iloc[0], t.iloc[1]
    assert (ef["property"], ef["mt_source"], ef["st_source"], int(ef["size"]), ef["holm_family"]) == (
        PROPS[0],
        "mt",
        "ef",
        1000,
        "multitask_vs_single",
    )
    assert ef["n_test"] == 40
    assert ef["mae_mt"] == pytest.approx(err[("mt", PROPS[0])].mean(), rel=1e-9)
    assert ef["mae_st"] == pytest.approx(err[("st", PROPS[0])].mean(), rel=1e-9)
    assert (
        ef["change_pct"] == pytest.approx(100 * (ef["mae_mt"] - ef["mae_st"]) / ef["mae_st"]) and ef["change_pct"] < -30
    )
    assert eg["mae_mt"] == pytest.approx(err[("mt", PROPS[1])].mean(), rel=1e-9)
    for row, prop in ((ef, PROPS[0]), (eg, PROPS[1])):
        ref = sstats.ttest_rel(err[("mt", prop)], err[("st", prop)])
        assert row["t"] == pytest.approx(ref.statistic) and row["p"] == pytest.approx(ref.pvalue, rel=1e-6)
    assert ef["t"] < 0 and ef["p"] < 1e-10 and eg["p"] > ef["p"]
    # Holm over the two rows: the smaller p doubled, the larger kept (monotone)
    assert ef["p_holm"] == pytest.approx(min(1.0, 2 * ef["p"]))
    assert eg["p_holm"] == pytest.approx(max(eg["p"], ef["p_holm"]))
    # predictions off by a constant shift rank the crystals alike: Spearman ρ near 1
    assert 0.9 < ef["spearman_mt"] <= 1.0 and 0.9 < ef["spearman_st"] <= 1.0


def test_table_undoes_a_log10_transform(tmp_path):
    ids = ["a", "b", "c", "d"]
    true = np.array([1.0, 10.0, 100.0, 1000.0])
    mt = pd.DataFrame(
        {
            "material_id": ids,
            "y_true_k_vrh": np.log10(true),
            "y_pred_k_vrh": np.log10(true * 1.1),
            "y_true_g_vrh": 0.0,
            "y_pred_g_vrh": 0.0,
        }
    )
    st = pd.DataFrame({"material_id": ids, "y_true": np.log10(true), "y_pred": np.log10(true * 0.8)})
    t = multitask_table([SourcePair("k_vrh", "all", "mt", "st", transform="log10")], {"mt": mt, "st": st})
    assert t.loc[0, "mae_mt"] == pytest.approx((0.1 * true).mean()) and t.loc[0, "mae_st"] == pytest.approx(
        (0.2 * true).mean()
    )
    assert t.loc[0, "size"] == "all"


def test_sources_on_different_test_sets_are_refused(tmp_path):
    files, _ = _predictions(tmp_path)
    other = pd.read_parquet(files["eg"])
    other.loc[other.index[0], "material_id"] = "mp-elsewhere"
    other.to_parquet(files["eg"])
    with pytest.raises(
        PairMismatchError, match=r"'mt_4k'.*'eg_4k' were not evaluated on the same test set .*mp-elsewhere"
    ):
        multitask_table([SourcePair(PROPS[1], 4000, "mt_4k", "eg_4k")], {"mt_4k": files["mt"], "eg_4k": files["eg"]})
    # same ids, other labels: not one split of one table either
    wrong = pd.read_parquet(files["ef"]).assign(y_true=lambda d: d["y_true"] + 1.0)
    with pytest.raises(
        PairMismatchError, match=r"'mt'.*'ef' hold different formation_energy_per_atom labels for 40 of their 40"
    ):
        multitask_table([SourcePair(PROPS[0], 1000, "mt", "ef")], {"mt": files["mt"], "ef": wrong})
    # a single-task table given as the multi-task one: the per-property columns are missing
    with pytest.raises(
        PairMismatchError, match=r"multi-task source 'ef' lack columns \['y_true_band_gap', 'y_pred_band_gap'\]"
    ):
        multitask_table([SourcePair(PROPS[1], 1000, "ef", "eg")], {"ef": files["ef"], "eg": files["eg"]})


def test_empty_table_has_the_columns_and_no_rows(tmp_path):
    out = tmp_path / "multitask.csv"
    write_table([], {}, out)
    assert out.read_text(encoding="utf-8").strip() == ",".join(COLUMNS)
    t = read_table(out)
    assert list(t.columns) == list(COLUMNS) and t.empty
    assert list(multitask_table([], {}).columns) == list(COLUMNS)


# ------------------------------------------------------------------------------ figure
def _table_csv(tmp_path) -> str:
    rows = []
    for prop, base in ((PROPS[0], 0.2), (PROPS[1], 0.6), (PROPS[2], 0.5)):
        st = ST_NAMES[prop]
        for size, p_holm in ((1000, 0.2), (4000, 0.004), (8000, 1e-5)):
            mae_st = base * (size / 1000) ** -0.3
            rows.append(
                {
                    "property": prop,
                    "size": size,
                    "mt_source": f"mt_{size // 1000}k",
                    "st_source": f"{st}_{size // 1000}k",
                    "n_test": 1000,
                    "mae_mt": 0.9 * mae_st,
                    "mae_st": mae_st,
                    "change_pct": -10.0,
                    "spearman_mt": 0.9,
                    "spearman_st": 0.88,
                    "t": -3.0,
                    "p": p_holm / 9,
                    "p_holm": p_holm,
                    "holm_family": multitask.HOLM_FAMILY,
                }
            )
    path = tmp_path / "multitask.csv"
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(path, index=False)
    return str(path)


def test_figure_is_registered_and_drawn(tmp_path):
    assert figures.input_paths("multitask_sources", "results/x") == {"multitask": "results/x/stats/multitask.csv"}
    png, pdf = tmp_path / "f.png", tmp_path / "f.pdf"
    figures.draw("multitask_sources", {"multitask": _table_csv(tmp_path)}, png, pdf)
    assert png.stat().st_size > 20_000 and pdf.stat().st_size > 5_000
    # an empty table (a figure asked for by hand): a panel that says why, no crash
    empty = tmp_path / "empty.csv"
    write_table([], {}, empty)
    figures.draw("multitask_sources", {"multitask": str(empty)}, tmp_path / "e.png", tmp_path / "e.pdf")
    assert (tmp_path / "e.png").stat().st_size > 1000
    assert figures.caption("multitask_sources", ROOT / "report").startswith(
        "Multi-task against single-task pretraining"
    )


def test_figure_marks_and_annotations(tmp_path, monkeypatch):
    """The drawn axes: log-log, one panel per property with units, a multi-task and a
    single-task line through the sizes, the Holm p at each size."""
    import matplotlib.pyplot as plt

    from tlcgcnn.report.figures import curves

    seen = []
    monkeypatch.setattr(curves, "finish", lambda fig, png, pdf: (seen.append(fig), plt.close(fig)))
    curves.multitask_sources(read_table(_table_csv(tmp_path)), tmp_path / "f.png", tmp_path / "f.pdf")
    axes = seen[0].axes
    assert len(axes) == 3
    assert [ax.get_ylabel() for ax in axes] == [
        "test MAE of ΔEf (eV/atom)",
        "test MAE of Eg (eV)",
        "test MAE of E_F (eV)",
    ]
    for ax, prop in zip(axes, PROPS, strict=True):
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        st = ST_NAMES[prop]
        assert sorted(lines) == ["multi-task (mt_1k, mt_4k, mt_8k)", f"single-task ({st}_1k, {st}_4k, {st}_8k)"]
        assert list(lines["multi-task (mt_1k, mt_4k, mt_8k)"].get_xdata()) == [1000, 4000, 8000]
        assert (
            lines["multi-task (mt_1k, mt_4k, mt_8k)"].get_ydata()[0]
            < lines[f"single-task ({st}_1k, {st}_4k, {st}_8k)"].get_ydata()[0]
        )
        texts = [t.get_text() for t in ax.texts]
        assert texts == ["n.s.\np=0.2", "**\np=0.004", "***\np=1e-05"]


def test_figure_is_requested_where_the_config_pairs_sources():
    assert "multitask_sources" in figures.requested(typed("paper-cpu"))
    assert "multitask_sources" in figures.requested(typed("zoo"))  # mt and ef: one split, no fine-tuning records needed
    assert "multitask_sources" not in figures.requested(typed("config"))
    assert "multitask_sources" not in figures.requested(typed("mp500"))
    cfg = load("paper-cpu")
    for p in cfg["pretrain"]:
        if p["name"].startswith("mt_"):  # another seed: other training crystals, no pair
            p["seed"] = 1
    cfg["report"]["claims"] = [c for c in cfg["report"]["claims"] if c.get("kind") != "multitask"]
    assert "multitask_sources" not in figures.requested(C.load(cfg))
