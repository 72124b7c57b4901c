"""fuse() end to end on a tiny image+audio manifest: trains with the one engine, predicts with any
modality missing (empty cell or missing file), reports every subset and a noise curve PNG, reloads."""

from __future__ import annotations

import csv

import pytest
import torch

from xmodal.data.manifest import read_manifest
from xmodal.engine.fit import FitConfig
from xmodal.errors import ConfigError, DataError
from xmodal.fusion.evaluate import evaluate_fusion, plot_robustness, subsets
from xmodal.fusion.model import load_fusion
from xmodal.fusion.train import FuseConfig, fuse

AUDIO = {"encoder": "audio_cnn", "config": {"width": 8, "depth": 2},
         "spec": {"sample_rate": 8000, "n_mels": 16, "n_fft": 128, "hop_length": 64, "max_seconds": 0.25}}
IMAGE = {"config": {"width": 8, "depth": 2, "image_size": 16}, "spec": {"size": 16}}


def _cfg(fusion: str, **kw) -> FuseConfig:
    return FuseConfig(fusion=fusion, encoders={"audio": AUDIO, "image": IMAGE}, batch_size=4,
                      fit=FitConfig(epochs=2, lr=3e-3, progress=False, verbose=False), **kw)


@pytest.mark.parametrize("fusion", ["early", "late", "cross_attention"])
def test_each_fusion_predicts_with_a_modality_missing(fusion, tiny_av, tmp_path) -> None:
    rows = read_manifest(tiny_av)
    res = fuse(rows, _cfg(fusion), val_rows=rows[:4], root=tiny_av.parent, out=tmp_path / "run")
    assert "val_acc" in res.history.epochs[-1]
    test = [dict(r) for r in rows[:6]]
    test[0]["image"] = ""  # explicit empty column
    test[1]["audio"] = "wav/does-not-exist.wav"  # missing file
    ev = evaluate_fusion(res.model, test, ("image", "audio"), root=tiny_av.parent, noise_levels=(0.0, 1.0))
    assert ev.n == 6 and set(ev.subsets) == {"image+audio", "image", "audio"}
    assert all(0.0 <= v <= 1.0 for v in ev.subsets.values())
    assert len(ev.noise["audio"]) == 2
    again = load_fusion(tmp_path / "run" / "model")
    ev2 = evaluate_fusion(again, test, ("image", "audio"), root=tiny_av.parent, noise_levels=(0.0,))
    assert ev2.subsets == {k: v for k, v in ev.subsets.items()}
    assert plot_robustness(ev, tmp_path / "robustness.png").stat().st_size > 1000


def test_unimodal_classifier_learns_the_tones(tiny_av) -> None:
    rows = read_manifest(tiny_av)
    torch.manual_seed(0)
    cfg = _cfg("late", modalities=("audio",), columns=("audio",))
    cfg.fit.epochs = 6
    res = fuse(rows, cfg, root=tiny_av.parent)
    ev = evaluate_fusion(res.model, rows, ("audio",), root=tiny_av.parent, noise_levels=(0.0,))
    assert ev.subsets["audio"] >= 0.75


def test_bad_configs_and_data(tiny_av, tmp_path) -> None:
    rows = read_manifest(tiny_av)
    with pytest.raises(ConfigError, match="unknown fusion"):
        fuse(rows, _cfg("middle"), root=tiny_av.parent)
    with pytest.raises(ConfigError, match="2 modalities but 1 columns"):
        fuse(rows, _cfg("late", columns=("image",)), root=tiny_av.parent)
    with pytest.raises(DataError, match="no column 'sound'"):
        fuse(rows, _cfg("late", columns=("image", "sound")), root=tiny_av.parent)
    bad = [dict(r) for r in rows]
    bad[2]["audio"] = "img/red0.png"  # not audio: a counted skip, or an error naming the file
    with pytest.raises(DataError, match="red0.png"):
        fuse(bad, _cfg("late"), root=tiny_av.parent)
    res = fuse(bad, _cfg("late", on_error="skip"), root=tiny_av.parent)
    assert len(res.skipped) == 1 and "red0.png" in res.skipped[0][0]
    short = tmp_path / "short.csv"  # a row whose modality columns disagree with the header
    short.write_text("image,audio,label\nimg/red0.png,wav/red0.wav,red\nimg/red1.png,red\n")
    with pytest.raises(DataError, match="short.csv:3: 2 fields but the header has 3"):
        read_manifest(short)


def test_subsets_largest_first() -> None:
    assert subsets(["a", "b", "c"])[:2] == [("a", "b", "c"), ("a", "b")]
    assert len(subsets(["a", "b", "c"])) == 7


@pytest.mark.parametrize("fusion", ["early", "late", "cross_attention"])
def test_unimodal_loss_is_the_mean_loss_of_each_modality_alone(fusion, tiny_av) -> None:
    from torch import nn

    from xmodal.fusion.model import FusionClassifier, encoder_records
    from xmodal.fusion.train import load_samples, make_loader, unimodal_loss

    torch.manual_seed(0)
    model = FusionClassifier(fusion, encoder_records(("image", "audio"), {"audio": AUDIO, "image": IMAGE}), ["blue", "red"])
    model.eval()  # no dropout: the separate passes below must see the same network
    data, samples = load_samples(read_manifest(tiny_av), model, {"image": "image", "audio": "audio"}, "label",
                                 tiny_av.parent, "raise")
    batch = next(iter(make_loader(data, samples, 8, shuffle=False)))
    tokens, present = model.encode(batch, {})
    present["audio"][:3] = False  # three samples have no audio: they count for the image loss only
    target = torch.tensor([["blue", "red"].index(y) for y in batch["labels"]])
    loss = unimodal_loss(model, tokens, present, target)
    no = torch.zeros_like(present["image"])
    img = nn.functional.cross_entropy(model.fusion(tokens, {"image": present["image"], "audio": no}), target)
    aud = nn.functional.cross_entropy(model.fusion(tokens, {"image": no, "audio": present["audio"]})[3:], target[3:])
    assert torch.allclose(loss, (img + aud) / 2, atol=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in model.encoders.parameters() if p.requires_grad)
