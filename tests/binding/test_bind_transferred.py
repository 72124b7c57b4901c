"""Binding audio into a transferred model's space (``xmodal bind --model RUN/model``): the anchor is one of its
adapted towers (a clip through the LoRA-adapted video tower, the temporal head and the retrieval head's
embedding; a text through the head's text map), frozen; only the new tower trains; the bound model reloads
with the transferred towers and the audio tower; audio lands in the space the transferred texts and clips
are in; a transfer that only classifies is refused in one line."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import xmodal
from xmodal.alignment.train import AlignConfig
from xmodal.binding.train import BindConfig, bind
from xmodal.cli.main import main
from xmodal.config import from_dict
from xmodal.data.manifest import read_manifest
from xmodal.encoders.base import Tower, build_encoder
from xmodal.engine.fit import FitConfig
from xmodal.errors import ConfigError
from xmodal.modalities import MODALITIES
from xmodal.modalities.audio import write_wav
from xmodal.modalities.video import write_video
from xmodal.strategies import save_transfer
from xmodal.strategies.embedder import TransferredModel
from xmodal.strategies.train import TransferConfig, build
from xmodal.tasks import TASKS
from xmodal.tasks.embed import embed

AUDIO_SPEC = {"sample_rate": 8000, "n_mels": 16, "n_fft": 128, "hop_length": 64, "max_seconds": 0.25}
AUDIO = "{sample_rate: 8000, n_mels: 16, n_fft: 128, hop_length: 64, max_seconds: 0.25}"
VISION = {"arch": "vit", "width": 16, "depth": 2, "image_size": 16, "patch_size": 8, "heads": 2}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """On one torch thread (tests/conftest.py's ``one_thread``)."""


def _lit(text_dir: Path):
    torch.manual_seed(0)
    return xmodal.load("lit", text_model=str(text_dir), num_frames=4, vision=VISION)


def _transfer(text_dir: Path, out: Path, strategy: str, task: str, **options) -> Path:
    """A saved transfer of a tiny LiT (no training: the strategy's and head's weights are moved off their
    start, so that they change every embedding) in ``out/model``, its base in ``out/base`` (named relatively)."""
    rows = [{"path": "a.mp4", "label": c, "caption": c} for c in ("red", "blue")]
    t = TASKS.get(task)
    vm = build(_lit(text_dir), TransferConfig(task=task, strategy=strategy, options=options),
               t.meta(rows, from_dict(t.config_cls, {})))
    with torch.no_grad():
        for p in vm.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    _lit(text_dir).save_pretrained(out / "base")
    return save_transfer(vm.eval(), out / "model", "../base")  # relative: the two folders move together


@pytest.fixture(scope="module")
def run(tiny_text_dir, tmp_path_factory) -> Path:
    """A LoRA retrieval transfer (its LoRA, temporal head and text map all moved) in RUN/model."""
    return _transfer(tiny_text_dir, tmp_path_factory.mktemp("transfer-run"), "lora", "retrieve", rank=2)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """pairs.csv (video,audio,text,label,split): red squares with low tones, blue squares with high tones."""
    root = tmp_path_factory.mktemp("av-clips")
    rng = np.random.default_rng(0)
    rows = []
    for label, rgb, freq in (("red", (220, 40, 40), 400.0), ("blue", (40, 60, 220), 1600.0)):
        for k in range(4):
            frames = [np.clip(np.array(rgb) + rng.normal(0, 15, (16, 16, 3)), 0, 255).astype(np.uint8) for _ in range(6)]
            write_video(root / f"{label}{k}.mp4", frames)
            write_wav(root / f"{label}{k}.wav", 0.5 * np.sin(2 * np.pi * freq * np.arange(2000) / 8000), 8000)
            rows.append({"video": f"{label}{k}.mp4", "audio": f"{label}{k}.wav", "text": f"a {label} thing",
                         "label": label, "split": "test" if k == 3 else "train"})
    with (root / "pairs.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "pairs.csv"


def _batches(model) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return {"video": {"pixel_values": torch.rand(2, 4, 3, 16, 16, generator=g)},
            "image": {"pixel_values": torch.rand(2, 3, 16, 16, generator=g)},
            "text": MODALITIES.get("text").collate(["a red thing", "a blue thing"], model.spec("text"))}


@torch.no_grad()
def _encode(model, batches) -> dict[str, torch.Tensor]:
    return {m: model.encode(m, b) for m, b in batches.items()}


def test_bind_to_a_transferred_video_tower_trains_only_the_new_tower_and_reloads(run, pairs, tmp_path):
    copy = tmp_path / "copy"  # the transfer folder and its base, removed before the bound model reloads
    shutil.copytree(run.parent, copy)
    transferred = xmodal.load(copy / run.name)
    assert isinstance(transferred, TransferredModel)
    batches = _batches(transferred)
    before = _encode(transferred, batches)
    state = {k: v.clone() for k, v in transferred.state_dict().items()}
    rows = [r for r in read_manifest(pairs) if r["split"] == "train"]
    cfg = BindConfig(anchor="video", columns=("audio", "video"), encoder_config={"width": 8, "depth": 2}, spec=AUDIO_SPEC,
                     align=AlignConfig(label_column="", batch_size=4, fit=FitConfig(epochs=1, lr=3e-3, progress=False,
                                                                                    verbose=False)))
    torch.manual_seed(cfg.align.seed)  # the audio tower bind starts from
    net, _, _ = build_encoder(cfg.encoder, cfg.encoder_config, cfg.spec)
    start = Tower("audio", net, transferred.embed_dim).state_dict()
    res = bind(transferred, rows, cfg, root=pairs.parent, out=tmp_path / "bound")
    bound = res.model.eval()
    assert res.cached == {"video": len(rows)}  # the frozen anchor, the adapted video path, encoded once
    trained = {n.split(".")[1] for n, p in bound.named_parameters() if p.requires_grad and n.startswith("towers.")}
    assert trained == {"audio"} and not bound.projections  # a clip anchor gets no projection
    assert any(not torch.equal(v, bound.towers["audio"].state_dict()[k]) for k, v in start.items())  # it trained
    for k, v in state.items():  # the transferred model did not move ...
        assert torch.equal(transferred.state_dict()[k], v), k
    after = _encode(transferred, batches)
    for m in before:  # ... nor its embeddings, which the bound model gives as they are (normalised once more)
        torch.testing.assert_close(after[m], before[m], atol=0, rtol=0)
        torch.testing.assert_close(_encode(bound, {m: batches[m]})[m], before[m], atol=1e-6, rtol=0)
    shutil.rmtree(copy)
    again = xmodal.load(tmp_path / "bound" / "model").eval()  # the transferred towers and the audio tower
    assert again.backbone == "bound" and set(again.modalities) >= {"video", "image", "text", "audio"}
    for m, vectors in _encode(again, batches).items():
        torch.testing.assert_close(vectors, before[m], atol=1e-5, rtol=0)
    audio = [r["audio"] for r in rows]
    a = embed(bound, "audio", audio, root=pairs.parent, progress=False).vectors
    b = embed(again, "audio", audio, root=pairs.parent, progress=False).vectors
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert a.shape == (len(rows), transferred.embed_dim) == (len(rows), before["text"].shape[1])
    clips = embed(transferred, "video", [r["video"] for r in rows], root=pairs.parent, progress=False).vectors
    assert (a @ clips.t()).shape == (len(rows), len(rows))  # audio against the transferred model's clips, one space


def test_bind_to_the_transferred_text_side_from_the_cli_then_search_audio_by_text(run, pairs, tmp_path, capsys):
    transferred = xmodal.load(run)
    text_before = _encode(transferred, {"text": _batches(transferred)["text"]})["text"]
    rc = main(["bind", "--model", str(run), "--train", str(pairs), "--out", str(tmp_path / "b"), "--anchor", "text",
               "--columns", "audio,text", "--epochs", "1", "--batch-size", "4", "--set", "align.fit.progress=false",
               "--set", "encoder_config={width: 8, depth: 2}", "--set", f"spec={AUDIO}"])
    assert rc == 0, capsys.readouterr().err
    assert "bound model (video, image, text, audio)" in capsys.readouterr().out
    bound = xmodal.load(tmp_path / "b" / "model").eval()
    assert list(bound.projections) == ["text"]  # the bind's text head, after the transferred text side
    batch = _batches(transferred)["text"]
    with torch.no_grad():  # the bound model's text side: the transferred model's, then the bind's head
        torch.testing.assert_close(bound.encode_tower("text", batch), text_before, atol=1e-5, rtol=0)
        torch.testing.assert_close(bound.encode("text", batch), bound.project("text", text_before), atol=1e-5, rtol=0)
    ix = tmp_path / "ix"
    wavs = sorted(str(p) for p in pairs.parent.glob("*.wav"))
    # one index of the clips (through the transferred video path) and the sounds (through the bound tower)
    bound_dir = str(tmp_path / "b" / "model")
    assert main(["index", str(pairs.parent), "--model", bound_dir, "--out", str(ix), "--no-progress"]) == 0
    assert "embedded 16" in capsys.readouterr().out
    assert main(["search", str(ix), "a red thing", "-k", "3", "--json", "--modality", "audio"]) == 0
    hits = json.loads(capsys.readouterr().out)
    with torch.no_grad():
        query = embed(bound, "text", ["a red thing"], progress=False).vectors[0]
        scores = embed(bound, "audio", wavs, progress=False).vectors @ query
    assert [h["path"] for h in hits] == [str(Path(wavs[i]).resolve()) for i in scores.topk(3).indices]


def test_a_classifier_only_transfer_is_refused_in_one_line_and_align_and_transfer_still_refuse(tiny_text_dir, pairs,
                                                                                             tmp_path, capsys):
    folder = _transfer(tiny_text_dir, tmp_path, "linear_probe", "classify")
    with pytest.raises(ConfigError, match="classifier, not an embedding model.*bind need"):
        bind(xmodal.load(folder), [], BindConfig())
    out = tmp_path / "b"
    assert main(["bind", "--model", str(folder), "--train", str(pairs), "--out", str(out)]) == 2
    (err,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert err.startswith("xmodal bind: error:") and "linear_probe" in err and "--task retrieve" in err
    assert not out.exists()  # refused before any run folder was written
    for command in ("align", "transfer"):
        argv = [command, "--model", str(folder), "--out", str(tmp_path / command),
                *(["--train", str(pairs)] if command == "align" else ["--data", str(pairs), "--strategy", "lora"])]
        assert main(argv) == 2
        (err,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert err.startswith(f"xmodal {command}: error:") and f"give {command} its base model" in err


def test_bind_refuses_what_has_no_towers():
    with pytest.raises(ConfigError, match="model of towers.*not to a object"):
        bind(object(), [], BindConfig())
