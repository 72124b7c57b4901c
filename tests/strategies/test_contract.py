"""Contract over every (strategy, task) pair: only the strategy's and the head's own parameters train,
save -> load reproduces the outputs, on the LiT ViT and on a tiny transformers CLIP."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import xmodal
from xmodal.config import from_dict
from xmodal.engine.fit import FitConfig, fit
from xmodal.errors import ConfigError
from xmodal.strategies import STRATEGIES, load_transfer, save_transfer
from xmodal.strategies.data import ClipSet
from xmodal.strategies.train import TransferConfig, build, clip_inputs, predict, training_step
from xmodal.tasks import TASKS

CLASSES = ["moving left", "moving right", "growing"]
ROWS = [{"path": f"{k}.mp4", "label": c, "caption": f"a shape {c}", "query": f"the shape {c}", "start": 0.5 * k,
         "end": 0.5 * k + 1.0, "duration": 2.0, "question": "what does the shape do?", "choices": CLASSES,
         "answer": c} for k, c in enumerate(CLASSES)]
PAIRS = [(s, t) for t in TASKS.names() for s in STRATEGIES.names()]
TINY: dict[str, dict] = {  # task options that fit the tiny models (tasks that sample frames take the clips' count)
    "qa": {"width": 8, "heads": 2, "layers": 1},
    "caption": {"max_length": 6, "width": 16, "layers": 1, "heads": 2, "prefix_length": 2, "mapper_layers": 1, "beams": 2},
}


MULTI = ["ground", "qa", "caption"]  # the tasks of the multi-task pairs (one row each)


def tiny_options(task: str, frames: int) -> dict:
    """Options of ``task`` for the tiny clips (tasks that sample frames take the clips' count)."""
    if task == "multi":
        return {"tasks": MULTI, "options": {t: tiny_options(t, frames) for t in MULTI}}
    fields = {f.name for f in dataclasses.fields(TASKS.get(task).config_cls)}
    return {**({"num_frames": frames} if "num_frames" in fields else {}), **TINY.get(task, {})}


def rows_for(task: str) -> list[dict]:
    """ROWS, each naming one of the multi-task tasks in turn when ``task`` is ``multi``."""
    return [{**r, "task": MULTI[i % len(MULTI)]} for i, r in enumerate(ROWS)] if task == "multi" else ROWS


def close(a, b, atol: float = 1e-5) -> bool:
    """Outputs equal: floating tensors to ``atol``, integer ones (token ids) exactly, dicts key by key."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], atol) for k in a)
    return torch.allclose(a, b, atol=atol) if a.is_floating_point() else torch.equal(a, b)


def finite(a) -> bool:
    if isinstance(a, dict):
        return all(finite(v) for v in a.values())
    return bool(torch.isfinite(a.float()).all())


def _made(model, strategy: str, task: str, clips: torch.Tensor, **options):
    """A built VideoModel and a ClipSet of ``clips`` (one row per clip) with the task's targets."""
    t = TASKS.get(task)
    cfg = TransferConfig(task=task, strategy=strategy, options=options, task_options=tiny_options(task, clips.shape[1]))
    tcfg = from_dict(t.config_cls, cfg.task_options)
    rows = rows_for(task)
    meta = t.meta(rows, tcfg)
    vm = build(model, cfg, meta)
    data = ClipSet(clips, torch.arange(len(clips)), t.targets(rows, meta, tcfg, "rows"), [r["path"] for r in rows], rows)
    return vm, data


def _train_a_little(vm, data: ClipSet, steps: int = 2) -> dict[str, torch.Tensor]:
    inputs = {k: v.detach() for k, v in clip_inputs(vm, data, 8).items()}
    if any(p.requires_grad for p in vm.parameters()):
        fit(training_step(vm, data, inputs), vm, [torch.arange(len(data))] * steps,
            FitConfig(epochs=1, lr=1e-2, progress=False, verbose=False, warmup_ratio=0))
    vm.eval()
    return inputs


def _perturb(vm) -> None:
    """Move every trainable weight so that zero-initialised parts (LoRA B, adapter up) are non-trivial."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in vm.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def _outputs(vm, data: ClipSet) -> tuple[torch.Tensor, torch.Tensor]:
    """The video-only output and the task's predictions (which read the texts too)."""
    with torch.no_grad():
        return vm(data.pixels), predict(vm, data, clip_inputs(vm, data, 8))


def test_every_strategy_has_config_paper_and_flag():
    assert {"zero_shot", "linear_probe", "temporal_head", "side_network", "distill", "full", "partial", "adapter",
            "lora", "prompt", "extra"} <= set(STRATEGIES.names())
    for name in STRATEGIES.names():
        s = STRATEGIES.get(name)
        assert isinstance(s.frozen, bool) and s.paper and s.config_cls()
        assert s.__class__.__module__.startswith("xmodal.strategies.")


@pytest.mark.parametrize("strategy,task", PAIRS)
def test_only_own_parameters_train(strategy, task, make_lit, clips):
    vm, data = _made(make_lit(), strategy, task, clips)
    before = {n: p.detach().clone() for n, p in vm.named_parameters()}
    trainable = {n for n, p in vm.named_parameters() if p.requires_grad}
    assert trainable <= set(vm.own_state()), f"trainable parameters not saved: {sorted(trainable - set(vm.own_state()))[:3]}"
    if vm.frozen:
        added = {id(p) for p in [*vm.added.parameters(), *vm.head.parameters()]}
        assert not any(p.requires_grad for p in vm.base.parameters() if id(p) not in added)
    _train_a_little(vm, data)
    after = dict(vm.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed <= trainable, f"frozen parameters changed: {sorted(changed - trainable)[:3]}"
    assert bool(changed) == bool(trainable) == vm.trains


@pytest.mark.parametrize("strategy,task", PAIRS)
def test_save_load_reproduces_outputs(strategy, task, make_lit, clips, tmp_path):
    base = make_lit()
    base_dir = base.save_pretrained(tmp_path / "base")
    vm, data = _made(base, strategy, task, clips)
    _train_a_little(vm, data)
    _perturb(vm)
    video, predictions = _outputs(vm, data)
    save_transfer(vm, tmp_path / "t", base_dir)
    assert {p.name for p in (tmp_path / "t").iterdir()} == {"transfer.json", "strategy.safetensors", "README.md"}
    loaded = load_transfer(tmp_path / "t")
    assert loaded.strategy == strategy and loaded.task == task and loaded.meta == vm.meta
    again = _outputs(loaded, data)
    assert close(again[0], video) and close(again[1], predictions)


@pytest.mark.parametrize("strategy,task", PAIRS)
def test_runs_and_reloads_on_a_transformers_clip(strategy, task, tiny_clip_dir, tmp_path):
    clips = torch.randn(3, 2, 3, 30, 30, generator=torch.Generator().manual_seed(0))
    vm, data = _made(xmodal.load(str(tiny_clip_dir)), strategy, task, clips)
    _train_a_little(vm, data, steps=1)
    _perturb(vm)
    video, predictions = _outputs(vm, data)
    assert finite(video) and finite(predictions)
    save_transfer(vm, tmp_path / "t", tiny_clip_dir)
    again = _outputs(load_transfer(tmp_path / "t"), data)
    assert close(again[0], video) and close(again[1], predictions)


def test_lora_merged_equals_unmerged(make_lit, clips):
    from torch import nn

    vm, _ = _made(make_lit(), "lora", "classify", clips, targets=["q_proj", "v_proj", "mlp.0"])
    _perturb(vm)
    vm.eval()
    with torch.no_grad():
        unmerged = vm(clips)
        vm.merge()
        merged = vm(clips)
    assert torch.allclose(merged, unmerged, atol=1e-5)
    assert not any("lora_" in n for n, _ in vm.named_parameters())
    assert type(vm.vision.blocks()[0].attn.q_proj) is nn.Linear


@pytest.mark.parametrize("name", ["adapter", "lora", "prompt", "side_network", "partial"])
def test_block_strategies_reject_a_convnet_clearly(name, make_lit, clips):
    with pytest.raises(ConfigError, match="transformer vision tower"):
        _made(make_lit("convnet"), name, "classify", clips)


def test_unknown_names_and_options_are_config_errors(make_lit, clips):
    with pytest.raises(ConfigError, match="unknown strategy"):
        _made(make_lit(), "nope", "classify", clips)
    with pytest.raises(ConfigError, match="unknown task"):
        build(make_lit(), TransferConfig(task="nope"), {})
    with pytest.raises(ConfigError, match="unknown key"):
        _made(make_lit(), "lora", "classify", clips, rnak=2)
    with pytest.raises(ConfigError, match="trains nothing"):
        _made(make_lit(), "extra", "classify", clips, base="zero_shot")


@pytest.mark.parametrize("inner", [s for s in STRATEGIES.names() if s not in ("extra", "zero_shot")])
def test_extra_wraps_every_trainable_strategy(inner, make_lit, clips, tmp_path):
    base = make_lit()
    base_dir = base.save_pretrained(tmp_path / "base")
    vm, data = _made(base, "extra", "classify", clips, base=inner)
    assert "motion" in vm.added
    motion = {n for n, p in vm.named_parameters() if n.startswith("added.motion.")}
    assert motion and all(p.requires_grad for n, p in vm.named_parameters() if n in motion)
    _train_a_little(vm, data)
    _perturb(vm)
    video, predictions = _outputs(vm, data)
    save_transfer(vm, tmp_path / "t", base_dir)
    again = _outputs(load_transfer(tmp_path / "t"), data)
    assert close(again[0], video) and close(again[1], predictions)


def test_motion_stream_sees_frame_order(make_lit, clips):
    from xmodal.strategies.extra import frame_differences

    diffs = frame_differences(clips)
    assert torch.allclose(diffs[:, 1], clips[:, 2] - clips[:, 0]) and torch.allclose(diffs[:, 0], clips[:, 1] - clips[:, 0])
    assert torch.allclose(frame_differences(clips.flip(1)), -diffs.flip(1))  # played backwards: the stream flips sign


@pytest.mark.parametrize("strategy,task", PAIRS)
def test_trains_at_bf16_and_keeps_every_weight_fp32(strategy, task, make_lit, clips):
    """At bf16 the frozen base is held in bf16 while it trains: every pair still trains only its own
    parameters, to finite outputs, and leaves every weight fp32 with the frozen ones bit-identical."""
    vm, data = _made(make_lit(), strategy, task, clips)
    before = {n: p.detach().clone() for n, p in vm.named_parameters()}
    inputs = {k: v.detach() for k, v in clip_inputs(vm, data, 8).items()}
    if vm.trains:
        fit(training_step(vm, data, inputs), vm, [torch.arange(len(data))] * 2,
            FitConfig(epochs=1, lr=1e-2, progress=False, verbose=False, warmup_ratio=0, precision="bf16"))
    assert all(p.dtype == torch.float32 for p in vm.parameters())
    changed = {n for n, p in vm.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed <= {n for n, p in vm.named_parameters() if p.requires_grad}
    assert finite(_outputs(vm.eval(), data)[0])
