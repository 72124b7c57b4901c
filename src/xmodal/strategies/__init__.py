"""Image-to-video transfer strategies (one file each, registered by name) and ``transfer``, their
training entry point on the one engine, for any task of ``xmodal.tasks``."""

from xmodal.strategies import (  # noqa: F401  (registers the strategies)
    adapter,
    distill,
    embedder,
    extra,
    full,
    linear_probe,
    lora,
    partial,
    prompt,
    side_network,
    temporal_head,
    zero_shot,
)
from xmodal.strategies.base import STRATEGIES, Strategy, VideoModel  # noqa: F401,E402
from xmodal.strategies.checkpoint import load_transfer, save_transfer  # noqa: F401,E402
from xmodal.strategies.train import TransferConfig, transfer  # noqa: F401,E402
