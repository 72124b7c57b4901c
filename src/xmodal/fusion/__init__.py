"""Fusion classifiers over two or more modalities (``FUSIONS``: early, late, cross_attention),
modality dropout, and evaluation over every subset of modalities and under noise."""

from xmodal.fusion.base import FUSIONS, Fusion, FusionParams, modality_dropout
from xmodal.fusion import early, late, cross_attention  # noqa: F401,E402  (registration)

__all__ = ["FUSIONS", "Fusion", "FusionParams", "modality_dropout"]
