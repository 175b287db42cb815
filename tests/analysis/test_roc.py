"""ROC curves of the classification cells (tlcgcnn.analysis.roc) and their figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from tlcgcnn.analysis import roc
from tlcgcnn.analysis.stats import read_table
from tlcgcnn.report.figures import quality


def predictions(rng: np.random.Generator, seeds: int, shift: float, n: int = 60, ties: bool = False) -> pd.DataFrame:
    """Test predictions of one cell: y_true with both classes, y_pred a probability that
    separates them by ``shift`` (rounded to 1 decimal with ``ties``: tied scores)."""
    rows = []
    for seed in range(seeds):
        y = np.r_[np.zeros(n // 2 + 3), np.ones(n - n // 2 - 3)]
        p = 1.0 / (1.0 + np.exp(-(shift * (2 * y - 1) + rng.normal(0.0, 1.0, n))))
        rows.append(
            pd.DataFrame(
                {
                    "material_id": [f"mp-{i}" for i in range(n)],
                    "y_true": y,
                    "y_pred": np.round(p, 1) if ties else p,
                    "seed": seed,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def sklearn_at_grid(y: np.ndarray, p: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """sklearn's ROC curve read at the grid: linear interpolation between its points, the
    highest true positive rate where the grid meets a vertical step."""
    fpr, tpr, _ = roc_curve(y, p)
    return np.array([tpr[fpr == x].max() if (fpr == x).any() else np.interp(x, fpr, tpr) for x in grid])


@pytest.mark.parametrize("ties", [False, True])
def test_one_seed_curve_is_sklearns_roc_curve_on_the_grid(ties):
    pred = predictions(np.random.default_rng(0), seeds=1, shift=0.8, ties=ties)
    curve = roc.cell_curve(pred)
    grid = roc.fpr_grid()
    assert len(curve) == roc.GRID_POINTS == 101 and np.allclose(curve["fpr"], np.linspace(0, 1, 101))
    want = sklearn_at_grid(pred["y_true"].to_numpy(), pred["y_pred"].to_numpy(), grid)
    np.testing.assert_allclose(curve["tpr"], want, atol=1e-12)
    assert 0 < curve["tpr"].iloc[0] < 1 and curve["tpr"].iloc[-1] == 1.0  # tpr(0): top of the first step
    assert curve["n_seeds"].eq(1).all() and curve["tpr_sd"].isna().all() and np.isnan(curve["auc_sd"].iloc[0])
    assert np.diff(curve["tpr"]).min() >= 0


def test_seed_average_and_auc_are_sklearns_per_seed():
    pred = predictions(np.random.default_rng(1), seeds=4, shift=1.0)
    curve = roc.cell_curve(pred)
    grid = roc.fpr_grid()
    per_seed = [sklearn_at_grid(g["y_true"].to_numpy(), g["y_pred"].to_numpy(), grid) for _, g in pred.groupby("seed")]
    aucs = [roc_auc_score(g["y_true"], g["y_pred"]) for _, g in pred.groupby("seed")]
    np.testing.assert_allclose(curve["tpr"], np.mean(per_seed, axis=0), atol=1e-12)
    np.testing.assert_allclose(curve["tpr_sd"], np.std(per_seed, axis=0, ddof=1), atol=1e-12)
    assert curve["auc_mean"].iloc[0] == pytest.approx(np.mean(aucs), abs=1e-12)
    assert curve["auc_sd"].iloc[0] == pytest.approx(np.std(aucs, ddof=1), abs=1e-12) and len(set(aucs)) == 4
    assert curve["n_seeds"].eq(4).all()


def test_perfect_and_inverted_classifiers():
    y = np.r_[np.zeros(7), np.ones(5)]
    perfect = pd.DataFrame({"y_true": y, "y_pred": np.linspace(0.01, 0.99, 12), "seed": 0})
    curve = roc.cell_curve(perfect)
    assert (curve["tpr"] == 1.0).all() and curve["auc_mean"].iloc[0] == 1.0  # tpr = 1 from fpr = 0 on
    inverted = perfect.assign(y_pred=perfect["y_pred"].to_numpy()[::-1])
    curve = roc.cell_curve(inverted)
    assert curve["auc_mean"].iloc[0] == 0.0 and curve["tpr"].iloc[-1] == 1.0
    assert (curve.loc[curve["fpr"] < 1, "tpr"] == 0).all()


def test_one_class_test_set_names_the_file_and_the_table_lists_the_cell_it_leaves_out(tmp_path, caplog):
    good, bad = tmp_path / "good.parquet", tmp_path / "n100" / "rf" / "predictions.parquet"
    bad.parent.mkdir(parents=True)
    pred = predictions(np.random.default_rng(2), seeds=2, shift=1.0)
    pred.to_parquet(good)
    one_class = pred.assign(y_true=np.where(pred["seed"] == 1, 1.0, pred["y_true"]))
    one_class.to_parquet(bad)
    with pytest.raises(roc.OneClassError, match=rf"{bad} \(seed 1\): the test labels hold 1 class"):
        roc.cell_curve(one_class, str(bad))
    cells = [{"target": "metal", "size": 100, "mode": m} for m in ("scratch", "rf")]
    with caplog.at_level("WARNING", logger="tlcgcnn.analysis.roc"):
        table = roc.roc_table(cells, [good, bad])
    assert set(table["mode"]) == {"scratch"} and len(table) == roc.GRID_POINTS
    assert any(
        "left out of the ROC curves: metal n=100 rf" in r.getMessage() and str(bad) in r.getMessage()
        for r in caplog.records
    )


def test_table_of_every_cell(tmp_path):
    rng = np.random.default_rng(3)
    cells, paths = [], []
    for size in (100, "all"):
        for mode, shift in (("scratch", 0.5), ("rf", 1.5)):
            path = tmp_path / f"n{size}_{mode}.parquet"
            predictions(rng, seeds=3, shift=shift).to_parquet(path)
            cells.append({"target": "metal", "size": size, "mode": mode})
            paths.append(path)
    out = tmp_path / "stats" / "roc.csv"
    roc.write_table(cells, paths, out)
    table = read_table(out)
    assert list(table.columns) == list(roc.COLUMNS) and len(table) == 4 * 101
    assert table.groupby(["size", "mode"]).size().eq(101).all()
    assert set(table["size"].astype(str)) == {"100", "all"} and set(table["target"]) == {"metal"}
    auc = table.drop_duplicates(["size", "mode"]).set_index(["size", "mode"])["auc_mean"]
    assert (auc.xs("rf", level="mode") > auc.xs("scratch", level="mode")).all()
    assert table.loc[table["fpr"] == 1.0, "tpr"].eq(1.0).all()
    empty = roc.roc_table([], [])
    assert list(empty.columns) == list(roc.COLUMNS) and empty.empty
    with pytest.raises(ValueError, match="2 cells but 1 prediction files"):
        roc.roc_table(cells[:2], paths[:1])


# ------------------------------------------------------------------------------- figure
def roc_and_metrics(tmp_path, n_modes: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """stats/roc.csv of a classification target at two sizes computed from generated
    predictions (scratch the weakest mode), and the records the mode names come from."""
    rng = np.random.default_rng(4)
    modes = ["scratch", *[f"b{i}" for i in range(n_modes - 1)]]
    cells, paths = [], []
    for size in (100, 500):
        for k, mode in enumerate(modes):
            path = tmp_path / f"{size}_{mode}.parquet"
            predictions(rng, seeds=3, shift=0.0 if k == 0 else 0.4 + 0.1 * k).to_parquet(path)
            cells.append({"target": "metal", "size": size, "mode": mode})
            paths.append(path)
    table = roc.roc_table(cells, paths)
    metrics = pd.DataFrame(
        [
            {"target": "metal", "mode": m, "family": "scratch" if m == "scratch" else "baseline", "model_kind": kind}
            for m, kind in zip(modes, ["cgcnn", *[f"est{i}" for i in range(n_modes - 1)]], strict=True)
        ]
    )
    return table, metrics


def test_figure_keeps_scratch_and_the_best_seven(tmp_path, monkeypatch):
    from tlcgcnn.report.figures import roc as roc_fig

    seen = []
    finish = roc_fig.finish

    def keep(fig, png, pdf):
        seen.append(fig)
        finish(fig, png, pdf)

    monkeypatch.setattr(roc_fig, "finish", keep)
    table, metrics = roc_and_metrics(tmp_path, n_modes=10)
    png, pdf = tmp_path / "roc.png", tmp_path / "roc.pdf"
    roc_fig.roc_curves(table, metrics, "scratch", {"metal": "metal / non-metal"}, png, pdf)
    assert pdf.stat().st_size > 1_000 and max(quality.png_size(png)) <= quality.MAX_PIXELS
    panels = [a for a in seen[0].axes if a.axison]
    assert [a.get_title() for a in panels] == [
        f"metal / non-metal, n = {n}\ntest-set ROC, mean ± sd over 3 seeds; dotted: chance\n"
        "(+2 modes of lower AUC in stats/roc.csv)"
        for n in (100, 500)
    ]
    assert quality.problems(seen[0]) == []
    for ax, size in zip(panels, ("100", "500"), strict=True):
        auc = table[table["size"] == size].drop_duplicates("mode").set_index("mode")["auc_mean"]
        best = auc.drop("scratch").sort_values(ascending=False, kind="stable")
        assert auc["scratch"] < best.min()  # the weakest, kept as the reference
        drawn = ["scratch", *best.index[:7]]  # the two of lowest AUC left out
        names = ["CGCNN scratch", *[f"EST{m[1:]}" for m in drawn[1:]]]
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert [t.split(" ± ")[0] for t in texts] == [
            f"{n} (AUC {auc[m]:.3f}" for n, m in zip(names, drawn, strict=True)
        ]
        assert all(t.endswith(")") and " ± " in t for t in texts)
        assert ax.get_xlabel() == "false positive rate (dimensionless)"
        assert ax.get_ylabel() == "true positive rate (dimensionless)"


def test_selection_of_the_drawn_modes():
    aucs = pd.Series({"a": 0.9, "scratch": 0.5, "b": 0.95, "c": 0.7})
    assert roc_fig_drawn(aucs, "scratch", 3) == (["scratch", "b", "a"], ["c"])
    assert roc_fig_drawn(aucs, None, 3) == (["b", "a", "c"], ["scratch"])
    assert roc_fig_drawn(aucs, "scratch", 8) == (["scratch", "b", "a", "c"], [])


def roc_fig_drawn(aucs: pd.Series, reference: str | None, most: int) -> tuple[list[str], list[str]]:
    from tlcgcnn.report.figures.roc import drawn_modes

    return drawn_modes(aucs, reference, most)
