"""The fusion classifier: one encoder per modality (``xmodal.encoders.ENCODERS``) feeding a fusion.

Checkpoints are a folder with ``fusion.json`` (config, class names, encoder records) and
``model.safetensors``; :func:`load_fusion` rebuilds it (nothing is unpickled).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from xmodal.encoders.base import build_encoder
from xmodal.errors import CheckpointError, ConfigError
from xmodal.fusion.base import FUSIONS, FusionParams

FUSION_FILE = "fusion.json"
FORMAT = "xmodal-fusion"

DEFAULT_ENCODERS: dict[str, dict[str, Any]] = {
    "image": {"encoder": "image_convnet", "config": {"width": 16, "depth": 3, "image_size": 32, "stem_stride": 2},
              "spec": {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "resample": "bilinear"}},
    "audio": {"encoder": "audio_cnn", "config": {"width": 16, "depth": 3}, "spec": {}},
    "series": {"encoder": "series_cnn", "config": {}, "spec": {}},
}


def encoder_records(modalities: Sequence[str], overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per modality ``{"encoder", "config", "spec"}``: ``overrides[m]`` fields over the defaults."""
    out = {}
    for m in modalities:
        if m not in DEFAULT_ENCODERS and m not in overrides:
            raise ConfigError(f"no default encoder for modality {m!r}: set encoders.{m}.encoder")
        base = DEFAULT_ENCODERS.get(m, {"encoder": "", "config": {}, "spec": {}})
        given = dict(overrides.get(m, {}))
        unknown = set(given) - {"encoder", "config", "spec"}
        if unknown:
            raise ConfigError(f"encoders.{m}: unknown key(s) {sorted(unknown)}; known: encoder, config, spec")
        same = given.get("encoder", base["encoder"]) == base["encoder"]
        out[m] = {"encoder": given.get("encoder", base["encoder"]),
                  "config": {**(base["config"] if same else {}), **given.get("config", {})},
                  "spec": {**(base["spec"] if same else {}), **given.get("spec", {})}}
    return out


class FusionClassifier(nn.Module):
    """Encoders of ``records`` (modality -> encoder record) + the fusion ``fusion`` over ``classes``."""

    def __init__(self, fusion: str, records: dict[str, dict[str, Any]], classes: Sequence[str],
                 params: FusionParams | None = None, assets: Path | None = None) -> None:
        super().__init__()
        self.fusion_name, self.classes, self.params = fusion, list(classes), params or FusionParams()
        nets, self.specs, self.records = {}, {}, {}
        for m, rec in records.items():
            where = assets / m if assets is not None else None
            nets[m], self.specs[m], self.records[m] = build_encoder(rec["encoder"], rec.get("config"), rec.get("spec"), where)
        self.encoders = nn.ModuleDict(nets)
        self.fusion = FUSIONS.get(fusion)({m: n.out_dim for m, n in nets.items()}, len(self.classes), self.params)

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    def forward(self, batch: dict[str, Any], present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits ``[B, C]``; ``batch[m]`` is a collated batch or None (absent in the whole batch);
        ``present[m]`` (bool ``[B]``) marks samples that have modality m (default: all of them)."""
        return self.fusion(*self.encode(batch, present))

    def encode(self, batch: dict[str, Any], present: dict[str, torch.Tensor] | None = None
               ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(tokens, present)``: each modality's token sequence ``[B, N, W]`` (zeros where absent in the
        whole batch) and the completed presence masks, on the model's device."""
        b = len(batch["index"])
        device = next(self.parameters()).device
        present = dict(present or {})
        tokens = {}
        for m, net in self.encoders.items():
            inputs = batch.get(m)
            if inputs is None:
                tokens[m] = torch.zeros(b, 1, net.out_dim, device=device)
                present[m] = torch.zeros(b, dtype=torch.bool)
                continue
            tokens[m] = net.forward_features(inputs[net.input_key].to(device))[-1]
            present.setdefault(m, torch.ones(b, dtype=torch.bool))
        return tokens, {m: p.to(device) for m, p in present.items()}

    def save_pretrained(self, path: str | Path) -> Path:
        from dataclasses import asdict

        from safetensors.torch import save_model

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "fusion": self.fusion_name, "classes": self.classes,
                "params": asdict(self.params), "encoders": self.records}
        from xmodal.encoders.base import ENCODERS

        for m, rec in self.records.items():
            ENCODERS.get(rec["encoder"]).save_assets(self.encoders[m], path / "assets" / m)
        save_model(self, str(path / "model.safetensors"), force_contiguous=True)
        (path / FUSION_FILE).write_text(json.dumps(meta, indent=2))
        return path


def load_fusion(path: str | Path) -> FusionClassifier:
    """A FusionClassifier saved by :meth:`FusionClassifier.save_pretrained`."""
    from xmodal.backbones.base import load_weights
    from xmodal.config import from_dict

    path = Path(path)
    file = path / FUSION_FILE
    if not file.is_file():
        raise CheckpointError(f"{path}: not a fusion checkpoint (no {FUSION_FILE})")
    try:
        meta = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file}: not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{file}: format is not {FORMAT!r}")
    params = from_dict(FusionParams, meta["params"])
    model = FusionClassifier(meta["fusion"], meta["encoders"], meta["classes"], params, assets=path / "assets")
    load_weights(model, path / "model.safetensors")
    return model.eval()
