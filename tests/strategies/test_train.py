"""The transfer entry point on real (tiny) video files: caching, training, metrics, save/load, CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import xmodal
from xmodal.data.manifest import read_manifest
from xmodal.engine.fit import FitConfig
from xmodal.strategies import load_transfer
from xmodal.strategies.base import VideoModel
from xmodal.strategies.train import TransferConfig, split_rows, transfer


def _cfg(strategy: str, epochs: int = 2, **options) -> TransferConfig:
    return TransferConfig(strategy=strategy, options=options, batch_size=4,
                          fit=FitConfig(epochs=epochs, lr=1e-2, monitor="val_top1", restore_best=True, progress=False, verbose=False))


def _splits(manifest):
    return split_rows(read_manifest(manifest))


@pytest.mark.parametrize("name", ["temporal_head", "lora"])
def test_transfer_trains_measures_and_saves(name, make_lit, video_manifest, tmp_path):
    s = _splits(video_manifest)
    res = transfer(make_lit(), s["train"], _cfg(name), s["val"], s["test"], root=video_manifest.parent, out=tmp_path)
    m = res.metrics
    for key in ("top1", "top5", "mean_class_accuracy", "trainable_params", "total_params", "train_seconds",
                "peak_memory_mb", "throughput_clips_per_s", "flops_per_clip"):
        assert key in m, key
    assert m["flops_per_clip"] > 0 and m["throughput_clips_per_s"] > 0 and 0 < m["trainable_params"] < m["total_params"]
    assert m["frozen_backbone"] is (name == "temporal_head")
    assert (tmp_path / "train" / "log.jsonl").is_file()
    meta = json.loads((tmp_path / "model" / "transfer.json").read_text())
    assert meta["strategy"] == name and meta["task"] == "classify" and meta["base"] == str((tmp_path / "base").resolve())
    loaded = load_transfer(tmp_path / "model")
    x = torch.randn(2, 4, 3, 16, 16)
    res.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(x), res.model(x), atol=1e-5)


def _counted(model, monkeypatch) -> list[int]:
    """Count the calls of ``model``'s image trunk (the frozen backbone)."""
    calls: list[int] = []
    tower = model.tower("image")
    original = tower.trunk
    monkeypatch.setattr(tower, "trunk", lambda batch: calls.append(1) or original(batch))
    return calls


def test_frozen_strategy_encodes_each_clip_once(make_lit, video_manifest, monkeypatch, tmp_path):
    """Backbone calls do not grow with epochs: features are cached, not re-encoded."""
    s = _splits(video_manifest)
    counts = []
    for epochs in (1, 6):
        model = make_lit()
        calls = _counted(model, monkeypatch)
        cfg = dataclasses.replace(_cfg("temporal_head", epochs=epochs), feature_store=str(tmp_path / f"store{epochs}"))
        transfer(model, s["train"], cfg, s["val"], None, root=video_manifest.parent)
        counts.append(len(calls))
    assert counts[0] == counts[1]


def test_a_second_run_reads_the_feature_store_and_encodes_nothing(make_lit, video_manifest, monkeypatch, tmp_path):
    """Same files, model and preprocessing: the second run never calls the frozen encoder (its features come
    from disk) and trains to the same weights as the first, and as a run that keeps features in memory."""
    s = _splits(video_manifest)
    encoded: list[int] = []  # clips through the frozen encoder (VideoModel.inputs: what a frozen strategy caches)
    original = VideoModel.inputs
    monkeypatch.setattr(VideoModel, "inputs", lambda vm, pixels: encoded.append(len(pixels)) or original(vm, pixels))
    runs = []
    for store in ("disk", "disk", ""):
        encoded.clear()
        cfg = dataclasses.replace(_cfg("temporal_head", epochs=1), feature_store=store and str(tmp_path / store))
        res = transfer(make_lit(), s["train"], cfg, s["val"], s["test"], root=video_manifest.parent)
        runs.append((sum(encoded), res.metrics["features_encoded"], res.model.own_state(), res.metrics["top1"]))
    clips = len({r["path"] for r in s["train"]}) + len({r["path"] for r in s["val"]})
    tested = len({r["path"] for r in s["test"]})
    assert [r[1] for r in runs] == [clips, 0, clips]  # train + val clips encoded for training
    assert [r[0] for r in runs] == [clips + tested, 0, clips + tested]  # + the test clips measured
    for other in runs[1:]:
        assert all(torch.equal(runs[0][2][k], other[2][k]) for k in runs[0][2]) and other[3] == runs[0][3]
    other_model = make_lit(seed=1)  # other weights: another namespace, encoded afresh
    cfg = dataclasses.replace(_cfg("temporal_head", epochs=1), feature_store=str(tmp_path / "disk"))
    res = transfer(other_model, s["train"], cfg, s["val"], None, root=video_manifest.parent)
    assert res.metrics["features_encoded"] == clips and len(list((tmp_path / "disk").iterdir())) == 2


