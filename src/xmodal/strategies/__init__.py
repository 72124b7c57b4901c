"""Image-to-video transfer strategies (one file each, registered by name) and ``transfer``, their
training entry point on the one engine."""

from xmodal.strategies import (  # noqa: F401  (registers the strategies)
    adapter,
    distill,
    full,
    linear_probe,
    lora,
    partial,
    prompt,
    side_network,
    temporal_head,
    zero_shot,
)
from xmodal.strategies.base import STRATEGIES, Strategy, VideoClassifier, load_transfer  # noqa: F401,E402
from xmodal.strategies.train import TransferConfig, transfer  # noqa: F401,E402

