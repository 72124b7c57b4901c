"""The adapter strategy's placements: ST-Adapter (block inputs, temporal mixing) and Houlsby (sub-layers)."""

from __future__ import annotations

import pytest
import torch

import xmodal
from xmodal.errors import ConfigError
from xmodal.strategies.train import TransferConfig, build

CLASSES = ["moving left", "moving right", "growing"]
META = {"classes": CLASSES}


def _adapted(model, **options):
    clf = build(model, TransferConfig(strategy="adapter", options=options), META)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the up projections start at zero: move them so the adapters act
        for adapter in clf.added["adapters"]:
            adapter.up.weight.add_(0.5 * torch.randn(adapter.up.weight.shape, generator=g))
    return clf.eval()


@pytest.mark.parametrize("temporal", [True, False])
def test_temporal_adapter_mixes_neighbouring_frames(make_lit, clips, temporal):
    clf = _adapted(make_lit(), temporal=temporal)
    changed = clips.clone()
    changed[:, 0] += 1.0  # only the first frame of every clip changes
    with torch.no_grad():
        before, after = clf.sequence({"pixel_values": clips}), clf.sequence({"pixel_values": changed})
    assert before.shape == (3, clips.shape[1], 16)
    assert not torch.allclose(before[:, 0], after[:, 0])
    # frame 1 sees frame 0 only through the temporal convolution; two blocks with kernel 3 carry a
    # change two frames on, so frame 3 of 4 stays the same
    assert torch.allclose(before[:, 1], after[:, 1], atol=1e-6) is not temporal
    assert torch.allclose(before[:, 3], after[:, 3], atol=1e-6)


def test_positions_count_adapters_and_norms(make_lit):
    blocks = 2
    one = build(make_lit(), TransferConfig(strategy="adapter", options={"norms": False}), META)
    two = build(make_lit(), TransferConfig(strategy="adapter", options={"position": "sublayers"}), META)
    assert len(one.added["adapters"]) == blocks and len(two.added["adapters"]) == 2 * blocks
    norms = {n for n, p in two.named_parameters() if p.requires_grad and n.startswith("base.")}
    assert norms and all("norm" in n for n in norms)
    assert not any(p.requires_grad for n, p in one.named_parameters() if n.startswith("base."))
    with pytest.raises(ConfigError, match="position"):
        build(make_lit(), TransferConfig(strategy="adapter", options={"position": "everywhere"}), META)


def test_sublayer_adapters_act_on_a_transformers_clip(tiny_clip_dir):
    """transformers' attention returns a tuple: the adapter replaces its hidden states only."""
    clips = torch.randn(2, 2, 3, 30, 30, generator=torch.Generator().manual_seed(0))
    plain = build(xmodal.load(str(tiny_clip_dir)), TransferConfig(strategy="adapter", options={"position": "sublayers"}),
                  META).eval()
    with torch.no_grad():
        start = plain.sequence({"pixel_values": clips})  # zero-initialised adapters leave the base unchanged
        base = xmodal.load(str(tiny_clip_dir)).eval()
        assert torch.allclose(start, base.tower("image").trunk({"pixel_values": clips.flatten(0, 1)}).view(2, 2, -1),
                              atol=1e-5)
        moved = _adapted(xmodal.load(str(tiny_clip_dir)), position="sublayers").sequence({"pixel_values": clips})
    assert moved.shape == start.shape and not torch.allclose(moved, start)