def test_folder_of_class_folders_and_unknown_test_class(make_lit, video_manifest, tmp_path):
    from xmodal.errors import DataError

    rows = read_manifest(video_manifest)
    root = video_manifest.parent
    bad = [dict(r, label="spinning") for r in rows if r["split"] == "test"]
    with pytest.raises(DataError, match="spinning"):
        transfer(make_lit(), [r for r in rows if r["split"] == "train"], _cfg("linear_probe", 1), None, bad, root=root)
    parts = split_rows([{"path": f"{i}.mp4", "label": "ab"[i % 2]} for i in range(20)])
    assert [len(parts[k]) for k in ("train", "val", "test")] == [12, 4, 4]


def test_cli_transfer_and_compare(make_lit, video_manifest, tmp_path, capsys):
    from xmodal.cli.main import main

    base = make_lit().save_pretrained(tmp_path / "base")
    out = tmp_path / "t"
    rc = main(["transfer", "--strategy", "adapter", "--model", str(base), "--data", str(video_manifest), "--out", str(out),
               "--epochs", "1", "--option", "temporal=false", "--no-progress", "--set", "batch_size=4"])
    assert rc == 0 and (out / "model" / "strategy.safetensors").is_file() and (out / "metrics.json").is_file()
    assert json.loads((out / "model" / "transfer.json").read_text())["config"]["temporal"] is False
    rc = main(["compare", "--strategies", "zero_shot,linear_probe,temporal_head:head.kind=conv,lora", "--model", str(base),
               "--data", str(video_manifest), "--out", str(tmp_path / "c"), "--epochs", "1", "--set", "transfer.batch_size=4"])
    assert rc == 0
    report = tmp_path / "c" / "report" / "classify"
    assert {"results.json", "report.md", "accuracy_vs_params.png", "accuracy_vs_time.png"} <= {p.name for p in report.iterdir()}
    table = json.loads((report / "results.json").read_text())["table"]
    assert [r["strategy"] for r in table] == ["zero_shot", "linear_probe", "temporal_head[kind=conv]", "lora"]
    assert "% of full" in table[0]
    assert main(["transfer", "--strategy", "nope", "--model", str(base), "--data", str(video_manifest), "--out", str(out)]) == 2
    assert "unknown strategy" in capsys.readouterr().err


def test_learning_rate_is_the_users_else_the_strategys_else_the_engines(make_lit):
    from xmodal.strategies.train import build, fit_config

    lora, adapter, full = (build(make_lit(), TransferConfig(strategy=n), {"classes": ["a", "b"]})
                           for n in ("lora", "adapter", "full"))
    assert fit_config(TransferConfig(), lora).lr == lora.default_lr != TransferConfig().fit.lr
    assert fit_config(TransferConfig(lr=3e-3), lora).lr == 3e-3
    assert fit_config(TransferConfig(), adapter).lr == TransferConfig().fit.lr
    assert fit_config(TransferConfig(), full).lr_scales["base."] == full.backbone_lr_scale < 1
    assert fit_config(TransferConfig(), full).monitor == "val_top1"  # the task's, unless fit.monitor names one


def test_compare_with_seeds_reports_mean_and_spread(make_lit, video_manifest, tmp_path):
    from xmodal.errors import ConfigError
    from xmodal.experiments.compare import CompareConfig, compare

    base = make_lit().save_pretrained(tmp_path / "base")
    cfg = CompareConfig(out=str(tmp_path / "c"), strategies=("zero_shot", "temporal_head:head.kind=mean"), model=str(base),
                        data=str(video_manifest), seeds=2, transfer=_cfg("temporal_head", epochs=3))
    summary = compare(cfg, say=lambda _: None)
    runs = {p.name for p in (tmp_path / "c" / "runs" / "classify").iterdir()}
    assert runs == {"zero_shot", "zero_shot@seed1", "temporal_head-kind-mean", "temporal_head-kind-mean@seed1"}  # shell-safe
    rows = {r["strategy"]: r for r in summary["table"]}
    head = next(r for r in summary["runs"] if r["label"] == "temporal_head[kind=mean]")  # the label stays in reports
    assert head["seeds"] == [0, 1] and rows["temporal_head[kind=mean]"]["seeds"] == 2
    assert rows["temporal_head[kind=mean]"]["top1"] == pytest.approx(sum(head["top1_runs"]) / 2, abs=1e-4)
    assert rows["zero_shot"]["top1 std"] == 0  # no training: every seed gives the same answer
    with pytest.raises(ConfigError, match="seeds"):
        compare(CompareConfig(out=str(tmp_path / "d"), model=str(base), data=str(video_manifest), seeds=0))


