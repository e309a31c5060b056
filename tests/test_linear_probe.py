"""frozen's linear probe (bench.run.linear_probe): it solves the objective it claims (checked against scikit-learn's
logistic regression and the ridge normal equations), selects the L2 strength on validation, and runs inside the
loop on cached features. Run: `.venv/bin/python -m pytest tests/test_linear_probe.py -q`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bench.catalog import METHODS, TASKS, resolve
from bench.core.api import Cell, Split, TrainConfig
from bench.core.model import make_head
from bench.run.linear_probe import fit_linear_probe
from bench.run.loop import Runner
from bench.run.model import AdaptModel


def _data(n=200, d=8, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d, classes))
    y = (x @ w + rng.normal(scale=1.0, size=(n, classes))).argmax(1)
    return torch.from_numpy(x), torch.from_numpy(y)


def _ce(out, y):
    return nn.functional.cross_entropy(out, y)


def test_the_probe_solves_l2_regularised_logistic_regression_like_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    l2 = 1e-2
    head = nn.Linear(x.shape[1], 3)
    fit_linear_probe(head, x, y, _ce, (l2,), lambda: (0.0, {}), max_iter=500)
    ref = LogisticRegression(C=1.0 / (l2 * len(x)), tol=1e-10, max_iter=5000).fit(x.numpy(), y.numpy())
    ours = torch.softmax(head(x), 1).detach().numpy()
    np.testing.assert_allclose(ours, ref.predict_proba(x.numpy()), atol=2e-3)


def test_the_probe_solves_ridge_for_regression():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 5))
    y = x @ rng.normal(size=5) + 0.5 + rng.normal(scale=0.3, size=100)
    l2 = 0.1
    head = nn.Linear(5, 1)

    def mse(out, target):
        return nn.functional.mse_loss(out.squeeze(-1), target)

    fit_linear_probe(head, torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), mse, (l2,),
                     lambda: (0.0, {}), max_iter=500)  # fmt: skip
    # normal equations of mean((xw + b - y)^2) + l2/2 |w|^2, bias unpenalised
    n = len(x)
    a = np.hstack([x, np.ones((n, 1))])
    reg = np.diag([l2 * n / 2] * 5 + [0.0])
    expected = np.linalg.solve(a.T @ a + reg, a.T @ y)
    got = np.concatenate([head.weight.detach().numpy()[0], head.bias.detach().numpy()])
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_the_strength_with_the_best_validation_score_is_kept_and_ties_go_to_the_stronger():
    x, y = _data(n=60, d=30, seed=2)  # few examples, many features: the strengths give different heads
    xv, yv = _data(n=300, d=30, seed=3)
    head = nn.Linear(30, 3)

    def validate():
        with torch.no_grad():
            acc = float((head(xv).argmax(1) == yv).float().mean())
        return acc, {"val/accuracy": acc}

    grid = (1e-4, 1e-2, 1.0)
    fit = fit_linear_probe(head, x, y, _ce, grid, validate)
    assert [h["l2"] for h in fit.history] == [1.0, 1e-2, 1e-4], "a path from the strongest strength"
    scores = {h["l2"]: h["val/accuracy"] for h in fit.history}
    best = max(scores.values())
    assert grid[fit.best] == max(k for k, v in scores.items() if v == best)
    assert validate()[0] == best, "the head is left at the selected strength"

    flat = fit_linear_probe(nn.Linear(30, 3), x, y, _ce, grid, lambda: (0.5, {}))
    assert grid[flat.best] == 1.0, "a tie keeps the stronger regularisation"


def test_a_diverging_probe_raises():
    x, y = _data(n=20)
    x[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="diverged"):
        fit_linear_probe(nn.Linear(8, 3), x, y, _ce, (1e-3,), lambda: (0.0, {}))


def test_frozen_fits_its_head_by_lbfgs_inside_the_loop_and_records_the_selected_strength(load_named):
    loaded = load_named("tiny-timm")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(48, 28, 28), dtype=np.uint8)
    labels = np.arange(48) % 2
    images[labels == 1, :14] = 255  # a learnable signal
    train = Split("train", images[:32], labels[:32], np.arange(32))
    val = Split("val", images[32:], labels[32:], np.arange(32, 48))
    model = AdaptModel(loaded.encoder, make_head(loaded.feature_dim, 2))
    runner = Runner(model, loaded.batcher, TASKS.get("pneumonia-mnist")(), TrainConfig(eval_batch_size=8), "cpu")
    method = METHODS.get("frozen")()
    method.prepare(model, None, None)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    fit = runner.fit(method, train, val, seed=0)
    assert runner.notes["probe"] == "lbfgs" and runner.notes["probe_l2"] in method.l2
    assert [h["l2"] for h in fit.history] == sorted(method.l2, reverse=True)
    assert fit.best_val["auroc"] == max(h["val/auroc"] for h in fit.history)
    assert fit.steps > 0 and fit.train_samples_per_s is None and fit.head_time_s > 0
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in encoder_before.items())


def test_l2_grids_are_read_from_settings_and_bad_ones_are_refused():
    res = resolve(Cell("pneumonia-mnist", "frozen", 64, 0, {"l2": "1e-3,1e-2"}))
    assert res.method.l2 == (1e-3, 1e-2)
    assert resolve(Cell("pneumonia-mnist", "frozen", 64, 0, {"l2": [0.1]})).method.l2 == (0.1,)
    with pytest.raises(ValueError, match="Invalid value for l2"):
        resolve(Cell("pneumonia-mnist", "frozen", 64, 0, {"l2": "small"}))
    with pytest.raises(ValueError, match="Invalid l2"):
        resolve(Cell("pneumonia-mnist", "frozen", 64, 0, {"l2": "-1"}))
