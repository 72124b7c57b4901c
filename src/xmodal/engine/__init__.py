"""One training engine: fit loop, resumable checkpoints, feature cache for frozen towers."""

from xmodal.engine.cache import FeatureCache, to_device
from xmodal.engine.fit import FitConfig, History, fit

__all__ = ["FeatureCache", "FitConfig", "History", "fit", "to_device"]
