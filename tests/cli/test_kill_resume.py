"""``xmodal align``, ``transfer`` and ``bind`` SIGKILLed at six points each, then resumed, end on the
same weights (bit for bit) as an uninterrupted run, and their log.jsonl holds each epoch once.

Each run is a forked child process running the CLI (one torch thread) that kills itself with SIGKILL
through the ``XMODAL_KILL_AT`` hook (xmodal.engine.faults). The kills are chained in one run folder:
each re-run resumes from what the previous kill left and is itself killed at the next point.
"""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import xmodal
from xmodal.engine import faults
from xmodal.modalities.audio import write_wav

# (point, n): killed the n-th time the (re-)run passes the point. With 3 epochs of 3 batches and a
# checkpoint after every batch, the chain kills mid-epoch after a step (before its checkpoint), after
# an epoch's log line (before its checkpoint), inside a checkpoint write (weights only; complete but
# not committed), after a commit (before the old checkpoint is removed) and after training (before the
# model is saved).
KILLS = [("step", 2), ("checkpoint.weights", 2), ("checkpoint.written", 2), ("checkpoint.committed", 3),
         ("log", 1), ("trained", 1)]
COMMON = ["--epochs", "3", "--set", "fit.checkpoint_every=1"]


def _run(argv: list[str], kill: str | None = None) -> int:
    """The CLI in a forked child (SIGKILLed at ``kill`` when given); its exit code, -9 when killed."""
    from xmodal.cli.main import main

    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            torch.set_num_threads(1)
            faults._passed.clear()
            os.environ.pop("XMODAL_KILL_AT", None)
            if kill:
                os.environ["XMODAL_KILL_AT"] = kill
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            code = main(argv)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_text_dir) -> dict[str, Path]:
    """A tiny LiT folder (16 px ViT, 4 frames) and tiny image, video and audio-image manifests."""
    from xmodal.modalities.video import write_video

    root = tmp_path_factory.mktemp("kill")
    torch.manual_seed(0)
    vision = {"arch": "vit", "width": 16, "depth": 2, "image_size": 16, "patch_size": 8, "heads": 2}
    xmodal.load("lit", text_model=str(tiny_text_dir), num_frames=4, vision=vision).save_pretrained(root / "lit")
    rng = np.random.default_rng(0)
    images, videos, pairs = [], [], []
    for c, (label, rgb) in enumerate((("red", (220, 40, 40)), ("blue", (40, 80, 220)), ("green", (40, 170, 60)))):
        for k in range(6):
            img = np.clip(np.array(rgb) + rng.normal(0, 10, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"{label}{k}.png")
            split = "train" if k < 5 else "val"
            images.append({"path": f"{label}{k}.png", "label": label, "caption": f"a {label} square", "split": split})
            write_wav(root / f"{label}{k}.wav", 0.5 * np.sin(2 * np.pi * 400 * (c + 1) * np.arange(2000) / 8000), 8000)
            pairs.append({"audio": f"{label}{k}.wav", "image": f"{label}{k}.png", "split": split})
            frames = [np.roll(img, (2 * t * (1 if c % 2 else -1)), axis=1) for t in range(5)]
            write_video(root / f"{label}{k}.mp4", frames)
            videos.append({"path": f"{label}{k}.mp4", "label": label, "split": "train" if k < 4 else "val" if k < 5 else "test"})
    return {"lit": root / "lit", "images": _write_csv(root / "images.csv", images),
            "videos": _write_csv(root / "videos.csv", videos), "pairs": _write_csv(root / "pairs.csv", pairs)}


AUDIO = "{sample_rate: 8000, n_mels: 16, n_fft: 128, hop_length: 64, max_seconds: 0.25}"
COMMANDS = {  # command -> (argv without --out, weights file and log file inside the run folder)
    "align": (lambda w: ["align", "--model", str(w["lit"]), "--train", str(w["images"]), "--batch-size", "5",
                         "--set", "fit.progress=false", *COMMON], "model/model.safetensors", "log.jsonl"),
    "transfer": (lambda w: ["transfer", "--strategy", "temporal_head", "--model", str(w["lit"]), "--data", str(w["videos"]),
                            "--no-progress", "--set", "batch_size=4", "--set", "fit.max_minutes=0", *COMMON],
                 "model/strategy.safetensors", "train/log.jsonl"),
    "bind": (lambda w: ["bind", "--model", str(w["lit"]), "--train", str(w["pairs"]), "--batch-size", "5",
                        "--set", "align.fit.progress=false", "--set", "align.fit.checkpoint_every=1", "--epochs", "3",
                        "--set", "encoder_config={width: 8, depth: 2}", "--set", f"spec={AUDIO}"],
             "model/model.safetensors", "log.jsonl"),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_sigkill_at_six_points_then_resume_gives_the_uninterrupted_weights(command, world, tmp_path):
    make, weights, log = COMMANDS[command]
    argv = make(world)
    assert _run([*argv, "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "killed"
    for point, n in KILLS:
        assert _run([*argv, "--out", str(out)], kill=f"{point}:{n}") == -signal.SIGKILL, (point, n)
    assert _run([*argv, "--out", str(out)]) == 0
    whole, resumed = load_file(str(tmp_path / "whole" / weights)), load_file(str(out / weights))
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    epochs = [json.loads(line)["epoch"] for line in (out / log).read_text().splitlines()]
    assert epochs == [1, 2, 3]
    assert [d.name for d in (out / Path(log).parent / "train_state").iterdir() if d.is_dir()] == ["ckpt-000009"]
