"""A transfer folder as a first-class model: ``xmodal.load(RUN/model)`` embeds clips, images and texts in the task
head's space (the same vectors as the transfer's own evaluation), ``xmodal index`` / ``search`` / ``zeroshot``
take it, and a head that is only a classifier is refused in one line."""

from __future__ import annotations

import json

import pytest
import torch

import xmodal
from xmodal.api import Embedder
from xmodal.cli.main import main
from xmodal.config import from_dict
from xmodal.data.manifest import read_manifest
from xmodal.engine.fit import FitConfig
from xmodal.errors import ConfigError
from xmodal.modalities import MODALITIES
from xmodal.strategies import STRATEGIES, save_transfer
from xmodal.strategies.data import load_split
from xmodal.strategies.embedder import TransferredModel
from xmodal.strategies.train import TransferConfig, build, clip_inputs, predict, split_rows, transfer
from xmodal.tasks import TASKS
from xmodal.tasks.retrieve import text_retrieval


@pytest.fixture(scope="module")
def retrieval_run(tiny_text_dir, video_manifest, tmp_path_factory):
    """A LoRA retrieval transfer trained for 2 epochs on the tiny motion clips, saved in RUN/model."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vision = {"arch": "vit", "width": 16, "depth": 2, "image_size": 16, "patch_size": 8, "heads": 2}
    model = xmodal.load("lit", text_model=str(tiny_text_dir), num_frames=4, vision=vision)
    s = split_rows(read_manifest(video_manifest))
    cfg = TransferConfig(task="retrieve", strategy="lora", batch_size=4, options={"rank": 2},
                         fit=FitConfig(epochs=2, lr=1e-2, progress=False, verbose=False))
    out = tmp_path_factory.mktemp("retrieval-run")
    res = transfer(model, s["train"], cfg, s["val"], s["test"], root=video_manifest.parent, out=out)
    return res, out / "model", s["test"]


def test_loaded_transfer_embeds_like_the_transfers_own_evaluation(retrieval_run, video_manifest):
    res, folder, test_rows = retrieval_run
    vm = res.model
    model = xmodal.load(folder)
    assert isinstance(model, TransferredModel) and isinstance(model, Embedder)
    assert model.modalities == ["video", "image", "text"] and model.embed_dim == vm.embed_dim
    task = TASKS.get("retrieve")
    clips = load_split(test_rows, task, vm.task_config, vm.meta, vm.base.spec("video"), video_manifest.parent, "path")
    expected_video = predict(vm, clips, clip_inputs(vm, clips, 8))  # the evaluation path of the run
    captions = [r["caption"] for r in clips.rows]
    with torch.no_grad():
        expected_text = vm.head.text(vm.encode_texts(captions))
    videos = xmodal.embed(model, "video", [r["path"] for r in clips.rows], root=video_manifest.parent, progress=False)
    texts = xmodal.embed(model, "text", captions, progress=False)
    torch.testing.assert_close(videos.vectors, expected_video, atol=1e-4, rtol=0)  # LoRA merged vs. not
    torch.testing.assert_close(texts.vectors, expected_text, atol=1e-4, rtol=0)
    ours = text_retrieval(videos.vectors, texts.vectors, captions, clips.targets["groups"])
    assert ours["t2v_R@1"] == res.metrics["t2v_R@1"] and ours["v2t_R@1"] == res.metrics["v2t_R@1"]


def test_an_image_is_a_one_frame_clip(retrieval_run):
    _, folder, _ = retrieval_run
    model = xmodal.load(folder)
    pixels = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        image = model.encode("image", {"pixel_values": pixels})
        clip = model.encode("video", {"pixel_values": pixels[:, None]})
    torch.testing.assert_close(image, clip)
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(2))


def test_index_search_and_zeroshot_through_the_cli(retrieval_run, video_manifest, tmp_path, capsys):
    _, folder, _ = retrieval_run
    ix = tmp_path / "ix"
    assert main(["index", str(video_manifest.parent / "videos"), "--model", str(folder), "--out", str(ix), "--no-progress"]) == 0
    assert "embedded 12" in capsys.readouterr().out
    assert main(["search", str(ix), "a square moving left", "-k", "3", "--json", "--modality", "video"]) == 0
    hits = json.loads(capsys.readouterr().out)
    model = xmodal.load(folder)
    paths = sorted((video_manifest.parent / "videos").iterdir())
    with torch.no_grad():
        query = xmodal.embed(model, "text", ["a square moving left"], progress=False).vectors[0]
        scores = xmodal.embed(model, "video", paths, progress=False).vectors @ query
    best = scores.topk(3)
    assert [h["path"] for h in hits] == [str(paths[i].resolve()) for i in best.indices]
    assert [round(h["score"], 4) for h in hits] == [round(float(s), 4) for s in best.values]
    assert main(["zeroshot", "--model", str(folder), "--data", str(video_manifest), "--modality", "video",
                 "--template", "a square {}"]) == 0
    assert "top1" in capsys.readouterr().out


def _saved(make_lit, tmp_path, strategy: str, task: str = "classify", **options):
    rows = [{"path": "a.mp4", "label": c, "caption": c} for c in ("moving left", "moving right")]
    t = TASKS.get(task)
    meta = t.meta(rows, from_dict(t.config_cls, {}))
    vm = build(make_lit(), TransferConfig(task=task, strategy=strategy, options=options), meta)
    base = make_lit().save_pretrained(tmp_path / "base")
    return vm.eval(), save_transfer(vm.eval(), tmp_path / "model", base)


def test_a_classifier_head_is_refused_in_one_line(make_lit, tmp_path, capsys):
    _, folder = _saved(make_lit, tmp_path, "linear_probe")
    with pytest.raises(ConfigError, match="classifier, not an embedding model.*--task retrieve"):
        xmodal.load(folder)
    assert main(["index", str(tmp_path), "--model", str(folder), "--out", str(tmp_path / "ix"), "--no-progress"]) == 2
    (err,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # (not transformers' bars)
    assert err.startswith("xmodal index: error:") and "linear_probe" in err and "class logits only" in err
    assert main(["bind", "--model", str(folder), "--train", "x.csv", "--out", str(tmp_path / "b")]) == 2
    (err,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert err.startswith("xmodal bind: error:") and "class logits only" in err  # bind needs a space too


def test_a_text_adapted_classifier_embeds_texts_through_its_learned_context(make_lit, tmp_path):
    vm, folder = _saved(make_lit, tmp_path, "prompt", tokens=2, text_context=2)
    with torch.no_grad():
        for p in vm.added["text_context"].parameters():
            p.add_(0.5)  # a context that differs from the word it starts from
    save_transfer(vm, folder, tmp_path / "base")
    model = xmodal.load(folder)
    text = MODALITIES.get("text")
    spec = model.spec("text")
    pixels = torch.rand(2, 4, 3, 16, 16)
    with torch.no_grad():
        classes = model.encode("text", text.collate(["moving left", "moving right"], spec))
        logits = vm.head.logit_scale.exp() * model.encode("video", {"pixel_values": pixels}) @ classes.t()
        torch.testing.assert_close(logits, vm(pixels), atol=1e-4, rtol=0)
        plain = vm.base.encode("text", text.collate(["moving left", "moving right"], spec))
    assert (classes - plain).abs().max() > 1e-3  # the learned context changed the texts


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_for_retrieval_loads_as_an_embedding_model(name, make_lit, tmp_path):
    _, folder = _saved(make_lit, tmp_path, name, task="retrieve")
    model = xmodal.load(folder)
    with torch.no_grad():
        out = {"video": model.encode("video", {"pixel_values": torch.rand(2, 4, 3, 16, 16)}),
               "image": model.encode("image", {"pixel_values": torch.rand(2, 3, 16, 16)}),
               "text": model.encode("text", MODALITIES.get("text").collate(["a", "b c"], model.spec("text")))}
    for modality, vectors in out.items():
        assert vectors.shape == (2, model.embed_dim), modality
        torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(2), msg=modality)


def test_a_transferred_model_runs_in_onnxruntime_with_the_same_vectors(retrieval_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from xmodal.exporters.runtime import OnnxEmbedder

    _, folder, _ = retrieval_run
    model = xmodal.load(folder)
    fast = OnnxEmbedder(model, tmp_path / "onnx")
    assert fast.backends == {"video": "onnx", "image": "onnx", "text": "onnx"}
    batches = {"video": {"pixel_values": torch.rand(3, 4, 3, 16, 16)}, "image": {"pixel_values": torch.rand(3, 3, 16, 16)},
               "text": MODALITIES.get("text").collate(["a square moving left", "b", "a b c d"], model.spec("text"))}
    with torch.no_grad():
        for modality, batch in batches.items():
            torch.testing.assert_close(fast.encode(modality, batch), model.encode(modality, batch), atol=1e-4, rtol=0)


def test_a_text_side_that_reads_strings_stays_in_pytorch(make_lit, tmp_path):
    pytest.importorskip("onnxruntime")
    from xmodal.exporters.runtime import OnnxEmbedder

    _, folder = _saved(make_lit, tmp_path, "prompt", tokens=2, text_context=2)
    fast = OnnxEmbedder(xmodal.load(folder), tmp_path / "onnx")
    assert fast.backends == {"video": "onnx", "image": "onnx", "text": "torch"} and "text" in fast.skipped


def test_cli_embed_writes_the_vectors_of_a_transferred_model_on_both_backends(retrieval_run, video_manifest, tmp_path,
                                                                              capsys):
    import numpy as np

    _, folder, test_rows = retrieval_run
    vectors = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / backend
        assert main(["embed", "--model", str(folder), "--data", str(video_manifest), "--split", "test", "--modality",
                     "video", "--out", str(out), "--backend", backend, "--no-progress"]) == 0
        assert "embedded 4 video item(s)" in capsys.readouterr().out
        vectors[backend] = np.load(out / "vectors.npy")
        assert json.loads((out / "items.json").read_text())["items"] == [r["path"] for r in test_rows]
    expected = xmodal.embed(xmodal.load(folder), "video", [r["path"] for r in test_rows], root=video_manifest.parent,
                            progress=False).vectors.numpy()
    assert np.abs(vectors["torch"] - expected).max() < 1e-5 and np.abs(vectors["onnx"] - expected).max() < 1e-4
    assert (tmp_path / "onnx" / "onnx" / "video.onnx").is_file()


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_s_towers_save_and_reload_without_the_transfer_folder(name, make_lit, tmp_path):
    """What ``xmodal bind --model RUN/model`` binds to (``as_towers``) saves as an xmodal checkpoint that rebuilds
    the strategy and the head from its own assets and gives the same vectors, the transfer folder gone."""
    import shutil

    _, folder = _saved(make_lit, tmp_path / "run", name, task="retrieve")
    model = xmodal.load(folder)
    with torch.no_grad():  # every trained weight moved off its start (LoRA's B starts at zero, ...)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    towers = model.as_towers()
    saved = towers.save_pretrained(tmp_path / "towers")
    shutil.rmtree(tmp_path / "run")
    again = xmodal.load(saved)
    batches = {"video": {"pixel_values": torch.rand(2, 4, 3, 16, 16)}, "image": {"pixel_values": torch.rand(2, 3, 16, 16)},
               "text": MODALITIES.get("text").collate(["a b", "moving left"], model.spec("text"))}
    with torch.no_grad():
        for modality, batch in batches.items():
            expected = model.encode(modality, batch)
            torch.testing.assert_close(towers.encode(modality, batch), expected, atol=1e-6, rtol=0, msg=modality)
            torch.testing.assert_close(again.encode(modality, batch), expected, atol=1e-5, rtol=0, msg=modality)
