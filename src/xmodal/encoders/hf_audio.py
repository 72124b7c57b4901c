"""A transformers audio model as a tower: AST or the Whisper encoder, by hub name or folder.

Registered as encoder ``hf_audio``. The model fixes the audio spec (16 kHz, its mel bins, 25 ms
windows, 10 ms hop, and the clip length its position table covers); the log-mel features of
``modalities/audio.py`` are rescaled the way each model's feature extractor does (AST: natural-log
fbank normalised by the AudioSet mean/std; Whisper: log10 clamped to 8 below the peak, (x + 4) / 4).
Only the encoder is kept (a Whisper decoder is dropped). Checkpoints store the transformers config
in ``assets/`` and rebuild offline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xmodal.encoders.base import ENCODERS, make_spec
from xmodal.errors import ConfigError

AST_MEAN, AST_STD = -4.2677393, 4.5689974  # AudioSet fbank statistics used by ASTFeatureExtractor
KINDS = ("audio-spectrogram-transformer", "whisper")


@dataclass
class HFAudioConfig:
    """A transformers audio model (AST or the Whisper encoder) by hub name or folder."""

    name_or_path: str = "MIT/ast-finetuned-audioset-10-10-0.4593"  # hub name or local transformers folder
    pooling: str = "mean"  # "mean" over tokens, or "cls" (AST's pooler: mean of its two class tokens)


class HFAudioNet(nn.Module):
    """AST / Whisper encoder on ``[B, n_mels, frames]`` log10-mel features."""

    input_key = "input_features"

    def __init__(self, model: nn.Module, hf_config: Any, pooling: str) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"hf_audio pooling {pooling!r} is not 'mean' or 'cls'")
        self.model, self.hf_config, self.pooling = model, hf_config, pooling
        self.kind = hf_config.model_type
        self.out_dim = getattr(hf_config, "hidden_size", None) or hf_config.d_model

    def _hidden(self, x: torch.Tensor, all_layers: bool) -> Any:
        if self.kind == "whisper":
            x = torch.maximum(x, x.amax((1, 2), keepdim=True) - 8.0)
            return self.model(input_features=(x + 4.0) / 4.0, output_hidden_states=all_layers)
        x = (x * math.log(10) - AST_MEAN) / (2 * AST_STD)
        return self.model(input_values=x.transpose(1, 2), output_hidden_states=all_layers)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self._hidden(x, True).hidden_states[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._hidden(x, False)
        if self.pooling == "cls" and self.kind != "whisper":
            return out.pooler_output
        return out.last_hidden_state.mean(1)

    def transformer_blocks(self) -> list[nn.Module]:
        """The encoder's ``layers`` (AST and Whisper, transformers 5)."""
        return list(self.model.layers)

    def final_parts(self) -> list[nn.Module]:
        """The final LayerNorm (Whisper ``layer_norm``, AST ``layernorm``)."""
        return [self.model.layer_norm if self.kind == "whisper" else self.model.layernorm]

    def sublayers(self, block: nn.Module) -> tuple[nn.Module, nn.Module]:
        raise ConfigError(f"{type(block).__name__} has no separate attention and MLP sub-layers "
                          "(the MLP adds its residual inside)")


def _frames(hf_config: Any) -> int:
    if hf_config.model_type == "whisper":
        return 2 * hf_config.max_source_positions
    return hf_config.max_length


def _load(cfg: HFAudioConfig, assets: Path | None) -> tuple[nn.Module, Any]:
    from transformers import AutoConfig, ASTModel, WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    source = str(assets) if assets is not None else cfg.name_or_path
    try:
        hf_config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"hf_audio {source!r}: cannot load ({str(exc).splitlines()[0]})") from None
    if hf_config.model_type not in KINDS:
        raise ConfigError(f"hf_audio {source!r}: model type {hf_config.model_type!r} is not one of {KINDS}")
    whisper = hf_config.model_type == "whisper"
    if assets is not None:
        model = WhisperEncoder(hf_config) if whisper else ASTModel(hf_config)
    elif whisper:
        model = WhisperModel.from_pretrained(source).get_encoder()
    else:
        model = ASTModel.from_pretrained(source)
    return model, hf_config


class HFAudioEncoder:
    """Registered as encoder ``hf_audio``."""

    config_cls = HFAudioConfig
    modality = "audio"

    def make(self, cfg: HFAudioConfig, spec: dict[str, Any], assets: Path | None = None) -> tuple[nn.Module, Any]:
        model, hf_config = _load(cfg, assets)
        fixed = {"sample_rate": 16000, "n_mels": hf_config.num_mel_bins, "n_fft": 400, "hop_length": 160}
        spec = {**fixed, **spec}
        if spec["n_mels"] != hf_config.num_mel_bins:
            raise ConfigError(f"hf_audio: the model takes {hf_config.num_mel_bins} mel bins, not {spec['n_mels']}")
        spec["max_seconds"] = _frames(hf_config) * spec["hop_length"] / spec["sample_rate"]
        return HFAudioNet(model, hf_config, cfg.pooling), make_spec("audio", spec)

    def save_assets(self, net: HFAudioNet, assets: Path) -> None:
        assets.mkdir(parents=True, exist_ok=True)
        net.hf_config.save_pretrained(assets)


ENCODERS.register("hf_audio", HFAudioEncoder())
