"""Image-to-video transfer: strategies (one file each, registered by name), the training entry point
on the one engine, and the side-by-side comparison harness."""

from xmodal.transfer import (  # noqa: F401  (registers the strategies)
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
from xmodal.transfer.base import STRATEGIES, Strategy, VideoClassifier, load_transfer  # noqa: F401


def _make_callable() -> None:
    """``xmodal.transfer`` is both this package and the ``transfer`` function (``_EXPORTS``): once the
    package is imported, Python binds the name to it, so calling the package calls the function."""
    import sys
    import types

    class _CallablePackage(types.ModuleType):
        def __call__(self, *args, **kwargs):
            from xmodal.transfer.train import transfer

            return transfer(*args, **kwargs)

    sys.modules[__name__].__class__ = _CallablePackage


_make_callable()
