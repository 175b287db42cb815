"""Baselines: CV on the training split only; test labels and features never reach the fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV

from tlcgcnn import baselines


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
