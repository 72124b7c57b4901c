"""Resuming ``fit`` mid-epoch and between checkpoint writes: the same weights as an uninterrupted
run, no duplicated log lines, and a kill inside a checkpoint write resumes from the previous one."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from xmodal.engine import checkpoint, faults
from xmodal.engine.fit import FitConfig, fit


class Killed(Exception):
    pass


def _setup(seed: int = 0):
    """A dropout MLP, a shuffled loader (its generator named) and a step that can be interrupted."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.3), nn.Tanh(), nn.Linear(16, 1))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 4, generator=g)
    data = TensorDataset(x, x.sum(1, keepdim=True))
    gen = torch.Generator().manual_seed(2)
    loader = DataLoader(data, batch_size=8, shuffle=True, generator=gen)
    return model, loader, gen


def _train(out, stop_after: int | None = None, seed: int = 0):
    model, loader, gen = _setup(seed)
    calls = []

    def step(batch):
        calls.append(1)
        if stop_after is not None and len(calls) > stop_after:
            raise Killed
        return {"loss": nn.functional.mse_loss(model(batch[0]), batch[1])}

    cfg = FitConfig(epochs=3, lr=0.05, progress=False, verbose=False, checkpoint_every=2, grad_accum=1)
    fit(step, model, loader, cfg, out=out, generators={"shuffle": gen})
    return model


def _epochs(out):
    return [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("stops", [[3], [7, 2], [5, 1, 4], [12, 1]])
def test_interrupted_anywhere_resumes_to_the_uninterrupted_weights(tmp_path, stops):
    whole = _train(tmp_path / "whole")
    for k, stop in enumerate(stops):
        with pytest.raises(Killed):
            # a re-run starts with other weights and RNG states (a fresh run, seeded like ``whole``, does not)
            _train(tmp_path / "run", stop_after=stop, seed=100 * k)
    resumed = _train(tmp_path / "run", seed=7)
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    assert _epochs(tmp_path / "run") == [1, 2, 3]


def test_a_kill_inside_a_checkpoint_write_resumes_from_the_previous_commit(tmp_path, monkeypatch):
    passed = []

    def kill(name):
        passed.append(name)
        if name == "checkpoint.written" and passed.count(name) == 4:
            raise Killed

    monkeypatch.setattr(checkpoint, "kill_point", kill)
    with pytest.raises(Killed):
        _train(tmp_path / "run")
    state = tmp_path / "run" / "train_state"
    assert json.loads((state / "latest.json").read_text())["checkpoint"] == "ckpt-000003"
    assert sorted(d.name for d in state.iterdir() if d.is_dir()) == ["ckpt-000003", "ckpt-000004"]
    assert _epochs(tmp_path / "run") == [1]  # epoch 2 never finished
    monkeypatch.setattr(checkpoint, "kill_point", faults.kill_point)
    whole, resumed = _train(tmp_path / "whole"), _train(tmp_path / "run")
    assert all(torch.equal(a, b) for a, b in zip(whole.parameters(), resumed.parameters()))
    assert [d.name for d in state.iterdir() if d.is_dir()] == ["ckpt-000009"]


def test_a_finished_run_trains_nothing_more(tmp_path, capsys):
    first = _train(tmp_path / "run")
    model, loader, gen = _setup(5)
    step = lambda batch: pytest.fail("a finished run trained")  # noqa: E731
    fit(step, model, loader, FitConfig(epochs=3, progress=False), out=tmp_path / "run", generators={"shuffle": gen})
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), model.parameters()))
    assert "already finished" in capsys.readouterr().out


def test_a_state_from_an_older_layout_is_a_checkpoint_error(tmp_path):
    from xmodal.errors import CheckpointError

    (tmp_path / "train_state").mkdir()
    (tmp_path / "train_state" / "state.json").write_text("{}")
    with pytest.raises(CheckpointError, match="older xmodal"):
        _train(tmp_path)
