"""Audio-binding throughput on real data: clips/s, user and system CPU time, minor page faults (issue #13).

Binds 1-second spoken digits (av-digits, ``pairs.csv``: FSDD recordings paired with digit words) to the
locked MiniLM text tower of a new LiT model with ``xmodal.bind``, as bench/audio_text_bench.py's ``text``
route does (audio CNN, trained text head, class-balanced batches, augmented log-mels decoded once into
a cold cache). Each setting runs in a fresh process, so its CPU times and page faults are its own:

- ``main``: the package at ``--baseline-src`` (default: none; e.g. ``/work/main/src``), fp32, glibc defaults;
- ``fp32, glibc defaults``: this package with ``XMODAL_MALLOC=system``, fp32 (today's behaviour);
- ``fp32, tuned``: this package's allocator settings (``xmodal/allocator.py``), fp32;
- ``auto, tuned``: the candidate: allocator settings and ``precision="auto"``.

``clips/s`` counts every clip of every epoch over the whole ``bind`` call (decoding, caching and saving
included); ``epoch clips/s`` is over the epochs after the first (log-mels cached). CPU times and faults
are ``resource.getrusage`` of the process and its workers over the ``bind`` call::

    python bench/bind_throughput.py [--data ../shared/data/av-digits] [--clips 256] [--epochs 4]
        [--threads 2] [--baseline-src ../main/src] [--settings main,system,tuned,auto]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
AUDIO_SPEC = {"sample_rate": 8000, "n_mels": 40, "n_fft": 256, "hop_length": 128, "max_seconds": 1.0}
AUDIO_CNN = {"width": 16, "depth": 3}
SETTINGS = {  # name -> (label, XMODAL_MALLOC, precision)
    "main": ("main, fp32, glibc defaults", "system", "fp32"),
    "system": ("fp32, glibc defaults", "system", "fp32"),
    "tuned": ("fp32, tuned allocator", "tuned", "fp32"),
    "auto": ("auto, tuned allocator", "tuned", "auto"),
}


def usage() -> dict[str, float]:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"user": own.ru_utime + kids.ru_utime, "sys": own.ru_stime + kids.ru_stime,
            "faults": own.ru_minflt + kids.ru_minflt}


def _known(cls: type, **options: object) -> dict:
    """The ``options`` that are fields of the dataclass ``cls`` (the baseline checkout may predate some)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in options.items() if k in names}


def child(args: argparse.Namespace) -> None:
    """One bind in this process; prints its figures as one JSON line."""
    import torch

    import xmodal
    from xmodal.alignment.train import AlignConfig
    from xmodal.binding.train import BindConfig, bind
    from xmodal.data.manifest import read_manifest
    from xmodal.engine.fit import FitConfig

    torch.set_num_threads(args.threads)
    root = Path(args.data)
    train = [r for r in read_manifest(root / "pairs.csv") if r["split"] == "train"]
    rows = train[:: max(1, len(train) // args.clips)][: args.clips]  # every digit and speaker
    torch.manual_seed(0)
    model = xmodal.load("lit")
    fit = FitConfig(epochs=args.epochs, lr=3e-3, progress=False, verbose=False,
                    **_known(FitConfig, precision=args.precision))  # an older --baseline-src may lack a field
    align = AlignConfig(label_column="", batch_size=args.batch_size, fit=fit, **_known(AlignConfig, balance=True))
    tower = {} if args.cli_defaults else {"encoder_config": AUDIO_CNN, "spec": AUDIO_SPEC}
    cfg = BindConfig(encoder="audio_cnn", anchor="text", columns=("audio", "text"), align=align, **tower)
    with tempfile.TemporaryDirectory() as out:
        before, start = usage(), time.perf_counter()
        result = bind(model, rows, cfg, root=root, out=out)
        seconds, after = time.perf_counter() - start, usage()
    epochs = [e["train_seconds"] for e in result.history.epochs]
    print(json.dumps({"clips": len(rows), "epochs": len(epochs), "seconds": seconds,
                      "later epochs s": sum(epochs[1:]), **{k: after[k] - before[k] for k in after}}))


def run_setting(name: str, args: argparse.Namespace) -> dict:
    label, malloc, precision = SETTINGS[name]
    src = args.baseline_src if name == "main" else str(SRC)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env.update(PYTHONPATH=src, XMODAL_MALLOC=malloc, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, __file__, "--child", "--precision", precision, "--data", args.data,
           "--clips", str(args.clips), "--epochs", str(args.epochs), "--threads", str(args.threads),
           "--batch-size", str(args.batch_size)] + (["--cli-defaults"] if args.cli_defaults else [])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{name}: failed\n{done.stderr[-3000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    clips = r["clips"] * r["epochs"]
    later = r["clips"] * (r["epochs"] - 1)
    return {"setting": label, "src": "main" if name == "main" else "this branch",
            "clips/s": round(clips / r["seconds"], 1),
            "epoch clips/s": round(later / r["later epochs s"], 1) if later else float("nan"),
            "bind s": round(r["seconds"], 1), "user s": round(r["user"], 1), "sys s": round(r["sys"], 1),
            "sys/user %": round(100 * r["sys"] / max(r["user"], 1e-9), 1), "minor faults": int(r["faults"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "av-digits"))
    p.add_argument("--clips", type=int, default=256, help="training clips (spread over digits and speakers)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="torch compute threads of each bind")
    p.add_argument("--baseline-src", default="", help="another checkout's src/ run as the 'main' setting")
    p.add_argument("--settings", default="main,system,tuned,auto", help="comma-separated: " + ", ".join(SETTINGS))
    p.add_argument("--repeats", type=int, default=1, help="rounds over the settings, interleaved (all rows printed)")
    p.add_argument("--cli-defaults", action="store_true",
                   help="the audio tower and front end of a plain `xmodal bind` (audio_cnn width 32, 16 kHz, 64 mels, "
                        "clips padded to 4 s) instead of audio_text_bench's small ones (width 16, 8 kHz, 40 mels, 1 s)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    names = [n for n in args.settings.split(",") if n != "main" or args.baseline_src]
    rows = [run_setting(n, args) for _ in range(args.repeats) for n in names]
    from xmodal.eval.report import text_table  # noqa: E402 (the parent needs the package only to print)

    print(f"{args.clips} clips x {args.epochs} epochs, batch {args.batch_size}, threads {args.threads}, "
          f"data {args.data}")
    print(text_table(rows))
    base = [r for r in rows if r["setting"] == SETTINGS["main" if args.baseline_src else "system"][0]]
    cand = [r for r in rows if r["setting"] == SETTINGS["auto"][0]]
    for b, c in zip(base, cand):  # round by round
        print(f"auto+tuned / {b['setting']}: training rate (epoch clips/s) {c['epoch clips/s'] / b['epoch clips/s']:.2f}x, "
              f"whole bind call (clips/s: decoding, setup, probes included) {c['clips/s'] / b['clips/s']:.2f}x "
              f"(issue target >= 4x); sys/user of auto+tuned {c['sys/user %']}% (target < 20%)")


if __name__ == "__main__":
    main()
