"""Classical estimators: PLS, SVR, LASSO, ridge, random forest and a small MLP, on composition
descriptors (the baselines) or on a pretrained network's frozen crystal vectors
(:mod:`tlcgcnn.train.frozen`).

Each estimator is a scikit-learn pipeline whose hyper-parameters are chosen by k-fold
cross-validation on the training split of (size, seed) only; the fixed test set is used
once, for the reported metrics. Features are standardised inside the pipeline (fitted on the
training rows of each fold; the random forest needs no scaling). Classification targets
(e.g. is_metal) use the classifier counterparts: PLS-DA, SVC, L1- and L2-penalised logistic
regression, a random-forest classifier and an MLP classifier.

``mlp``: one hidden layer of :data:`MLP_HIDDEN` ReLU units on the standardised features (the
regression target standardised too), trained to convergence by L-BFGS from a seeded start
(deterministic, no early-stopping split taken from a small training set); its L2 penalty is
chosen by CV from :data:`MLP_ALPHAS`. The small head the frozen-features transfer puts on a
backbone's crystal vector.
The records have the same fields as the CGCNN runs so the statistics and figures treat each
baseline as one more mode.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.cross_decomposition import PLSRegression
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso, LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR

log = logging.getLogger(__name__)
ESTIMATORS = ("pls", "svr", "lasso", "rf", "ridge", "mlp")
MLP_HIDDEN = 64
MLP_ALPHAS = [0.01, 1.0, 30.0]  # L2 penalties of the MLP (sklearn's alpha, per sample)
MLP_MAX_ITER = 500
RIDGE_ALPHAS = [
    float(a) for a in np.logspace(-2, 4, 13)
]  # ridge penalties (half-decade steps) on standardised features


class PLSClassifier(ClassifierMixin, BaseEstimator):
    """PLS-DA: PLS regression on the 0/1 label; the predicted value is the decision score."""

    def __init__(self, n_components: int = 2) -> None:
        self.n_components = n_components

    def fit(self, X: np.ndarray, y: np.ndarray) -> PLSClassifier:
        self.classes_ = np.unique(y)
        self.pls_ = PLSRegression(n_components=self.n_components).fit(X, (y == self.classes_[-1]).astype(float))
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self.pls_.predict(X).ravel() - 0.5

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


def _grid(
    name: str, task: str, n_train: int, n_features: int, seed: int, threads: int
) -> tuple[Any, dict[str, list[Any]]]:
    max_comp = max(1, min(n_features, int(n_train * 0.6)))
    comps = sorted({c for c in (2, 4, 8, 16) if c <= max_comp} or {1})
    if task == "classification":
        if name == "pls":
            return Pipeline([("scale", StandardScaler()), ("m", PLSClassifier())]), {"m__n_components": comps}
        if name == "svr":
            return Pipeline([("scale", StandardScaler()), ("m", SVC(kernel="rbf"))]), {
                "m__C": [0.3, 3.0, 30.0],
                "m__gamma": ["scale", 0.01],
            }
        if name == "lasso":
            return (
                Pipeline(
                    [
                        ("scale", StandardScaler()),
                        ("m", LogisticRegression(l1_ratio=1.0, solver="liblinear", max_iter=5000)),
                    ]
                ),
                {"m__C": [0.01, 0.1, 1.0, 10.0]},
            )
        if name == "rf":
            return RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=threads), {
                "max_features": [0.33, 1.0]
            }
        if name == "mlp":
            mlp = MLPClassifier(
                hidden_layer_sizes=(MLP_HIDDEN,), solver="lbfgs", max_iter=MLP_MAX_ITER, random_state=seed
            )
            return Pipeline([("scale", StandardScaler()), ("m", mlp)]), {"m__alpha": MLP_ALPHAS}
        if name == "ridge":  # L2-penalised logistic regression; C = 1 / alpha
            return Pipeline([("scale", StandardScaler()), ("m", LogisticRegression(l1_ratio=0.0, max_iter=5000))]), {
                "m__C": [1.0 / a for a in RIDGE_ALPHAS]
            }
    else:
        if name == "pls":
            return Pipeline([("scale", StandardScaler()), ("m", PLSRegression())]), {"m__n_components": comps}
        if name == "svr":
            svr = TransformedTargetRegressor(regressor=SVR(kernel="rbf", epsilon=0.05), transformer=StandardScaler())
            return Pipeline([("scale", StandardScaler()), ("m", svr)]), {
                "m__regressor__C": [0.3, 3.0, 30.0],
                "m__regressor__gamma": ["scale", 0.01],
            }
        if name == "lasso":
            return Pipeline([("scale", StandardScaler()), ("m", Lasso(max_iter=20000))]), {
                "m__alpha": list(np.logspace(-4, 0, 9))
            }
        if name == "rf":
            return RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=threads), {
                "max_features": [0.33, 1.0]
            }
        if name == "ridge":
            return Pipeline([("scale", StandardScaler()), ("m", Ridge())]), {"m__alpha": RIDGE_ALPHAS}
        if name == "mlp":
            mlp = MLPRegressor(
                hidden_layer_sizes=(MLP_HIDDEN,), solver="lbfgs", max_iter=MLP_MAX_ITER, random_state=seed
            )
            head = TransformedTargetRegressor(regressor=mlp, transformer=StandardScaler())
            return Pipeline([("scale", StandardScaler()), ("m", head)]), {"m__regressor__alpha": MLP_ALPHAS}
    raise ValueError(f"unknown baseline {name!r}; choose from {ESTIMATORS}")


def make_search(
    name: str, task: str, n_train: int, n_features: int, seed: int, threads: int = 1, folds: int = 5
) -> GridSearchCV:
    """Grid search with k-fold CV (k ≤ folds, at least 2 materials per fold)."""
    est, grid = _grid(name, task, n_train, n_features, seed, threads)
    k = max(2, min(folds, n_train // 2))
    if task == "classification":
        cv: Any = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        scoring = "roc_auc"
    else:
        cv = KFold(n_splits=k, shuffle=True, random_state=seed)
        scoring = "neg_mean_absolute_error"
    return GridSearchCV(est, grid, cv=cv, scoring=scoring, n_jobs=1, refit=True, error_score="raise")


def fit_predict(
    name: str,
    task: str,
    X: pd.DataFrame,
    y: pd.Series,
    train_ids: list[str],
    test_ids: list[str],
    seed: int,
    threads: int = 1,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit ``name`` (CV on ``train_ids`` only) and predict ``test_ids``.

    ``X`` is indexed by material id; ``y`` too. Test labels are never read. Returns the test
    predictions (probabilities of the positive class for classification) and fit info."""
    overlap = set(train_ids) & set(test_ids)
    if overlap:
        raise ValueError(f"{len(overlap)} materials are both in the training and the test set")
    X_tr = X.loc[train_ids].to_numpy(dtype=np.float64)
    y_tr = y.loc[train_ids].to_numpy(dtype=np.float64)
    search = make_search(name, task, len(train_ids), X_tr.shape[1], seed, threads)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        search.fit(X_tr, y_tr.astype(int) if task == "classification" else y_tr)
    unconverged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if unconverged:
        log.info("%s: %d of the CV fits stopped at their iteration limit before converging", name, unconverged)
    X_te = X.loc[test_ids].to_numpy(dtype=np.float64)
    if task == "classification":
        best = search.best_estimator_
        if hasattr(best, "predict_proba"):  # False for SVC (probability=False) and PLS-DA
            pred = best.predict_proba(X_te)[:, 1]
        else:
            pred = 1.0 / (1.0 + np.exp(-best.decision_function(X_te)))  # monotone score → (0, 1); AUC unchanged
    else:
        pred = np.asarray(search.predict(X_te), dtype=np.float64).ravel()
    info = {
        "best_params": {k: (v if isinstance(v, (str, int)) else float(v)) for k, v in search.best_params_.items()},
        "cv_score": float(search.best_score_),
        "cv_folds": int(search.n_splits_),
        "seconds": time.perf_counter() - t0,
        "n_descriptors": int(X_tr.shape[1]),
        "unconverged_fits": int(unconverged),
    }
    return pred, info
