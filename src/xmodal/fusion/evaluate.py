"""Fusion evaluation: accuracy for every subset of modalities, and under added Gaussian noise.

``evaluate_fusion`` reports top-1 for each non-empty subset of the model's modalities (the others
hidden as if their files were missing) and a robustness curve: accuracy when every present input
gets Gaussian noise of ``level`` times that input's standard deviation (over the batch).
``plot_robustness`` draws the curves to a PNG.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from xmodal.fusion.data import load_samples, make_loader
from xmodal.fusion.model import FusionClassifier

NOISE_LEVELS = (0.0, 0.5, 1.0, 2.0)


@dataclass
class FusionEval:
    n: int  # test samples scored
    subsets: dict[str, float]  # "image+audio" -> top-1 with only those modalities
    noise_levels: list[float]  # noise std, in units of each input's std
    noise: dict[str, list[float]]  # subset -> top-1 at each noise level
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable test files

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "subsets": self.subsets, "noise_levels": self.noise_levels, "noise": self.noise,
                "skipped": [{"file": f, "problem": p} for f, p in self.skipped]}


def subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, largest first."""
    return [c for k in range(len(modalities), 0, -1) for c in itertools.combinations(modalities, k)]


def _noisy(batch: Any, level: float, gen: torch.Generator) -> Any:
    if level <= 0:
        return batch
    if isinstance(batch, torch.Tensor) and batch.is_floating_point():
        return batch + level * batch.std() * torch.randn(batch.shape, generator=gen)
    if isinstance(batch, dict):
        return {k: _noisy(v, level, gen) for k, v in batch.items()}
    return batch


@torch.no_grad()
def accuracy(model: FusionClassifier, loader: Any, keep: Sequence[str] | None = None, noise: float = 0.0, seed: int = 0) -> float:
    """Top-1 over ``loader`` with only modalities ``keep`` (default all) and input noise ``noise``."""
    model.eval()
    index = {c: k for k, c in enumerate(model.classes)}
    gen = torch.Generator().manual_seed(seed)
    keep = set(model.modalities if keep is None else keep)
    correct = total = 0
    for batch in loader:
        if batch is None:
            continue
        b = len(batch["index"])
        have = batch.get("present") or {}
        present = {m: have.get(m, torch.ones(b, dtype=torch.bool)) & (m in keep) for m in model.modalities}
        inputs = {m: _noisy(batch.get(m), noise, gen) if m in keep else None for m in model.modalities}
        logits = model({**inputs, "index": batch["index"]}, present)
        target = torch.tensor([index.get(y, -1) for y in batch["labels"]])
        correct += int((logits.argmax(1).cpu() == target).sum())
        total += b
    return correct / max(1, total)


def evaluate_fusion(model: FusionClassifier, rows: Sequence[dict[str, Any]], columns: Sequence[str], label_column: str = "label",
                    root: str | Path | None = None, noise_levels: Sequence[float] = NOISE_LEVELS, on_error: str = "raise") -> FusionEval:
    """Accuracy on ``rows`` for every modality subset and noise level (``columns``: one per modality)."""
    cols = dict(zip(model.modalities, columns))
    data, samples = load_samples(rows, model, cols, label_column, root, on_error)
    loader = make_loader(data, samples, 256, shuffle=False)
    result = {"+".join(s): accuracy(model, loader, s) for s in subsets(model.modalities)}
    curves = {"+".join(s): [accuracy(model, loader, s, lvl) for lvl in noise_levels] for s in subsets(model.modalities)}
    return FusionEval(n=len(samples), subsets=result, noise_levels=list(noise_levels), noise=curves, skipped=list(data.skipped))


def plot_robustness(ev: FusionEval, path: str | Path, title: str = "robustness to input noise") -> Path:
    """Accuracy vs noise level, one line per modality subset, as a PNG."""
    from xmodal.eval.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, accs in ev.noise.items():
        ax.plot(ev.noise_levels, accs, marker="o", label=name)
    ax.set_xlabel("noise std (x input std)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
