"""Test-set metrics from arrays: regression (MAE, RMSE, R², Pearson r, Spearman ρ) and binary
classification (ROC-AUC, accuracy, log loss, Brier score).

Torch-free, so that the scikit-learn baselines (env ``envs/ml.yaml``) score their predictions
with the same functions as :mod:`tlcgcnn.analysis.evaluate` without importing torch.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sstats


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    err = y_pred - y_true
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    out = {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": float(1.0 - (err**2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
        "n_test": int(len(y_true)),
    }
    if len(y_true) > 2 and np.std(y_pred) > 0 and np.std(y_true) > 0:
        out["pearson_r"] = float(sstats.pearsonr(y_true, y_pred).statistic)
        out["spearman_rho"] = float(sstats.spearmanr(y_true, y_pred).statistic)
    else:
        out["pearson_r"] = out["spearman_rho"] = float("nan")
    return out


def classification_metrics(y_true: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """ROC-AUC, accuracy at p = 0.5, log loss and Brier score of a binary classifier.
    ``error`` = 1 − ROC-AUC is the lower-is-better score the statistics compare."""
    from sklearn import metrics as skm

    y = np.asarray(y_true, dtype=float)
    p = np.clip(np.asarray(prob, dtype=float), 1e-7, 1 - 1e-7)
    two_classes = len(np.unique(y)) == 2
    auc = float(skm.roc_auc_score(y, p)) if two_classes else float("nan")
    return {
        "roc_auc": auc,
        "accuracy": float(((p >= 0.5) == (y >= 0.5)).mean()),
        "log_loss": float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()),
        "brier": float(((p - y) ** 2).mean()),
        "error": 1.0 - auc,
        "n_test": int(len(y)),
        "positive_fraction": float(y.mean()),
    }
