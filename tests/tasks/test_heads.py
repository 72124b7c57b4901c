import pytest
import torch

from xmodal.errors import ConfigError
from xmodal.tasks.heads import KINDS, HeadConfig, TemporalHead


@pytest.mark.parametrize("kind", KINDS)
def test_head_shapes_and_order_sensitivity(kind):
    torch.manual_seed(0)
    head = TemporalHead(12, 5, HeadConfig(kind=kind, width=8)).eval()
    x = torch.randn(3, 6, 12)
    out, rev = head(x), head(x.flip(1))
    assert out.shape == (3, 5)
    assert torch.allclose(out, rev, atol=1e-5) is (kind in ("mean", "linear"))  # only averaging is blind to time order


def test_head_config_errors():
    with pytest.raises(ConfigError, match="kind"):
        TemporalHead(4, 2, HeadConfig(kind="lstm"))
    with pytest.raises(ConfigError, match="frames"):
        TemporalHead(4, 2, HeadConfig(max_frames=2))(torch.randn(1, 3, 4))
