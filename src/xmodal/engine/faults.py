"""A fault-injection hook for crash tests: ``XMODAL_KILL_AT=<point>:<n>`` makes the process SIGKILL
itself the ``n``-th time it passes :func:`kill_point` ``<point>`` (e.g. ``checkpoint.written:2``).

Points: ``step`` (after an optimizer step), ``log`` (an epoch's line written to log.jsonl, before its
checkpoint), ``checkpoint.weights`` / ``checkpoint.optimizer`` / ``checkpoint.written`` (inside a
checkpoint write, before its commit), ``checkpoint.committed`` (after the commit, before old
checkpoints are removed) and ``trained`` (training done, before the model is saved). Without the
variable the hook does nothing.
"""

from __future__ import annotations

import os
import signal

_passed: dict[str, int] = {}  # point -> times passed in this process


def kill_point(name: str) -> None:
    """SIGKILL this process if ``XMODAL_KILL_AT`` names this passage of point ``name``."""
    spec = os.environ.get("XMODAL_KILL_AT")
    if not spec:
        return
    _passed[name] = _passed.get(name, 0) + 1
    point, _, count = spec.rpartition(":")
    if point == name and str(_passed[name]) == count:
        os.kill(os.getpid(), signal.SIGKILL)
