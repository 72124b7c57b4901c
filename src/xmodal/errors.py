"""Errors a user can act on: each names the file, row or setting and the problem."""

from __future__ import annotations

from pathlib import Path


class XmodalError(Exception):
    """Base class of every error xmodal raises on purpose."""


class DataError(XmodalError):
    """A bad input file or manifest row: ``DataError(path, problem)`` -> ``"path: problem"``."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.source, self.problem))


class ConfigError(XmodalError, ValueError):
    """An unknown key, a wrong type or an impossible value in a configuration."""


class UnknownNameError(ConfigError, KeyError):
    """A name that no registry (backbone, modality, loss, strategy, fusion, ...) knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(XmodalError):
    """A checkpoint that is missing, truncated, mismatched or not written by xmodal."""


class ExportError(XmodalError):
    """A model that cannot be exported to the asked format (the message names a format that works)."""