def test_run_folder_names_are_safe_for_shells():
    from xmodal.experiments.compare import folder_name, parse_spec

    assert folder_name(parse_spec("partial:mode=bitfit")[0]) == "partial-mode-bitfit"
    assert folder_name(parse_spec("adapter:temporal=true,bottleneck=4")[0]) == "adapter-temporal-true-bottleneck-4"
    assert folder_name("lora") == "lora" and folder_name("qa[question only]") == "qa-question-only"


def test_compare_reuses_the_same_run_and_refuses_other_settings_unless_overwrite(make_lit, video_manifest, tmp_path):
    import dataclasses

    from xmodal.errors import ConfigError
    from xmodal.experiments.compare import CompareConfig, compare

    base = make_lit().save_pretrained(tmp_path / "base")
    cfg = CompareConfig(out=str(tmp_path / "c"), strategies=("temporal_head",), model=str(base),
                        data=str(video_manifest), transfer=_cfg("temporal_head", epochs=1), baselines=False)
    said: list[str] = []
    compare(cfg, say=said.append)
    compare(cfg, say=said.append)
    assert any("cached in" in line for line in said)
    other = dataclasses.replace(cfg, transfer=_cfg("temporal_head", epochs=2))
    with pytest.raises(ConfigError, match="different config.transfer.fit.epochs; pass --overwrite"):
        compare(other, say=said.append)
    summary = compare(dataclasses.replace(other, overwrite=True), say=lambda _: None)
    assert summary["runs"][0]["epochs"] == 2

def test_retrieval_task_trains_the_video_side_against_captions(make_lit, video_manifest, tmp_path):
    s = _splits(video_manifest)
    cfg = TransferConfig(task="retrieve", strategy="temporal_head", batch_size=4,
                         fit=FitConfig(epochs=3, lr=1e-2, progress=False, verbose=False))
    res = transfer(make_lit(), s["train"], cfg, s["val"], s["test"], root=video_manifest.parent, out=tmp_path)
    m = res.metrics
    assert {"t2v_R@1", "t2v_R@5", "t2v_R@10", "t2v_median_rank", "t2v_mean_rank", "v2t_R@1", "v2t_mean_rank"} <= set(m)
    assert res.history.epochs and "val_t2v_R@1" in res.history.epochs[-1]
    assert json.loads((tmp_path / "model" / "transfer.json").read_text())["task"] == "retrieve"
    zero = transfer(make_lit(), s["train"], TransferConfig(task="retrieve", strategy="zero_shot"), None, s["test"],
                    root=video_manifest.parent)
    assert zero.metrics["trainable_params"] == 0 and 0 <= zero.metrics["t2v_R@1"] <= 1


def test_grounding_task_on_world_stories(make_lit, tmp_path):
    from xmodal.experiments.world import WorldConfig, generate_world, world_paths

    world = WorldConfig(colours=("red", "green", "blue", "yellow"), shapes=("circle", "square", "triangle", "star"),
                        image_size=16, images_train=0, images_val=0, images_test=0, video_size=16, clips_train=0,
                        clips_val=0, clips_test=0, stories_train=6, stories_val=2, stories_test=2, story_frames=16,
                        audio_sample_rate=8000)
    root = generate_world(tmp_path / "w", world, progress=False)
    s = split_rows(read_manifest(world_paths(root)["grounding"]))
    cfg = TransferConfig(task="ground", task_options={"num_frames": 8, "width": 16, "layers": 1}, strategy="temporal_head",
                         batch_size=4, fit=FitConfig(epochs=2, lr=1e-2, progress=False, verbose=False))
    res = transfer(make_lit(), s["train"], cfg, s["val"], s["test"], root=root)
    assert {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"} <= set(res.metrics) and 0 <= res.metrics["mIoU"] <= 1
    clips = {r["path"] for r in s["train"]}
    assert len(clips) < len(s["train"])  # several moments per story: each clip decoded once, rows point to it
    zero = transfer(make_lit(), s["train"], TransferConfig(task="ground", strategy="zero_shot", task_options={"num_frames": 8}),
                    None, s["test"], root=root)
    assert zero.metrics["trainable_params"] == 0 and 0 <= zero.metrics["R1@0.5"] <= 1
