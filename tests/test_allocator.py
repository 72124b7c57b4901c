"""xmodal.allocator: glibc malloc thresholds set at import, with an opt-out and the user's settings winning."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from xmodal.allocator import allocator_state, tune_allocator

SRC = str(Path(__file__).resolve().parents[1] / "src")
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# 20 steps that each fill and free four buffers of N 8-byte values (a batch's activations); print the minor page
# faults.
CHURN = """
import resource, sys, numpy as np
import xmodal
from xmodal.allocator import allocator_state
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    bufs = [np.ones(int(sys.argv[1])) for _ in range(4)]
    del bufs
print(allocator_state(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def churn(size: int = 3 << 19, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "XMODAL_MALLOC", "GLIBC_TUNABLES"))}
    out = subprocess.run([sys.executable, "-c", CHURN, str(size)], env={**clean, "PYTHONPATH": SRC, **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return " ".join(out[:-1]), int(out[-1])


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_import_tunes_glibc_and_stops_the_page_fault_churn() -> None:
    tuned_state, tuned = churn()
    system_state, system = churn(XMODAL_MALLOC="system")
    assert tuned_state == "tuned"
    assert system_state == "system (XMODAL_MALLOC=system)"
    # glibc's default trims freed heap top beyond 2 x its (adapted) mmap threshold, so steps fault pages back
    # in (measured: ~2,000 a step); tuned, the 48 MiB are faulted in once
    assert system > 20 * 1000
    assert tuned < system / 5


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_buffers_above_the_largest_mmap_threshold_are_reused_too() -> None:
    """96 MiB buffers (a CNN's activations over long log-mels) are above any mmap threshold: glibc maps and
    unmaps each, every step (measured: ~45,000 faults in all, numpy asking for huge pages); tuned, they come
    from the heap and are faulted in once (~2,200)."""
    _, tuned = churn(12 << 20)
    _, system = churn(12 << 20, XMODAL_MALLOC="system")
    assert system > 20 * 1000
    assert tuned < system / 5


def test_user_malloc_settings_win() -> None:
    assert tune_allocator({"MALLOC_TRIM_THRESHOLD_": "100000"}) == "user settings"
    assert tune_allocator({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}) == "user settings"
    assert allocator_state() == "user settings"


def test_opt_out_and_unknown_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert tune_allocator({"XMODAL_MALLOC": "System"}) == "system (XMODAL_MALLOC=system)"
    state = tune_allocator({"XMODAL_MALLOC": "fast"})
    assert state == ("tuned" if GLIBC else "not glibc")
    assert "XMODAL_MALLOC='fast' is not 'tuned' or 'system'" in capsys.readouterr().err
