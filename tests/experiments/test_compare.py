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
