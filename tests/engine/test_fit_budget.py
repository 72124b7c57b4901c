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


def _slow_run(out, budget_s: float, stop_at_epoch: int = 0):
    """Epochs of 2 batches of ~20 ms each under a budget; optionally killed at the end of an epoch."""
    import time

    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    loader = [(torch.randn(8, 2), torch.randn(8, 1))] * 2

    def step(b):
        time.sleep(0.02)
        return {"loss": nn.functional.mse_loss(model(b[0]), b[1])}

    def end(record):
        if stop_at_epoch and record["epoch"] == stop_at_epoch:
            raise KeyboardInterrupt

    cfg = FitConfig(epochs=200, lr=0.1, max_minutes=budget_s / 60, budget_schedule=True, progress=False, verbose=False)
    return fit(step, model, loader, cfg, out=out, on_epoch_end=end)


def test_budget_schedule_lasts_the_epochs_the_budget_allows_and_ends_annealed(tmp_path):
    hist = _slow_run(tmp_path / "a", 0.6)
    planned = int(0.6 // hist.epochs[0]["train_seconds"])
    # the planned epochs run (the budget may also be crossed by a hair on the last one: sleeps are not exact)
    assert 3 <= len(hist.epochs) == planned < 200
    lrs = [r["lr"] for r in hist.epochs]
    assert lrs[-1] < 0.02 * 0.1 + 1e-9 < max(lrs)  # annealed to (almost) zero within the budget
    plain = fit(lambda b: {"loss": nn.functional.mse_loss(nn.Linear(2, 1)(b[0]), b[1])}, nn.Linear(2, 1),
                [(torch.randn(8, 2), torch.randn(8, 1))], FitConfig(epochs=3, max_minutes=10, progress=False, verbose=False))
    assert len(plain.epochs) == 3  # without budget_schedule: cfg.epochs


def test_a_resumed_budgeted_run_keeps_the_plan_of_its_first_epoch(tmp_path):
    try:
        _slow_run(tmp_path, 0.6, stop_at_epoch=2)
    except KeyboardInterrupt:
        pass
    hist = _slow_run(tmp_path, 0.6)
    planned = int(0.6 // hist.epochs[0]["train_seconds"])
    assert len(hist.epochs) == planned and hist.epochs[-1]["lr"] < 0.002 + 1e-9
