"""XModel checkpoints of hf_clip models: exact offline round trips, and every kind of broken or foreign
checkpoint is a CheckpointError. Nothing is ever unpickled."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from xmodal.backbones import XModel
from xmodal.backbones.hf_clip import load_hf
from xmodal.errors import CheckpointError

SRC = Path(__file__).resolve().parents[2] / "src" / "xmodal"


def embed(model: XModel, pixels: torch.Tensor, texts: list[str], tokenize: Any) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.encode("image", {"pixel_values": pixels}), model.encode("text", tokenize(model, texts))


@pytest.fixture(scope="module")
def saved(hf_folders, tmp_path_factory) -> dict[str, tuple[Path, XModel]]:
    """kind -> (checkpoint folder, the model that wrote it). The model is loaded from a copy of the
    transformers folder that is deleted before any test runs: loading back must be offline."""
    out = {}
    for kind, folder in hf_folders.items():
        root = tmp_path_factory.mktemp(f"ckpt-{kind}")
        source = shutil.copytree(folder, root / "source")
        model = load_hf(source)
        with torch.no_grad():  # a "fine-tuned" model: weights and logits differ from the source folder
            for p in list(model.parameters())[:3]:
                p.add_(0.01)
            model.logit_bias.fill_(-3.0)
        out[kind] = (model.save_pretrained(root / "ckpt"), model)
        shutil.rmtree(source)
    return out


@pytest.fixture
def clip_ckpt(saved, tmp_path) -> Path:
    """A writable copy of the CLIP checkpoint (tests break it)."""
    return Path(shutil.copytree(saved["clip"][0], tmp_path / "ckpt"))


@pytest.mark.parametrize("kind", ["clip", "metaclip_2", "siglip", "chinese_clip", "altclip"])
def test_round_trip_reproduces_embeddings(saved, kind, pixels, tokenize, tiny) -> None:
    path, original = saved[kind]
    loaded = XModel.from_pretrained(path)
    for a, b in zip(embed(original, pixels, tiny.captions, tokenize), embed(loaded, pixels, tiny.captions, tokenize)):
        assert torch.equal(a, b)
    assert loaded.config == original.config and loaded.backbone == "hf_clip"
    assert loaded.logit_scale.item() == original.logit_scale.item()
    assert loaded.logit_bias.item() == -3.0
    assert loaded.spec("image") == original.spec("image") and loaded.spec("video") == original.spec("video")
    a, b = loaded.spec("text"), original.spec("text")
    assert (a.max_length, a.padding) == (b.max_length, b.padding)
    assert a.tokenizer(tiny.captions)["input_ids"] == b.tokenizer(tiny.captions)["input_ids"]


def test_checkpoint_layout(saved) -> None:
    from safetensors import safe_open

    path, model = saved["clip"]
    meta = json.loads((path / "xmodal.json").read_text())
    assert meta["backbone"] == "hf_clip" and meta["config"]["model_type"] == "clip"
    assets = {p.name for p in (path / "assets").iterdir()}
    assert {"config.json", "tokenizer.json", "preprocessor_config.json"} <= assets
    assert not any(name.endswith((".safetensors", ".bin", ".pt")) for name in assets)  # no weights in assets
    with safe_open(str(path / "model.safetensors"), "pt") as fh:
        keys = set(fh.keys())
    assert keys == set(model.state_dict())  # the towers share no tensors: every weight saved once
    assert {k.split(".")[0] for k in keys} == {"towers", "logit_scale", "logit_bias"}


def test_saving_twice_overwrites(saved, tmp_path) -> None:
    path, model = saved["siglip"]
    target = tmp_path / "again"
    model.save_pretrained(target)
    model.save_pretrained(target)
    assert XModel.from_pretrained(target).spec("text").padding == "max_length"


def test_truncated_weights(clip_ckpt) -> None:
    weights = clip_ckpt / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        XModel.from_pretrained(clip_ckpt)


def test_missing_weights(clip_ckpt) -> None:
    (clip_ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights file missing"):
        XModel.from_pretrained(clip_ckpt)


def test_weights_of_a_different_size_config(clip_ckpt) -> None:
    config = clip_ckpt / "assets" / "config.json"
    data = json.loads(config.read_text())
    data["projection_dim"] = 8  # the architecture rebuilt from assets no longer fits the weights
    config.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="do not fit"):
        XModel.from_pretrained(clip_ckpt)


def test_weights_of_another_model(clip_ckpt, saved) -> None:
    shutil.copy(saved["siglip"][0] / "model.safetensors", clip_ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match="do not (fit|match)"):
        XModel.from_pretrained(clip_ckpt)


def test_assets_of_another_model_type(clip_ckpt, tiny_text_dir) -> None:
    shutil.copy(tiny_text_dir / "config.json", clip_ckpt / "assets" / "config.json")
    with pytest.raises(CheckpointError, match="'bert' is not a supported dual encoder"):
        XModel.from_pretrained(clip_ckpt)


def test_missing_assets(clip_ckpt) -> None:
    shutil.rmtree(clip_ckpt / "assets")
    with pytest.raises(CheckpointError, match="no such folder"):
        XModel.from_pretrained(clip_ckpt)


def test_folder_without_xmodal_json(hf_folders, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no xmodal.json"):
        XModel.from_pretrained(hf_folders["clip"])  # a transformers folder is not an xmodal checkpoint
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        XModel.from_pretrained(tmp_path / "nothing-here")


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"model_type": "clip", "projection_dim": 16}),  # a foreign JSON (a transformers config)
        json.dumps({"format": "xmodal", "format_version": 99, "backbone": "hf_clip"}),
        json.dumps({"format": "xmodal", "format_version": 1, "backbone": "no-such-backbone", "config": {}}),
        json.dumps({"format": "xmodal", "format_version": 1, "backbone": "hf_clip", "config": {"nope": 1}}),
        "{not json",
        "\udcff",
    ],
    ids=["foreign", "version", "backbone", "config-key", "invalid", "binary"],
)
def test_foreign_or_broken_xmodal_json(clip_ckpt, text) -> None:
    (clip_ckpt / "xmodal.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(CheckpointError, match="xmodal.json"):
        XModel.from_pretrained(clip_ckpt)


def _touch(path: str) -> None:
    """Run only if a pickle were loaded: leaves a file behind."""
    Path(path).write_text("unpickled!")


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _touch, (self.path,)


@pytest.mark.parametrize("kind", ["torch.save", "pickle"])
def test_pickle_renamed_to_safetensors_is_never_unpickled(clip_ckpt, saved, tmp_path, monkeypatch, kind) -> None:
    marker = tmp_path / "marker"
    weights = clip_ckpt / "model.safetensors"
    if kind == "torch.save":
        state = {k: v.clone() for k, v in saved["clip"][1].state_dict().items()}
        state["payload"] = _Payload(str(marker))  # type: ignore[assignment]
        torch.save(state, weights)
    else:
        weights.write_bytes(pickle.dumps(_Payload(str(marker))))

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("something tried to unpickle")

    for owner, name in [(torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")]:
        monkeypatch.setattr(owner, name, refuse)
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        XModel.from_pretrained(clip_ckpt)
    assert not marker.exists()


def test_backbone_code_never_unpickles() -> None:
    for file in sorted((SRC / "backbones").glob("*.py")):
        text = file.read_text()
        for needle in ("torch.load", "import pickle", "pickle.load", "weights_only"):
            assert needle not in text, f"{file.name} mentions {needle}"
