"""``xmodal.fuse``: train a fusion classifier over two or more modalities with the one engine.

Rows come from an ordinary manifest (one column per modality, a label column). Every modality is
optional per row (an empty cell or a missing file): the model is told which inputs are present.
Decoded samples are kept in memory (decoded once, not every epoch). Modality dropout
(``modality_dropout``) randomly hides modalities during training and auxiliary unimodal losses
(``unimodal_loss``) train every modality's path on its own, so that the model still predicts well from
any subset at test time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from xmodal.encoders.base import encoder_config
from xmodal.engine import distributed
from xmodal.engine.fit import FitConfig, History, fit
from xmodal.errors import ConfigError, DataError
from xmodal.fusion.base import FUSIONS, FusionParams, modality_dropout
from xmodal.fusion.data import load_samples, make_loader
from xmodal.fusion.evaluate import accuracy
from xmodal.fusion.model import FusionClassifier, encoder_records
from xmodal.modalities import MODALITIES


@dataclass
class FuseConfig:
    fusion: str = "late"  # registered fusion: "early", "late" or "cross_attention"
    modalities: tuple[str, ...] = ("image", "audio")  # modalities fused (one = a unimodal classifier)
    columns: tuple[str, ...] = ("image", "audio")  # manifest column of each modality, same order
    label_column: str = "label"  # the class of each row
    encoders: dict = field(default_factory=dict)  # modality -> {"encoder", "config", "spec"} over the defaults
    params: FusionParams = field(default_factory=FusionParams)  # fusion widths, depth, heads, bottlenecks
    modality_dropout: float = 0.3  # training: drop each modality of a sample with this probability
    unimodal_loss: float = 1.0  # weight of auxiliary losses on each modality alone (0 = fused loss only)
    batch_size: int = 64  # samples per batch (under torchrun the global batch, split over the processes)
    on_error: str = "raise"  # unreadable file: "raise" or "skip" (count and go on)
    seed: int = 0  # seeds initialisation, shuffling and dropout
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=10, lr=2e-3, monitor="val_acc"))  # engine


@dataclass
class FuseResult:
    model: FusionClassifier  # the trained classifier
    history: History  # per-epoch loss and validation accuracy
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable training files


def check_config(cfg: FuseConfig) -> None:
    """The names and values of ``cfg`` (fusion, modalities, each modality's encoder, its config and
    spec keys), checked without data: a ConfigError names the bad one."""
    FUSIONS.get(cfg.fusion)
    if not cfg.modalities or len(cfg.modalities) != len(cfg.columns):
        raise ConfigError(f"fuse: {len(cfg.modalities)} modalities but {len(cfg.columns)} columns (one column per modality)")
    if len(set(cfg.modalities)) != len(cfg.modalities):
        raise ConfigError(f"fuse: repeated modality in {list(cfg.modalities)}")
    if not 0 <= cfg.modality_dropout < 1:
        raise ConfigError(f"modality_dropout {cfg.modality_dropout} is not in [0, 1)")
    for modality in cfg.modalities:
        MODALITIES.get(modality)
    for modality, record in encoder_records(cfg.modalities, cfg.encoders).items():
        encoder_config(record["encoder"], record["config"], modality, record["spec"])


def unimodal_loss(model: FusionClassifier, tokens: dict[str, torch.Tensor], present: dict[str, torch.Tensor],
                  target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the fused model fed one modality at a time (samples that have it), so every
    modality's path stays a good classifier on its own (cf. the unimodal losses of Gradient-Blending,
    Wang et al., "What Makes Training Multi-Modal Classification Networks Hard?", CVPR 2020)."""
    losses = []
    for m, has in present.items():
        if has.any():
            alone = {k: (v if k == m else torch.zeros_like(v)) for k, v in present.items()}
            losses.append(nn.functional.cross_entropy(model.fusion(tokens, alone)[has], target[has]))
    return torch.stack(losses).mean() if losses else target.new_zeros((), dtype=torch.float)


def fuse(rows: Sequence[dict[str, Any]], cfg: FuseConfig | None = None, val_rows: Sequence[dict[str, Any]] | None = None,
         root: str | Path | None = None, out: str | Path | None = None) -> FuseResult:
    """Train a ``cfg.fusion`` classifier on manifest ``rows`` (paths relative to ``root``). With
    ``val_rows`` each epoch logs ``val_acc`` (all modalities present); with ``out``, training resumes
    from ``out`` and the classifier is saved to ``out/model``."""
    cfg = cfg or FuseConfig()
    check_config(cfg)
    torch.manual_seed(cfg.seed)
    classes = sorted({str(r.get(cfg.label_column, "")) for r in rows} - {""})
    if len(classes) < 2:
        raise DataError("manifest", f"need at least 2 classes in column {cfg.label_column!r}, found {classes}")
    model = FusionClassifier(cfg.fusion, encoder_records(cfg.modalities, cfg.encoders), classes, cfg.params)
    model.to(distributed.device())  # under torchrun with NCCL: this rank's GPU (else the CPU it is on)
    columns = dict(zip(cfg.modalities, cfg.columns))
    data, samples = load_samples(rows, model, columns, cfg.label_column, root, cfg.on_error)
    loader = make_loader(data, samples, cfg.batch_size, shuffle=True, seed=cfg.seed)
    index = {c: k for k, c in enumerate(classes)}
    gen = torch.Generator().manual_seed(cfg.seed)

    def step(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        tokens, present = model.encode(batch, batch.get("present") or {})
        logits = model.fusion(tokens, modality_dropout(present, cfg.modality_dropout, gen))
        target = torch.tensor([index[y] for y in batch["labels"]], device=logits.device)
        out = {"loss": nn.functional.cross_entropy(logits, target)}
        if cfg.unimodal_loss > 0 and len(present) > 1:
            out["loss"] = out["loss"] + cfg.unimodal_loss * unimodal_loss(model, tokens, present, target)
        out["loss"] = out["loss"] * distributed.rows_weight(len(target))  # under torchrun: this rank's share
        return out

    evaluate = None
    if val_rows:
        vdata, vsamples = load_samples(val_rows, model, columns, cfg.label_column, root, cfg.on_error)
        vloader = make_loader(vdata, vsamples, 256, shuffle=False)
        evaluate = lambda: {"val_acc": accuracy(model, vloader)}  # noqa: E731
    history = fit(step, model, loader, cfg.fit, evaluate=evaluate, out=out,
                  generators={"shuffle": loader.generator, "modality_dropout": gen})
    model.eval()
    if out is not None and distributed.is_main():
        model.save_pretrained(Path(out) / "model")
    return FuseResult(model=model, history=history, skipped=list(data.skipped))
