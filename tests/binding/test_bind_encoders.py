"""Every registered encoder honours the contract (tokens, pooled features, a Tower into the shared
space); the transformers audio encoder works from a tiny saved AST / Whisper checkpoint and
rebuilds offline from its assets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.encoders.base import ENCODERS, Tower, build_encoder
from xmodal.errors import ConfigError
from xmodal.modalities import MODALITIES


def _tiny_ast(folder: Path) -> Path:
    from transformers import ASTConfig, ASTModel

    cfg = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                    num_mel_bins=16, max_length=32, patch_size=16, frequency_stride=16, time_stride=16)
    ASTModel(cfg).save_pretrained(folder)
    return folder


def _tiny_whisper(folder: Path) -> Path:
    from transformers import WhisperConfig, WhisperModel

    cfg = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=37, decoder_ffn_dim=37, num_mel_bins=16, max_source_positions=16, max_target_positions=8,
                        vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                        suppress_tokens=[], begin_suppress_tokens=[])
    WhisperModel(cfg).save_pretrained(folder)
    return folder


TINY = {
    "audio_cnn": ({"width": 8, "depth": 2}, {"n_mels": 16, "max_seconds": 0.5}),
    "audio_transformer": ({"width": 16, "depth": 1, "heads": 2}, {"n_mels": 16, "max_seconds": 0.5}),
    "series_cnn": ({"width": 8, "depth": 2}, {"channels": 3, "length": 32}),
    "image_convnet": ({"width": 8, "depth": 2}, {"size": 16}),
    "hf_audio": (None, {}),
}


def _batch(modality: str, spec) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    if modality == "audio":
        from xmodal.modalities.audio import audio_frames

        return {"input_features": torch.randn(2, spec.n_mels, audio_frames(spec)) - 4}
    if modality == "series":
        return {"series_values": torch.randn(2, spec.channels, spec.length)}
    return {"pixel_values": torch.randn(2, 3, spec.size, spec.size)}


def test_every_encoder_has_a_tiny_config() -> None:
    assert set(ENCODERS.names()) == set(TINY)


@pytest.mark.parametrize("name", ENCODERS.names())
def test_encoder_contract(name: str, tmp_path: Path) -> None:
    config, spec = TINY[name]
    if name == "hf_audio":
        config = {"name_or_path": str(_tiny_ast(tmp_path / "ast"))}
    enc = ENCODERS.get(name)
    assert enc.modality in MODALITIES
    net, spec_obj, record = build_encoder(name, config, spec)
    tower = Tower(enc.modality, net, embed_dim=12).eval()
    batch = _batch(enc.modality, spec_obj)
    with torch.no_grad():
        tokens = tower.tokens(batch)
        out = tower(batch)
    assert tokens.ndim == 3 and tokens.shape[0] == 2 and tokens.shape[2] == net.out_dim
    assert out.shape == (2, 12) and torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert tower.trunk(batch).shape == (2, net.out_dim)
    parts = tower.blocks() + tower.final_parts()  # the net declares its insides: they are what runs
    assert bool(tower.blocks()) == (name in ("audio_transformer", "hf_audio")) and tower.token_embedding() is None
    ran: set[int] = set()
    for i, m in enumerate(parts):
        m.register_forward_hook(lambda *_, i=i: ran.add(i))
    with torch.no_grad():
        tower.trunk(batch)
    assert ran == set(range(len(parts)))
    enc.save_assets(net, tmp_path / "assets")  # the record + assets rebuild the same architecture
    again, _, _ = build_encoder(record["encoder"], record["config"], record["spec"], assets=tmp_path / "assets")
    again.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.allclose(again.eval()(batch[net.input_key]), net.eval()(batch[net.input_key]), atol=1e-5)


def test_hf_audio_whisper_encoder_and_fixed_spec(tmp_path: Path) -> None:
    folder = _tiny_whisper(tmp_path / "whisper")
    net, spec, _ = build_encoder("hf_audio", {"name_or_path": str(folder)}, {})
    assert spec.n_mels == 16 and spec.sample_rate == 16000
    from xmodal.modalities.audio import audio_frames, log_mel

    assert audio_frames(spec) == 32  # the encoder's 2 * max_source_positions
    features = log_mel(np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32), spec)
    with torch.no_grad():
        assert net(features[None]).shape == (1, 32)
    with pytest.raises(ConfigError, match="mel bins"):
        build_encoder("hf_audio", {"name_or_path": str(folder)}, {"n_mels": 40})


def test_hf_audio_rejects_other_models(tmp_path: Path, tiny_text_dir: Path) -> None:
    with pytest.raises(ConfigError, match="model type"):
        build_encoder("hf_audio", {"name_or_path": str(tiny_text_dir)})
    with pytest.raises(ConfigError, match="cannot load"):
        build_encoder("hf_audio", {"name_or_path": str(tmp_path / "nothing")})


def test_unknown_encoder_and_bad_config() -> None:
    with pytest.raises(ConfigError, match="unknown encoder"):
        build_encoder("nope")
    with pytest.raises(ConfigError, match="unknown key"):
        build_encoder("audio_cnn", {"widht": 3})
    with pytest.raises(ConfigError, match="channels >= 1"):
        build_encoder("series_cnn", {}, {"channels": 0})
