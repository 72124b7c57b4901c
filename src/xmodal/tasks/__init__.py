"""Tasks on aligned models: zero-shot classification, embedding, retrieval."""

from xmodal.tasks.embed import Embedded, embed
from xmodal.tasks.zeroshot import DEFAULT_TEMPLATES, ZeroShotResult, build_zero_shot_classifier, score, zeroshot

__all__ = ["DEFAULT_TEMPLATES", "Embedded", "ZeroShotResult", "build_zero_shot_classifier", "embed", "score", "zeroshot"]
