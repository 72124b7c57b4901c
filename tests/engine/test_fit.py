import json

import pytest
import torch
from torch import nn

from xmodal.engine.fit import FitConfig, fit, freeze_eval


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    loader = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    return loader


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _step(model):
    return lambda batch: {"loss": nn.functional.mse_loss(model(batch[0]), batch[1])}


def test_fit_reduces_loss_and_logs(tmp_path):
    model = _model()
    cfg = FitConfig(epochs=15, lr=0.05, progress=False)
    hist = fit(_step(model), model, _problem(), cfg, out=tmp_path)
    assert hist.epochs[-1]["loss"] < 0.3 * hist.epochs[0]["loss"]
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 15 and json.loads(lines[-1])["epoch"] == 15


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    loader = _problem()
    full = _model()
    fit(_step(full), full, loader, FitConfig(epochs=4, lr=0.05, progress=False))

    part = _model()

    def kill_at_third_epoch(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_step(part), part, loader, FitConfig(epochs=4, lr=0.05, progress=False), out=tmp_path,
            on_epoch_start=kill_at_third_epoch)
    resumed = _model()  # a fresh process: weights come back from the checkpoint
    hist = fit(_step(resumed), resumed, loader, FitConfig(epochs=4, lr=0.05, progress=False), out=tmp_path)
    assert [e["epoch"] for e in hist.epochs] == [1, 2, 3, 4]
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_early_stopping_on_monitored_metric():
    model = _model()
    scores = iter([0.5, 0.6, 0.55, 0.54, 0.53, 0.9])
    cfg = FitConfig(epochs=6, lr=0.01, patience=2, monitor="acc", progress=False)
    hist = fit(_step(model), model, _problem(), cfg, evaluate=lambda: {"acc": next(scores)})
    assert hist.stopped_early and len(hist.epochs) == 4 and hist.best["acc"] == 0.6


def test_only_trainable_parameters_change():
    model = _model()
    model[0].requires_grad_(False)
    before = model[0].weight.clone()
    fit(_step(model), model, _problem(), FitConfig(epochs=2, lr=0.05, progress=False))
    assert torch.equal(before, model[0].weight)


def test_frozen_modules_run_in_eval_mode():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)))
    model[2].requires_grad_(False)
    model.train()
    freeze_eval(model)
    assert model[2].training is False and model[2][1].training is False
    assert model[0].training and model[1].training


def test_no_trainable_parameters_is_an_error():
    model = _model().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        fit(_step(model), model, _problem(), FitConfig(epochs=1, progress=False))


def test_lr_scales_give_prefixed_parameters_their_own_rate():
    from xmodal.engine.fit import param_groups

    model = torch.nn.ModuleDict({"base": torch.nn.Linear(3, 3), "added": torch.nn.Linear(3, 2)})
    groups = param_groups(model.named_parameters(), 0.05, lr=1e-2, lr_scales={"base.": 0.1})
    rates = {(g["lr"], g["weight_decay"]): len(g["params"]) for g in groups}
    assert rates == {(1e-2, 0.05): 1, (1e-3, 0.05): 1, (1e-2, 0.0): 1, (1e-3, 0.0): 1}
    assert param_groups(model.named_parameters(), 0.05)[0].get("lr") is None  # optimizer default


def test_other_scalars_of_the_step_are_averaged_into_the_record(tmp_path):
    model = _model()
    seen = []

    def step(batch):
        loss = nn.functional.mse_loss(model(batch[0]), batch[1])
        return {"loss": loss, "half": loss.detach() / 2, "const": 3.0, "vector": torch.ones(3)}

    hist = fit(step, model, _problem(), FitConfig(epochs=2, lr=0.05, progress=False), out=tmp_path,
               on_epoch_end=lambda record: seen.append(dict(record)))
    first = hist.epochs[0]
    assert first["half"] == pytest.approx(first["loss"] / 2) and first["const"] == 3.0 and "vector" not in first
    assert [r["epoch"] for r in seen] == [1, 2]
    assert "half" in json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])


def test_the_optimizer_is_fused_adamw_for_cpu_float_parameters():
    from xmodal.engine.fit import _optimizer

    named = list(nn.Linear(3, 2).named_parameters())
    optimizer, _ = _optimizer(named, batches=4, cfg=FitConfig(epochs=1))
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True


@pytest.mark.parametrize("rows,batch", [(24, 3), (20, 4)])  # 8 batches; 5 (the last step accumulates one)
def test_accumulating_two_batches_steps_like_one_batch_of_twice_the_rows(rows, batch):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(rows, 4, generator=g), torch.randn(rows, 1, generator=g)
    trained = []
    for size, accum in ((batch, 2), (2 * batch, 1)):
        model = _model()  # no batch statistics: a mean loss over 2B rows = the mean of two B-row means
        loader = [(x[i : i + size], y[i : i + size]) for i in range(0, rows, size)]
        cfg = FitConfig(epochs=3, lr=0.05, grad_accum=accum, warmup_ratio=0.3, max_grad_norm=0.5, progress=False,
                        verbose=False)
        hist = fit(_step(model), model, loader, cfg)
        trained.append((torch.cat([p.detach().flatten() for p in model.parameters()]), hist.epochs[-1]["lr"]))
    (a, lr_a), (b, lr_b) = trained
    assert torch.allclose(a, b, atol=1e-5) and lr_a == pytest.approx(lr_b)
    assert not torch.allclose(a, torch.cat([p.detach().flatten() for p in _model().parameters()]), atol=1e-3)
