"""The RBF kernel ridge head: exact leave-one-out, the width it picks, save/load, its limit."""

from __future__ import annotations

import numpy as np
import pytest

from questlab.errors import ConfigError
from questlab.models.base import FitLog
from questlab.models.embedding import kernel_head
from questlab.models.embedding.kernel_head import KernelRidgeHead


def _data(n: int = 60, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.column_stack([0.5 + 0.3 * np.sin(2 * x[:, 0]), 0.5 + 0.1 * x[:, 1] * x[:, 2]])
    return x, np.clip(y + 0.02 * rng.normal(size=y.shape), 0, 1)


def _brute_loo_mse(z: np.ndarray, y: np.ndarray, gamma: float, alpha: float) -> np.ndarray:
    """Refit kernel ridge with an intercept without each row in turn; the mean squared error."""
    n = len(z)
    k = np.exp(-(gamma / z.shape[1]) * ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    errors = np.zeros_like(y)
    for i in range(n):
        keep = np.arange(n) != i
        kk = k[np.ix_(keep, keep)]
        col, all_ = kk.mean(axis=0), kk.mean()
        kc = kk - col[None, :] - col[:, None] + all_
        y_mean = y[keep].mean(axis=0)
        coef = np.linalg.solve(kc + alpha * np.eye(n - 1), y[keep] - y_mean)
        ki = k[i, keep]
        pred = y_mean + (ki - col - ki.mean() + all_) @ coef
        errors[i] = y[i] - pred
    return (errors**2).mean(axis=0)


def test_leave_one_out_is_exact() -> None:
    x, y = _data(n=30)
    log = FitLog()
    head = KernelRidgeHead(gammas=[0.5], alphas=[0.3]).fit(x, y, None, None, log)
    shortcut = np.array(log.info["krr"][0]["loo_mse"])
    np.testing.assert_allclose(shortcut, _brute_loo_mse(head.x_, y, 0.5, 0.3), rtol=1e-8)


def test_picks_per_target_and_beats_the_mean() -> None:
    x, y = _data(n=200)
    xv, yv = _data(n=100, seed=1)
    log = FitLog()
    head = KernelRidgeHead(gammas=[0.01, 0.5, 2.0], alphas=list(np.logspace(-3, 2, 11))).fit(x, y, xv, yv, log)
    pred = head.predict(xv)
    assert pred.shape == yv.shape and (pred >= 0).all() and (pred <= 1).all()
    mse = ((pred - yv) ** 2).mean(axis=0)
    assert (mse < ((yv - y.mean(axis=0)) ** 2).mean(axis=0) * 0.6).all()  # learns both non-linear targets
    assert head.choice_[0, 0] > 0.01  # sin(2x) needs a narrower kernel than the widest on offer


def test_save_and_load_predict_the_same(tmp_path) -> None:
    x, y = _data()
    head = KernelRidgeHead(gammas=[0.1, 1.0], alphas=[0.01, 1.0]).fit(x, y, None, None, FitLog())
    head.save(tmp_path)
    again = KernelRidgeHead.load(tmp_path)
    xv, _ = _data(n=7, seed=3)
    np.testing.assert_array_equal(again.predict(xv), head.predict(xv))


def test_too_many_rows_is_refused_with_what_to_use(monkeypatch) -> None:
    monkeypatch.setattr(kernel_head, "MAX_ROWS", 10)
    x, y = _data(n=11)
    with pytest.raises(ConfigError, match=r"krr.*11 training rows.*head: ridge"):
        KernelRidgeHead([0.1], [1.0]).fit(x, y, None, None, FitLog())
