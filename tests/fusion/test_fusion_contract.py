"""Every registered fusion honours the contract: logits ``[B, C]`` from token streams, trainable,
and an absent modality cannot change the output (its placeholder tokens are ignored)."""

from __future__ import annotations

import pytest
import torch

from xmodal.fusion import FUSIONS, Fusion, FusionParams, modality_dropout

WIDTHS = {"image": 12, "audio": 8, "series": 6}
TOKENS = {"image": 5, "audio": 7, "series": 3}


def _tokens(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(4, TOKENS[m], w, generator=g) for m, w in WIDTHS.items()}


def test_builtin_fusions_registered() -> None:
    assert {"early", "late", "cross_attention"} <= set(FUSIONS.names())


@pytest.mark.parametrize("name", FUSIONS.names())
def test_fusion_contract(name: str) -> None:
    torch.manual_seed(0)
    fusion = FUSIONS.get(name)(WIDTHS, 5, FusionParams(dim=16, depth=1, heads=2, bottlenecks=2, dropout=0.0))
    assert isinstance(fusion, Fusion)
    present = {m: torch.ones(4, dtype=torch.bool) for m in WIDTHS}
    logits = fusion(_tokens(0), present)
    assert logits.shape == (4, 5) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in fusion.parameters())


@pytest.mark.parametrize("name", FUSIONS.names())
def test_missing_modality_is_ignored(name: str) -> None:
    """Per sample, any subset may be absent; what absent inputs hold must not matter."""
    torch.manual_seed(0)
    fusion = FUSIONS.get(name)(WIDTHS, 3, FusionParams(dim=16, depth=2, heads=2, bottlenecks=2, dropout=0.0)).eval()
    present = {"image": torch.tensor([True, False, True, False]), "audio": torch.tensor([True, True, False, False]),
               "series": torch.tensor([False, True, True, True])}
    a, b = _tokens(0), _tokens(1)
    mixed = {m: torch.where(present[m][:, None, None], a[m], b[m]) for m in WIDTHS}
    with torch.no_grad():
        out_a, out_mixed = fusion(a, present), fusion(mixed, present)
    assert torch.allclose(out_a, out_mixed, atol=1e-5)
    with torch.no_grad():  # and the absent modality changes nothing compared with a model that never had it
        alone = fusion(a, {"image": present["image"] & False, "audio": torch.ones(4, dtype=torch.bool),
                           "series": present["series"] & False})
    assert torch.isfinite(alone).all()


def test_modality_dropout_keeps_one_per_sample() -> None:
    present = {"image": torch.ones(1000, dtype=torch.bool), "audio": torch.tensor([True, False] * 500)}
    out = modality_dropout(present, 0.5, torch.Generator().manual_seed(0))
    both = torch.stack(list(out.values()), 1)
    assert both.any(1).all()  # nobody loses every modality
    assert not (out["audio"] & ~present["audio"]).any()  # nothing absent becomes present
    assert 0.3 < out["image"].float().mean() < 0.9
    assert modality_dropout(present, 0.0) is present
