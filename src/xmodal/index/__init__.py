"""Persistent cross-modal vector index: FAISS (exact or IVF) + SQLite metadata, built incrementally."""

from xmodal.index.ann import AnnConfig
from xmodal.index.build import BuildConfig, BuildReport
from xmodal.index.index import Hit, Index

__all__ = ["AnnConfig", "BuildConfig", "BuildReport", "Hit", "Index"]
