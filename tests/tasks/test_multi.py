"""The multi-task task: its config checks, rows routed to their task, one-task batches, metrics per task."""

from __future__ import annotations

import pytest
import torch

from xmodal.errors import ConfigError, DataError
from xmodal.strategies.data import GroupedBatches
from xmodal.tasks import TASKS
from xmodal.tasks.multi import MultiConfig, select

ROWS = [{"path": "a.mp4", "task": "classify", "label": "left"},
        {"path": "b.mp4", "task": "retrieve", "caption": "a red circle"},
        {"path": "c.mp4", "task": "classify", "label": "right"},
        {"path": "a.mp4", "task": "retrieve", "caption": "a blue square"}]


def test_config_checks_names_options_and_weights():
    with pytest.raises(ConfigError, match="unknown task"):
        MultiConfig(tasks=("classify", "nope"))
    with pytest.raises(ConfigError, match="cannot be one of its own"):
        MultiConfig(tasks=("classify", "multi"))
    with pytest.raises(ConfigError, match="listed twice"):
        MultiConfig(tasks=("classify", "classify"))
    with pytest.raises(ConfigError, match="not among tasks"):
        MultiConfig(tasks=("classify",), weights={"ground": 2.0})
    with pytest.raises(ConfigError, match="unknown key"):
        MultiConfig(tasks=("classify",), options={"classify": {"labl": "x"}})


def test_rows_go_to_their_task_and_targets_come_back_per_task():
    task, cfg = TASKS.get("multi"), MultiConfig(tasks=("classify", "retrieve"))
    meta = task.meta(ROWS, cfg)
    assert meta["classify"]["classes"] == ["left", "right"]
    targets = task.targets(ROWS, meta, cfg, "m.jsonl")
    assert targets["task"].tolist() == [0, 1, 0, 1]
    classify = select(targets, "classify", torch.tensor([0, 2]))
    assert classify["labels"].tolist() == [0, 1]
    retrieve = select(targets, "retrieve", torch.tensor([1, 3]))
    assert retrieve["captions"] == ["a red circle", "a blue square"]


def test_a_row_of_another_task_or_a_task_without_rows_is_named():
    task, cfg = TASKS.get("multi"), MultiConfig(tasks=("classify", "retrieve"))
    with pytest.raises(DataError, match="row 2 .*task='ground' is not one of"):
        task.targets([ROWS[0], {**ROWS[1], "task": "ground"}], {}, cfg, "m.jsonl")
    with pytest.raises(DataError, match=r"no rows of task\(s\) \['retrieve'\]"):
        task.meta([ROWS[0]], cfg)


def test_grouped_batches_hold_one_group_and_cover_every_row_once():
    groups = torch.tensor([0, 1, 0, 2, 1, 0, 0, 2, 1])
    batches = list(GroupedBatches(groups, 2, torch.Generator().manual_seed(0)))
    assert len(batches) == len(GroupedBatches(groups, 2, torch.Generator())) == 2 + 2 + 1
    assert all(len(set(groups[b].tolist())) == 1 for b in batches)
    assert sorted(torch.cat(batches).tolist()) == list(range(len(groups)))
    again = list(GroupedBatches(groups, 2, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))  # seeded: reproducible


def test_balanced_groups_get_as_many_batches_each_and_the_small_group_repeats():
    groups = torch.tensor([0] * 12 + [1] * 2)  # 6 batches of 2 and 1 batch: 3.5 on average
    sampler = GroupedBatches(groups, 2, torch.Generator().manual_seed(0), balanced=True)
    first, second = list(sampler), list(sampler)
    assert len(sampler) == len(first) == 8
    for epoch in (first, second):
        per_group = [[b for b in epoch if groups[b[0]] == g] for g in (0, 1)]
        assert [len(p) for p in per_group] == [4, 4]  # uniform task sampling
        assert all(len(set(groups[b].tolist())) == 1 for b in epoch)
        big = torch.cat(per_group[0]).tolist()
        assert len(big) == len(set(big)) == 8  # a subset of the large group, no row twice
        assert sorted(torch.cat(per_group[1]).tolist()) == [12, 12, 12, 12, 13, 13, 13, 13]  # the small one repeats
    assert {tuple(b.tolist()) for b in first if groups[b[0]] == 0} != {tuple(b.tolist()) for b in second if groups[b[0]] == 0}
    unbalanced = GroupedBatches(groups, 2, torch.Generator().manual_seed(0))
    assert len(unbalanced) == 7 and sorted(torch.cat(list(unbalanced)).tolist()) == list(range(14))


def test_multi_task_samples_rows_proportionally_unless_told_uniform():
    task = TASKS.get("multi")
    ids = torch.tensor([0, 0, 1])
    assert not task.batch_groups({"task": ids}, MultiConfig(tasks=("classify", "retrieve"))).balanced
    assert task.batch_groups({"task": ids}, MultiConfig(tasks=("classify", "retrieve"), sampling="uniform")).balanced
    with pytest.raises(ConfigError, match="sampling 'random' is not one of"):
        MultiConfig(tasks=("classify", "retrieve"), sampling="random")


def test_metrics_are_prefixed_per_task_and_score_averages_the_headlines():
    from xmodal.tasks.multi import TaskView

    class Model:  # the parts of a VideoModel the metrics read
        task_config = MultiConfig(tasks=("classify", "ground"))
        meta = {"classify": {"classes": ["left", "right"]}, "ground": {"num_frames": 4}}

    batch = {"task": torch.tensor([0, 1, 0]), "classify/labels": torch.tensor([1, 0, 0]),
             "ground/spans": torch.tensor([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]])}
    outputs = {"classify": torch.tensor([[0.0, 1.0], [0.0, 1.0]]), "ground": torch.tensor([[1.0, 2.0]])}
    m = TASKS.get("multi").metrics(Model(), outputs, batch)
    assert m["classify_top1"] == 0.5 and m["ground_R1@0.5"] == 1.0 and m["score"] == pytest.approx(0.75)
    assert "classify_confusion" not in m  # only scalar figures
    assert TaskView(Model(), "ground", None).meta == {"num_frames": 4}
