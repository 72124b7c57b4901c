"""Contract over every registered strategy: only its own parameters train, save -> load reproduces
the outputs, and it runs on a transformers CLIP model as well as on the LiT ViT."""

from __future__ import annotations

import pytest
import torch

import xmodal
from xmodal.engine.fit import FitConfig, fit
from xmodal.strategies import STRATEGIES, load_transfer
from xmodal.strategies.train import TransferConfig, build

CLASSES = ["moving left", "moving right", "growing"]
ALL = STRATEGIES.names()


def _train_a_little(clf, clips: torch.Tensor, steps: int = 2) -> None:
    labels = torch.tensor([0, 1, 2])
    inputs = clf.cache_inputs(clips) if clf.frozen else {"pixel_values": clips}
    inputs = {k: v.detach() for k, v in inputs.items()}
    if any(p.requires_grad for p in clf.parameters()):
        fit(lambda _: clf.loss(inputs, labels), clf, [0] * steps, FitConfig(epochs=1, lr=1e-2, progress=False, verbose=False, warmup_ratio=0))
    clf.eval()


def _perturb(clf) -> None:
    """Move every trainable weight so that zero-initialised parts (LoRA B, adapter up) are non-trivial."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in clf.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def test_every_strategy_has_config_paper_and_flag():
    assert {"zero_shot", "linear_probe", "temporal_head", "side_network", "distill", "full", "partial", "adapter",
            "lora", "prompt"} <= set(ALL)
    for name in ALL:
        s = STRATEGIES.get(name)
        assert isinstance(s.frozen, bool) and s.paper and s.config_cls()
        assert STRATEGIES.get(name).__class__.__module__.startswith("xmodal.strategies.")


@pytest.mark.parametrize("name", ALL)
def test_only_own_parameters_train(name, make_lit, clips):
    clf = build(make_lit(), CLASSES, TransferConfig(strategy=name))
    before = {n: p.detach().clone() for n, p in clf.named_parameters()}
    trainable = {n for n, p in clf.named_parameters() if p.requires_grad}
    own = set(clf.own_state())
    assert trainable <= own, f"{name}: trainable parameters not saved as its own: {sorted(trainable - own)[:3]}"
    if STRATEGIES.get(name).frozen:
        assert not any(p.requires_grad for p in clf.base.parameters() if p not in set(clf.added.parameters()))
    _train_a_little(clf, clips)
    after = dict(clf.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed <= trainable, f"{name}: frozen parameters changed: {sorted(changed - trainable)[:3]}"
    assert bool(changed) == bool(trainable)


@pytest.mark.parametrize("name", ALL)
def test_save_load_reproduces_outputs(name, make_lit, clips, tmp_path):
    base = make_lit()
    base_dir = base.save_pretrained(tmp_path / "base")
    clf = build(base, CLASSES, TransferConfig(strategy=name))
    _train_a_little(clf, clips)
    _perturb(clf)
    with torch.no_grad():
        expected = clf(clips)
    clf.save(tmp_path / "t", base_dir)
    saved = {p.name for p in (tmp_path / "t").iterdir()}
    assert saved == {"transfer.json", "strategy.safetensors"}
    loaded = load_transfer(tmp_path / "t")
    with torch.no_grad():
        assert torch.allclose(loaded(clips), expected, atol=1e-5)
    assert loaded.classes == CLASSES and loaded.strategy == name


def test_lora_merged_equals_unmerged(make_lit, clips):
    from torch import nn

    clf = build(make_lit(), CLASSES, TransferConfig(strategy="lora", options={"targets": ["q_proj", "v_proj", "mlp.0"]}))
    _perturb(clf)
    clf.eval()
    with torch.no_grad():
        unmerged = clf(clips)
        clf.merge()
        merged = clf(clips)
    assert torch.allclose(merged, unmerged, atol=1e-5)
    assert not any("lora_" in n for n, _ in clf.named_parameters())
    assert type(clf.vision.trunk_net.blocks[0].attn.q_proj) is nn.Linear


@pytest.mark.parametrize("name", ALL)
def test_runs_on_a_transformers_clip(name, tiny_clip_dir, tmp_path):
    base = xmodal.load(str(tiny_clip_dir))
    clips = torch.randn(3, 2, 3, 30, 30, generator=torch.Generator().manual_seed(0))
    clf = build(base, CLASSES, TransferConfig(strategy=name))
    _train_a_little(clf, clips, steps=1)
    _perturb(clf)
    with torch.no_grad():
        logits = clf(clips)
        emb = clf.embed(clips)
    assert logits.shape == (3, 3) and torch.isfinite(logits).all()
    assert emb.shape == (3, base.embed_dim)
    clf.save(tmp_path / "t", tiny_clip_dir)
    with torch.no_grad():
        assert torch.allclose(load_transfer(tmp_path / "t")(clips), logits, atol=1e-5)


@pytest.mark.parametrize("name", ["adapter", "lora", "prompt", "side_network", "partial"])
def test_block_strategies_reject_a_convnet_clearly(name, make_lit):
    with pytest.raises(xmodal.errors.ConfigError if hasattr(xmodal, "errors") else Exception, match="transformer vision tower"):
        build(make_lit("convnet"), CLASSES, TransferConfig(strategy=name))


def test_unknown_strategy_and_option_are_config_errors(make_lit):
    from xmodal.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown strategy"):
        build(make_lit(), CLASSES, TransferConfig(strategy="nope"))
    with pytest.raises(ConfigError, match="unknown key"):
        build(make_lit(), CLASSES, TransferConfig(strategy="lora", options={"rnak": 2}))
