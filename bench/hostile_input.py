"""Hostile inputs against the decode limits: time and peak memory of refusing or cutting them.

Each case runs in a fresh Python process (so its peak RSS is its own): the process imports xmodal,
records its RSS, decodes the input through the modality's ``load`` and reports the wall time of that
call, the outcome and its peak RSS (``resource.getrusage``; ``psutil`` is not needed). Run::

    python bench/hostile_input.py [--minutes 10] [--rate 96000]

Cases: the 467-byte 1 x 200000 PNG (must be refused in < 1 s with peak RSS < 500 MB) and a long
96 kHz stereo WAV (10 minutes by default; must peak below 300 MB while cut to the tower's 4 s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from xmodal.modalities import MODALITIES, AudioSpec, ImageSpec
kind, path = sys.argv[1], Path(sys.argv[2])
spec = ImageSpec() if kind == "image" else AudioSpec()
modality = MODALITIES.get(kind)
if kind == "audio":  # warm the mel filters and transformers' audio utilities on a short clip first
    from xmodal.modalities.audio import log_mel
    log_mel([0.0] * 16000, spec)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
try:
    out = modality.load(path, spec)
    outcome = f"loaded {tuple(out.shape)}"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {exc}"
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "base_mb": base, "peak_mb": peak, "outcome": outcome}))
"""


def bomb_png(path: Path) -> Path:
    from PIL import Image

    Image.new("1", (1, 200_000)).save(path, optimize=True)
    return path


def long_wav(path: Path, minutes: float, rate: int) -> Path:
    """A stereo 16-bit WAV of ``minutes`` of noise at ``rate`` Hz, written block by block."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=2, subtype="PCM_16", format="WAV") as f:
        for _ in range(int(minutes * 60)):
            f.write(rng.normal(0, 0.1, (rate, 2)).astype(np.float32))
    return path


def measure(kind: str, path: Path, src: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, kind, str(path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": src})
    if proc.returncode:  # e.g. killed by the kernel's out-of-memory killer
        return {"seconds": float("nan"), "base_mb": float("nan"), "peak_mb": float("nan"),
                "outcome": f"process died (exit status {proc.returncode}): {proc.stderr.strip()[-200:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the long WAV (default 10)")
    p.add_argument("--rate", type=int, default=96000, help="its sample rate, Hz (default 96000)")
    p.add_argument("--only", choices=("image", "audio"), help="run one case only")
    p.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"),
                   help="the xmodal sources to measure (default: this checkout's; another checkout's to compare)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        png = bomb_png(Path(tmp) / "bomb.png")
        wav = long_wav(Path(tmp) / "long.wav", args.minutes, args.rate)
        cases = [(f"1x200000 PNG ({png.stat().st_size} B)", "image", png, "< 1 s, < 500 MB"),
                 (f"{args.minutes:g}-min {args.rate // 1000} kHz stereo WAV ({wav.stat().st_size / 1e6:.0f} MB)",
                  "audio", wav, "< 300 MB")]
        rows = [(name, target, measure(kind, path, args.src)) for name, kind, path, target in cases
                if args.only in (None, kind)]
    print(f"sources: {args.src}")
    print(f"{'input':36s} {'decode s':>8s} {'import MB':>9s} {'peak MB':>8s} {'decode MB':>9s}  {'target':15s} outcome")
    for name, target, r in rows:  # import MB: peak RSS before decoding (torch alone is ~220 MB)
        print(f"{name:36s} {r['seconds']:8.3f} {r['base_mb']:9.0f} {r['peak_mb']:8.0f} {r['peak_mb'] - r['base_mb']:9.0f}  "
              f"{target:15s} {r['outcome'][:80]}")


if __name__ == "__main__":
    main()
