"""glibc malloc settings for tensor-sized buffers, chosen by the package at import time (issue #13).

glibc serves an allocation above its mmap threshold (128 KiB at start, adapting upwards) with a fresh
``mmap`` and unmaps it on ``free``, and trims the top of its heap back to the OS beyond its trim
threshold. A loop that allocates and frees the same multi-megabyte tensors every step (a training step,
a decoded clip, a batch of log-mels) then touches brand-new pages every time: millions of minor page
faults per epoch, with system time close to user time. Fixed, large thresholds keep freed buffers in the
heap, where the next step reuses them (the faults happen once instead of every step); the cost is that
the process keeps its high-water memory instead of handing it back between steps.

``import xmodal`` calls :func:`tune_allocator`; it sets

- ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's largest): buffers up to 32 MiB come from the reusable heap;
- ``M_MMAP_MAX`` = 0: larger buffers come from the heap too, instead of a fresh ``mmap`` each (a CNN's
  activations over 4-second log-mels at batch 64 are ~200 MiB: with the threshold alone, a plain ``xmodal
  bind`` still took 40M minor faults and sys/user 70% in 4 epochs of 256 clips; with this, 0.9M and 2.7%,
  and 18.2 instead of 9.7 clips/s; bench/bind_throughput.py --cli-defaults). glibc's threads other than
  the main one still map a buffer larger than their 64 MiB heaps;
- ``M_TRIM_THRESHOLD`` = 1 GiB: up to 1 GiB of freed heap top is kept for reuse.

It does so only on Linux with glibc, silently does nothing elsewhere (musl, macOS, Windows), and leaves
glibc alone when the environment already says how it should behave:

- ``XMODAL_MALLOC=system``: opt out, keep glibc's defaults;
- ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_MMAP_MAX_``, ``MALLOC_TRIM_THRESHOLD_`` or a ``glibc.malloc`` entry in ``GLIBC_TUNABLES``
  set by the user: theirs win.

Child processes (DataLoader workers) inherit the settings. This module imports nothing heavy.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from typing import Mapping

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers (glibc's malloc.h)
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
MMAP_THRESHOLD = 32 << 20  # bytes: glibc's maximum (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1 << 30  # bytes of free heap top kept before glibc trims it
OPT_OUT = "XMODAL_MALLOC"  # environment variable: "system" keeps glibc's defaults
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")

_STATE = ["not applied"]  # what the last tune_allocator call did (one slot)


def tune_allocator(env: Mapping[str, str] | None = None) -> str:
    """Apply the settings above once; returns (and remembers, see :func:`allocator_state`) what happened:
    ``"tuned"``, ``"system (XMODAL_MALLOC=system)"``, ``"user settings"`` or ``"not glibc"``."""
    env = os.environ if env is None else env
    choice = env.get(OPT_OUT, "tuned").strip().lower()
    if choice not in ("tuned", "system", ""):
        print(f"xmodal: {OPT_OUT}={env[OPT_OUT]!r} is not 'tuned' or 'system'; using 'tuned'", file=sys.stderr)
    if choice == "system":
        state = f"system ({OPT_OUT}=system)"
    elif any(name in env for name in _USER_SETTINGS) or "glibc.malloc" in env.get("GLIBC_TUNABLES", ""):
        state = "user settings"
    else:
        settings = {M_MMAP_THRESHOLD: MMAP_THRESHOLD, M_MMAP_MAX: 0, M_TRIM_THRESHOLD: TRIM_THRESHOLD}
        state = "tuned" if _mallopt(settings) else "not glibc"
    _STATE[0] = state
    return state


def allocator_state() -> str:
    """What :func:`tune_allocator` did in this process (``"not applied"`` before it ran)."""
    return _STATE[0]


def _mallopt(settings: dict[int, int]) -> bool:
    """Call glibc's ``mallopt`` for each setting; False (nothing changed) off glibc Linux."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in settings.items())
