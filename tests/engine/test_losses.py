import pytest
import torch

from xmodal.engine.losses import LOSSES, positives


def _pairs(n=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)
    return a


@pytest.mark.parametrize("name", LOSSES.names())
def test_matched_pairs_score_lower_than_shuffled(name):
    a = _pairs()
    scale, bias = torch.tensor(2.3), torch.tensor(0.0)
    loss = LOSSES.get(name)
    matched = loss(a, a.clone(), scale, bias)
    shuffled = loss(a, a.roll(1, 0), scale, bias)
    assert matched < shuffled


@pytest.mark.parametrize("name", LOSSES.names())
def test_gradients_reach_both_sides_and_temperature(name):
    a = _pairs().requires_grad_()
    b = _pairs(seed=1).requires_grad_()
    scale = torch.tensor(1.0, requires_grad=True)
    bias = torch.tensor(0.0, requires_grad=True)
    LOSSES.get(name)(a, b, scale, bias).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0 and scale.grad != 0


def test_positives_follow_labels():
    pos = positives(4, ["x", "y", "x", "z"], torch.device("cpu"))
    assert pos.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]
    assert torch.equal(positives(3, None, torch.device("cpu")), torch.eye(3))


def test_class_positives_do_not_penalise_same_class_pairs():
    """Without labels the loss rewards pushing two same-class samples apart; with labels it does not."""
    base = _pairs(4)
    same = torch.stack([base[0], base[0], base[2], base[3]])
    apart = same.clone()
    apart[1] = torch.nn.functional.normalize(base[0] + 0.8 * base[1], dim=0)
    scale, bias, labels = torch.tensor(3.0), torch.tensor(0.0), ["p", "p", "q", "r"]
    for name in LOSSES.names():
        loss = LOSSES.get(name)
        if name == "clip":  # softmax over a row: an unlabelled twin is a hard negative
            assert loss(apart, apart.clone(), scale, bias) < loss(same, same.clone(), scale, bias)
        assert loss(same, same.clone(), scale, bias, labels) < loss(apart, apart.clone(), scale, bias, labels), name


def test_siglip_loss_matches_reference_formula():
    a, b = _pairs(3), _pairs(3, seed=2)
    scale, bias = torch.tensor(2.0), torch.tensor(-1.0)
    logits = scale.exp() * a @ b.t() + bias
    signs = 2 * torch.eye(3) - 1
    expected = -torch.log(torch.sigmoid(signs * logits)).sum() / 3
    assert torch.allclose(LOSSES.get("siglip")(a, b, scale, bias), expected, atol=1e-6)


@pytest.mark.parametrize("name", LOSSES.names())
def test_a_positives_matrix_equals_the_labels_it_spells(name):
    a, b = _pairs(4), _pairs(4, seed=3)
    scale, bias, labels = torch.tensor(2.0), torch.tensor(-1.0), ["p", "p", "q", "r"]
    loss = LOSSES.get(name)
    mask = positives(4, labels, torch.device("cpu"))
    assert torch.allclose(loss(a, b, scale, bias, labels), loss(a, b, scale, bias, mask), atol=1e-6)


def test_clip_normalises_each_direction_of_a_non_transitive_mask():
    """Positives from repeated items on either side need not be classes: 0~1 (same a), 1~2 (same b)."""
    a, b = _pairs(3), _pairs(3, seed=4)
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 1], [0, 1, 1]])
    scale = torch.tensor(1.5)
    logits = scale.exp() * a @ b.t()
    expected = (-(mask / mask.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
                - (mask.t() / mask.t().sum(1, keepdim=True) * logits.t().log_softmax(1)).sum(1).mean()) / 2
    assert torch.allclose(LOSSES.get("clip")(a, b, scale, labels=mask), expected, atol=1e-6)


def test_mixed_targets_score_the_mixture_lowest_near_its_weights():
    """A sample mixed 0.7/0.3 from samples 0 and 1: the clip loss is lower for an embedding between b0 and b1
    than for b0 or b1 alone."""
    b = _pairs(3, d=16)
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    scale = torch.tensor(2.5)

    def loss_with(first):
        a = torch.stack([torch.nn.functional.normalize(first, dim=0), b[1], b[2]])
        return LOSSES.get("clip")(a, b, scale, labels=soft)

    between = loss_with(0.7 * b[0] + 0.3 * b[1])
    assert between < loss_with(b[0]) and between < loss_with(b[1])
