"""FitConfig.restore_best and FitConfig.max_minutes (used by the transfer strategies)."""

import torch
from torch import nn

from xmodal.engine.fit import FitConfig, fit


def test_restore_best_puts_back_the_best_epoch_weights():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    scores = iter([0.1, 0.9, 0.2, 0.3])
    snapshots = []

    def evaluate():
        snapshots.append(model.weight.detach().clone())
        return {"val": next(scores)}

    loader = [(torch.randn(8, 2), torch.randn(8, 1))]
    step = lambda b: {"loss": nn.functional.mse_loss(model(b[0]), b[1])}  # noqa: E731
    hist = fit(step, model, loader, FitConfig(epochs=4, lr=0.1, monitor="val", restore_best=True, progress=False, verbose=False), evaluate)
    assert hist.best["epoch"] == 2
    assert torch.equal(model.weight, snapshots[1])


def test_max_minutes_stops_after_the_budget():
    model = nn.Linear(2, 1)
    loader = [(torch.randn(8, 2), torch.randn(8, 1))]
    step = lambda b: {"loss": nn.functional.mse_loss(model(b[0]), b[1])}  # noqa: E731
    hist = fit(step, model, loader, FitConfig(epochs=50, max_minutes=1e-9, progress=False, verbose=False))
    assert len(hist.epochs) == 1 and hist.stopped_early
