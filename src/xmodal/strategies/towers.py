"""One modality of an embedding model as a tower (the ``Encoder`` contract of ``backbones/base.py``).

``xmodal.bind`` adds a tower to an XModel's towers; a transferred video model (``strategies/embedder.py``)
has no towers of its own but encoding paths: a clip through the adapted video tower, its temporal head and
the task head's embedding, a text through the strategy's text side and the head's text map. An
:class:`EmbedderTower` is one such path as a tower: the whole path is its trunk (already in the shared
space, so its width is the space's and its head is the identity, re-normalised), and it has no blocks a
strategy could inject into (a tower of a transferred model is used as it is, frozen).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xmodal.errors import ConfigError


class EmbedderTower(nn.Module):
    """``model.encode(modality, batch)`` as a tower of width ``model.embed_dim``; ``model`` is its trunk module
    (shared by the towers of its other modalities); ``token_table`` is the word-embedding table the path reads
    (a text side), else None."""

    def __init__(self, model: Any, modality: str, token_table: nn.Embedding | None = None) -> None:
        super().__init__()
        self.model = model
        self.modality = modality
        self.embed_dim = self.width = int(model.embed_dim)
        self.head_layer = nn.Identity()
        self._table = [token_table]  # in a list: the table is a module of ``model``, not a second child

    @property
    def trunk_module(self) -> nn.Module:
        return self.model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.trunk(batch))

    def trunk(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, embed_dim]``: the model's embeddings of the batch (already L2-normalised)."""
        return self.model.encode(self.modality, batch)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.head_layer(features), dim=-1)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        raise ConfigError(f"the {self.modality!r} tower of a transferred model gives embeddings, not token features "
                          "(a strategy that reads tokens needs the base model's tower)")

    def blocks(self) -> list[nn.Module]:
        return []  # opaque: a strategy injects into the base model's blocks, not into an adapted path

    def sublayers(self, block: nn.Module) -> tuple[nn.Module, nn.Module]:
        raise ConfigError(f"the {self.modality!r} tower of a transferred model has no blocks")

    def final_parts(self) -> list[nn.Module]:
        return []

    def token_embedding(self) -> nn.Embedding | None:
        return self._table[0]
