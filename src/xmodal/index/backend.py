"""The FAISS import (with the extra to install when it is missing) and the sample both index kinds train on."""

from __future__ import annotations

from typing import Any

import numpy as np

from xmodal.errors import ConfigError


def faiss() -> Any:
    """The faiss module, or a ConfigError saying which extra to install."""
    try:
        import faiss as _faiss
    except ImportError:
        raise ConfigError('the vector index needs faiss: pip install -e ".[index]" (faiss-cpu)') from None
    return _faiss


def training_sample(n: int, train_size: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of the vectors the IVF k-means is trained on (the same in build and calibration)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, min(n, train_size), replace=False))
