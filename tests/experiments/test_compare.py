"""The compare table: trainable parameters as a share of the reference strategy's (a CompareConfig field)."""

from __future__ import annotations

import math

from xmodal.experiments.compare import CompareConfig
from xmodal.experiments.compare_report import table_rows


def _result(label: str, trainable: int) -> dict:
    return {"label": label, "frozen_backbone": label != "full", "top1": 0.5, "trainable_params": trainable,
            "total_params": 1000, "train_seconds": 1.0, "seconds_per_epoch": 0.1, "epochs": 10,
            "peak_memory_mb": 1.0, "flops_per_clip": 1e6}


def test_share_of_trainable_parameters_is_relative_to_the_reference() -> None:
    results = [_result("full", 800), _result("lora", 40), _result("temporal_head", 20)]
    assert CompareConfig().reference == "full"
    by_full = {r["strategy"]: r["% of full"] for r in table_rows(results, CompareConfig().reference)}
    assert by_full == {"full": 100.0, "lora": 5.0, "temporal_head": 2.5}
    by_lora = {r["strategy"]: r["% of full"] for r in table_rows(results, "lora")}
    assert by_lora["temporal_head"] == 50.0 and by_lora["lora"] == 100.0
    assert all(math.isnan(r["% of full"]) for r in table_rows(results, "absent"))


def test_multi_task_section_sets_each_task_beside_its_single_task_run() -> None:
    from xmodal.experiments.compare_report import multi_section

    multi = {**_result("adapter", 700), "score": 0.6, "classify_top1": 0.7, "ground_R1@0.5": 0.5,
             "strategy_params": 100, "head_params": 600}
    alone = {"classify": {"top1": 0.65, "strategy_params": 100, "head_params": 200, "train_seconds": 2.0},
             "ground": {"R1@0.5": 0.55, "strategy_params": 100, "head_params": 400, "train_seconds": 3.0}}
    title, text, rows = multi_section([multi], {"adapter": alone}, ("classify", "ground"))
    assert [r["points"] for r in rows[:2]] == [5.0, -5.0]
    summary = rows[2]
    assert summary["alone"] == 0.6 and summary["multi-task"] == 0.6
    assert summary["strategy params"] == "100 vs 200" and summary["train s"] == "1.0 vs 5.0"


def test_task_baselines_run_after_the_strategies_with_their_task_options() -> None:
    import dataclasses

    from xmodal.experiments.compare import planned, transfer_config
    from xmodal.strategies.train import TransferConfig

    cfg = CompareConfig(strategies=("zero_shot", "temporal_head:head.kind=conv"),
                        transfer=TransferConfig(task="qa", task_options={"num_frames": 8}))
    runs = planned(cfg)
    assert [r[0] for r in runs] == ["zero_shot", "temporal_head[kind=conv]", "question_only"]
    label, name, options, overrides = runs[-1]
    assert name == "linear_probe" and overrides == {"use_video": False}
    assert transfer_config(cfg, runs[-1], 3).task_options == {"num_frames": 8, "use_video": False}
    assert transfer_config(cfg, runs[0], 3).task_options == {"num_frames": 8}
    assert [r[0] for r in planned(dataclasses.replace(cfg, baselines=False))] == ["zero_shot", "temporal_head[kind=conv]"]
    assert planned(dataclasses.replace(cfg, transfer=TransferConfig(task="classify")))[-1][0] == "temporal_head[kind=conv]"


def test_breakdown_figures_close_the_table_row() -> None:
    from xmodal.experiments.compare_report import breakdown_keys

    results = [{**_result("full", 10), "accuracy": 0.5, "accuracy_held_out_true": 0.25, "accuracy_std": 0.1,
                "accuracy_runs": [0.5, 0.5], "seeds": [0, 1]}, {**_result("lora", 5), "accuracy": 0.75, "accuracy_kind_after": 1.0}]
    assert breakdown_keys(results, "accuracy") == ["accuracy_held_out_true", "accuracy_kind_after"]
    rows = table_rows(results, "full", ("accuracy",))
    assert rows[0]["accuracy_held_out_true"] == 0.25 and math.isnan(rows[0]["accuracy_kind_after"])
    assert list(rows[1])[-2:] == ["accuracy_held_out_true", "accuracy_kind_after"]


def test_budget_scale_multiplies_every_runs_budget_once_single_task_and_multi_task() -> None:
    import dataclasses

    import pytest

    from xmodal.experiments.compare import MULTI_SHARE, minutes, planned, single, transfer_config
    from xmodal.strategies.train import TransferConfig

    cfg = CompareConfig(strategies=("adapter",), budget_scale=3.0, transfer=TransferConfig(task="multi"))
    run = planned(cfg)[0]
    assert 0 < MULTI_SHARE < 1  # k + 1 runs per strategy: each gets a share of its single-task compare budget
    assert minutes(cfg, "ground") == MULTI_SHARE * 2.0 and minutes(cfg, "classify") == MULTI_SHARE * cfg.transfer.fit.max_minutes
    alone = single(cfg, "ground", {})
    assert transfer_config(alone, run, 0).fit.max_minutes == pytest.approx(MULTI_SHARE * 6.0)  # scaled once
    summed = dataclasses.replace(cfg, transfer=dataclasses.replace(
        cfg.transfer, fit=dataclasses.replace(cfg.transfer.fit, max_minutes=5.0)))
    assert transfer_config(summed, run, 0).fit.max_minutes == 15.0
    unscaled = dataclasses.replace(cfg, budget_scale=1.0)
    assert transfer_config(unscaled, run, 0).fit.max_minutes == cfg.transfer.fit.max_minutes


def test_a_budget_scale_of_zero_or_less_is_refused_before_any_work(tmp_path) -> None:
    import pytest

    from xmodal.errors import ConfigError
    from xmodal.experiments.compare import compare

    with pytest.raises(ConfigError, match="budget_scale must be > 0"):
        compare(CompareConfig(out=str(tmp_path / "out"), strategies=("linear_probe",), budget_scale=0.0))
    assert not (tmp_path / "out").exists()


def test_task_stories_give_a_single_task_compare_its_own_world_of_stories(monkeypatch) -> None:
    """qa reads out/world-qa (its stories alone, more of them for training); other tasks and multi-task
    compares read out/world, whose images the base aligns on."""
    import pytest

    from xmodal.experiments import world
    from xmodal.experiments.compare import world_rows
    from xmodal.strategies.train import TransferConfig

    class Asked(Exception):
        pass

    def generate(root, cfg, progress=True):
        raise Asked(root.name, cfg.stories_train, cfg.images_train)

    monkeypatch.setattr(world, "generate_world", generate)
    shared = CompareConfig().world
    for task, options, asked in (
            ("qa", {}, ("world-qa", 1234, 0)),
            ("ground", {}, ("world", shared.stories_train, shared.images_train)),
            ("multi", {}, ("world", shared.stories_train, shared.images_train)),  # its first task
            ("multi", {"tasks": ["qa"]}, ("world", shared.stories_train, shared.images_train))):
        with pytest.raises(Asked) as got:
            world_rows(CompareConfig(task_stories={"qa": 1234}, transfer=TransferConfig(task=task, task_options=options)),
                       lambda _: None)
        assert got.value.args == asked, (task, options)
