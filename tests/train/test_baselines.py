"""Baselines: CV on the training split only; test labels and features never reach the fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV

from tlcgcnn.train import baselines


def _data(n=80, seed=0, classification=False):
    rng = np.random.default_rng(seed)
    ids = [f"m{i}" for i in range(n)]
    X = pd.DataFrame(rng.normal(size=(n, 6)), index=ids, columns=[f"d{j}" for j in range(6)])
    y = X["d0"] * 2 - X["d1"] + 0.1 * rng.normal(size=n)
    if classification:
        y = (y > 0).astype(float)
    return X, pd.Series(y, index=ids), ids


@pytest.mark.parametrize("name", baselines.ESTIMATORS)
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_test_ids_never_reach_the_fit(monkeypatch, name, task):
    X, y, ids = _data(classification=task == "classification")
    train, test = ids[:50], ids[50:]
    y_poisoned = y.copy()
    y_poisoned.loc[test] = np.nan  # a fit that saw a test label would fail on the NaN
    seen: list[int] = []
    real_fit = GridSearchCV.fit

    def spy(self, X_fit, y_fit=None, **kw):
        seen.append(len(X_fit))
        assert not np.isnan(y_fit).any()
        return real_fit(self, X_fit, y_fit, **kw)

    monkeypatch.setattr(GridSearchCV, "fit", spy)
    pred, info = baselines.fit_predict(name, task, X, y_poisoned, train, test, seed=0)
    assert seen == [len(train)]
    assert pred.shape == (len(test),) and np.isfinite(pred).all()
    assert info["cv_folds"] == 5
    if task == "classification":
        from sklearn.metrics import roc_auc_score

        assert ((pred >= 0) & (pred <= 1)).all()
        assert roc_auc_score(y.loc[test], pred) > 0.8
    else:
        assert np.abs(pred - y.loc[test].to_numpy()).mean() < 0.5 * np.abs(y.loc[test] - y.loc[train].mean()).mean()


def test_overlapping_train_and_test_is_refused():
    X, y, ids = _data()
    with pytest.raises(ValueError, match="both in the training and the test"):
        baselines.fit_predict("lasso", "regression", X, y, ids[:40], ids[39:], seed=0)


def test_cv_folds_shrink_for_tiny_training_sets():
    search = baselines.make_search("pls", "regression", n_train=6, n_features=10, seed=0)
    assert search.cv.get_n_splits() == 3
    assert max(search.param_grid["m__n_components"]) <= 3


def test_unknown_estimator():
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.make_search("xgboost", "regression", 50, 5, 0)


def test_a_train_pool_all_baseline_cell_fits_on_every_subset(monkeypatch, tmp_path):
    """A baseline cell of a non-metal target with train_pool: all fits on pool_all (metals
    included) and predicts the target's own test set; its records say train_pool."""
    import yaml
    from conftest import ROOT

    from tlcgcnn import config as C
    from tlcgcnn.data import split
    from tlcgcnn.train.finetune import baseline_cell
    from tlcgcnn.utils import fileio as io

    X, y, ids = _data(n=120)
    metals = set(ids[::2])
    X.rename_axis("material_id").reset_index().to_parquet(tmp_path / "descriptors.parquet")
    pd.DataFrame({"material_id": ids, "k": y.to_numpy()}).to_parquet(tmp_path / "t.parquet")
    sp = split.target_split(
        pd.DataFrame({"material_id": ids, "k": y.to_numpy()}),
        "k",
        [i for i in ids if i not in metals],
        0.2,
        None,
        42,
        all_ids=ids,
    )
    io.write_json(tmp_path / "k.split.json", {**sp, "name": "k_nm", "subset": "nonmetal"})
    raw = yaml.safe_load((ROOT / "config" / "mp500.yaml").read_text())
    raw["finetune"]["modes"] = {
        "scratch": {},
        "ridge": {"estimator": "ridge"},
        "ridge_all": {"estimator": "ridge", "train_pool": "all"},
    }
    raw["finetune"]["targets"] = [
        {"name": "k_nm", "property": "k", "subset": "nonmetal", "modes": ["scratch", "ridge", "ridge_all"]}
    ]
    raw["finetune"]["sizes"], raw["finetune"]["seeds"] = [20], [0, 1]
    raw["properties"] = {"k": {"unit": "GPa"}}  # a user's own property: declared
    cfg = C.load(raw)
    fitted: list[list[str]] = []
    real = baselines.fit_predict

    def spy(name, task, X, y, train_ids, test_ids, seed, threads=1):
        fitted.append(list(train_ids))
        assert list(test_ids) == sp["test"]
        return real(name, task, X, y, train_ids, test_ids, seed, threads)

    monkeypatch.setattr(baselines, "fit_predict", spy)
    records = {}
    for mode in ("ridge", "ridge_all"):
        records[mode] = baseline_cell(
            cell=cfg.cell("k_nm", 20, mode),
            table_path=str(tmp_path / "t.parquet"),
            descriptors_path=str(tmp_path / "descriptors.parquet"),
            split_path=str(tmp_path / "k.split.json"),
            split_cfg=cfg.split_settings(),
            threads=1,
            out_metrics=str(tmp_path / mode / "metrics.json"),
            out_predictions=str(tmp_path / mode / "predictions.parquet"),
        )
    subset_fits, all_fits = fitted[:2], fitted[2:]
    assert all(set(f) <= set(sp["pool"]) and not set(f) & metals for f in subset_fits)
    assert all(set(f) <= set(sp["pool_all"]) and set(f) & metals for f in all_fits)
    assert all_fits[0] == split.train_val(sp["pool_all"], 20, 0, 0.2, cfg.split.val_min).train
    assert [r["train_pool"] for r in records["ridge_all"]] == ["all", "all"] and not any(
        "train_pool" in r for r in records["ridge"]
    )
    assert (
        [r["n_test"] for r in records["ridge_all"]] == [r["n_test"] for r in records["ridge"]] == [len(sp["test"])] * 2
    )
    preds = pd.read_parquet(tmp_path / "ridge_all" / "predictions.parquet")
    assert sorted(set(preds["material_id"])) == sorted(sp["test"])


def test_the_mlp_head_learns_what_a_linear_model_cannot_and_repeats_itself():
    rng = np.random.default_rng(3)
    n = 300
    ids = [f"m{i}" for i in range(n)]
    X = pd.DataFrame(rng.normal(size=(n, 8)), index=ids, columns=[f"f{j}" for j in range(8)])
    y = pd.Series(X["f0"] ** 2 + 0.5 * np.abs(X["f1"]) + 0.05 * rng.normal(size=n), index=ids)
    train, test = ids[:200], ids[200:]
    truth = y.loc[test].to_numpy()
    mlp, info = baselines.fit_predict("mlp", "regression", X, y, train, test, seed=0)
    ridge, _ = baselines.fit_predict("ridge", "regression", X, y, train, test, seed=0)
    assert np.abs(mlp - truth).mean() < 0.5 * np.abs(ridge - truth).mean()
    assert set(info["best_params"]) == {"m__regressor__alpha"} and info["unconverged_fits"] >= 0
    again, _ = baselines.fit_predict("mlp", "regression", X, y, train, test, seed=0)
    np.testing.assert_array_equal(mlp, again)  # L-BFGS from a seeded start: the same fit every time
