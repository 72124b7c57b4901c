"""``torchrun --nproc-per-node 2 -m xmodal align|transfer`` (gloo, CPU) ends on the weights of one process
with the same global batch, and a DDP run killed (SIGKILL of rank 0 inside training) and run again resumes
to the weights of an uninterrupted DDP run.

The single-process runs are forked children running the CLI (as in ``test_kill_resume.py``). The DDP runs
of the equality tests are ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m xmodal ...``
subprocesses; the three DDP runs of the resume test are two forked children each, given the environment
torchrun gives its workers (RANK, WORLD_SIZE, MASTER_ADDR, ...), which saves importing torch six times.

Tolerance: every weight agrees to 1e-4 (measured: under 1e-6), except the biases of attention keys. Their
exact gradient is zero (softmax is unchanged when every key moves by the same vector), so what they get is
float noise, which AdamW divides by its own square root into steps of up to the learning rate: they are
held to 3e-3 (the sum of the 4 steps' learning rates: 2.5e-3). (Adam is also blind to a constant factor on a gradient, so the
gradients themselves are compared with one process in ``tests/engine/test_distributed.py``.)
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import xmodal
from xmodal.engine import faults

QUIET = ["--set", "fit.progress=false", "--epochs", "2", "--set", "fit.checkpoint_every=1"]
COMMANDS = {  # command -> (argv without --out, the trained weights in the run folder)
    "align": (lambda w: ["align", "--model", str(w["lit"]), "--train", str(w["images"]), "--batch-size", "6", *QUIET],
              "model/model.safetensors"),
    "transfer": (lambda w: ["transfer", "--strategy", "temporal_head", "--model", str(w["lit"]), "--data",
                            str(w["videos"]), "--set", "batch_size=4", "--set", "fit.max_minutes=0", *QUIET],
                 "model/strategy.safetensors"),
}


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_text_dir) -> dict[str, Path]:
    """A tiny LiT folder (ViT image tower: no BatchNorm, whose batch statistics would be per rank) and
    image (15 train rows: 2 batches of 6 + a dropped one) and video (12 train clips: 3 batches of 4) manifests."""
    from xmodal.modalities.video import write_video

    root = tmp_path_factory.mktemp("torchrun")
    torch.manual_seed(0)
    vision = {"arch": "vit", "width": 16, "depth": 2, "image_size": 16, "patch_size": 8, "heads": 2}
    xmodal.load("lit", text_model=str(tiny_text_dir), num_frames=4, vision=vision).save_pretrained(root / "lit")
    rng = np.random.default_rng(0)
    images, videos = [], []
    for c, (label, rgb) in enumerate((("red", (220, 40, 40)), ("blue", (40, 80, 220)), ("green", (40, 170, 60)))):
        for k in range(6):
            img = np.clip(np.array(rgb) + rng.normal(0, 10, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"{label}{k}.png")
            images.append({"path": f"{label}{k}.png", "label": label, "caption": f"a {label} square",
                           "split": "train" if k < 5 else "val"})
            write_video(root / f"{label}{k}.mp4", [np.roll(img, 2 * t * (1 if c % 2 else -1), axis=1) for t in range(5)])
            videos.append({"path": f"{label}{k}.mp4", "label": label,
                           "split": "train" if k < 4 else "val" if k < 5 else "test"})
    return {"lit": root / "lit", "images": _write_csv(root / "images.csv", images),
            "videos": _write_csv(root / "videos.csv", videos)}


def _fork(argv: list[str], env: dict[str, str], out: Path | None = None) -> int:
    """The CLI in a forked child with ``env`` added (one torch thread, stdout to ``out``); its pid."""
    from xmodal.cli.main import main

    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            torch.set_num_threads(1)
            faults._passed.clear()
            os.environ.pop("XMODAL_KILL_AT", None)
            os.environ.update(env)
            sys.stdout = open(out or os.devnull, "a")  # noqa: SIM115 - closed by the exit
            code = main(argv)
        finally:
            sys.stdout.flush()
            os._exit(code)
    return pid


def _alone(argv: list[str]) -> int:
    """The CLI in one forked process; its exit code."""
    _, status = os.waitpid(_fork(argv, {}), 0)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1


def _forked_ranks(argv: list[str], out: Path, kill: str | None = None) -> list[int]:
    """Two forked ranks of the CLI, joined as torchrun joins its workers (gloo); their exit codes (-9:
    SIGKILLed). When one dies of a signal the other is killed, as torchrun's agent does."""
    import signal
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
           "XMODAL_BACKEND": "gloo", **({"XMODAL_KILL_AT": kill} if kill else {})}
    pids = [_fork(argv, {**env, "RANK": str(r), "LOCAL_RANK": str(r)}, out if r == 0 else None) for r in range(2)]
    codes: dict[int, int] = {}
    while len(codes) < 2:
        pid, status = os.wait()
        codes[pid] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if codes[pid] < 0:
            for other in set(pids) - set(codes):
                os.kill(other, signal.SIGKILL)
    return [codes[p] for p in pids]


def _torchrun(argv: list[str]) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 -m xmodal ARGV`` on this checkout's code (gloo, one thread each)."""
    env = dict(os.environ)
    src = str(Path(xmodal.__file__).resolve().parents[1])
    env.update(PYTHONPATH=os.pathsep.join([src, env.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               XMODAL_BACKEND="gloo")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "xmodal", *argv]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _key_bias(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Where ``tensor`` holds the biases of attention keys (see the module doc)."""
    mask = torch.zeros_like(tensor, dtype=torch.bool)
    if name.endswith("k_proj.bias"):
        mask[:] = True
    elif name.endswith("in_proj_bias"):  # nn.MultiheadAttention: query, key, value biases in a row
        third = len(tensor) // 3
        mask[third: 2 * third] = True
    return mask


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Every weight within 1e-4 (attention key biases 3e-3); the largest difference elsewhere."""
    assert a.keys() == b.keys()
    worst = 0.0
    for name in a:
        diff, keys = (a[name] - b[name]).abs(), _key_bias(name, a[name])
        rest, bias = (float(d.max()) if d.numel() else 0.0 for d in (diff[~keys], diff[keys]))
        assert rest < 1e-4 and bias < 3e-3, (name, rest, bias)
        worst = max(worst, rest)
    return worst


@pytest.mark.parametrize("command", list(COMMANDS))
def test_two_processes_end_on_the_weights_of_one(command, world, tmp_path):
    make, weights = COMMANDS[command]
    assert _alone([*make(world), "--out", str(tmp_path / "alone")]) == 0
    run = _torchrun([*make(world), "--out", str(tmp_path / "ddp")])
    assert run.returncode == 0, run.stderr[-3000:]
    alone, ddp = load_file(str(tmp_path / "alone" / weights)), load_file(str(tmp_path / "ddp" / weights))
    _assert_close(alone, ddp)
    if command == "align":
        start = load_file(str(world["lit"] / "model.safetensors"))
        assert max(float((alone[k] - start[k]).abs().max()) for k in alone) > 1e-3, "nothing trained"
    log = tmp_path / "ddp" / ("log.jsonl" if command == "align" else "train/log.jsonl")
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2]  # rank 0 logged, once
    assert run.stdout.count("epoch 2/2") == 1  # ... and printed, once


@pytest.mark.parametrize("command", list(COMMANDS))
def test_two_ranks_train_at_bf16(command, world, tmp_path):
    """bf16 under DDP (each rank holds its frozen weights in bf16 while it trains): both ranks finish, the
    saved weights are fp32 and near those of one process at bf16 (bf16 rounds the two differently)."""
    make, weights = COMMANDS[command]
    argv = [*make(world), "--precision", "bf16"]
    assert _alone([*argv, "--out", str(tmp_path / "alone")]) == 0
    assert _forked_ranks([*argv, "--out", str(tmp_path / "ddp")], tmp_path / "ddp.txt") == [0, 0]
    alone, ddp = load_file(str(tmp_path / "alone" / weights)), load_file(str(tmp_path / "ddp" / weights))
    assert alone.keys() == ddp.keys() and all(v.dtype == torch.float32 for v in ddp.values())
    assert max(float((alone[k] - ddp[k]).abs().max()) for k in alone) < 2e-2


def test_a_killed_ddp_run_resumes_to_the_uninterrupted_weights(world, tmp_path):
    make, weights = COMMANDS["align"]
    assert _forked_ranks([*make(world), "--out", str(tmp_path / "whole")], tmp_path / "whole.txt") == [0, 0]
    out = tmp_path / "killed"
    # rank 0 kills itself after its 3rd commit (mid epoch 2); the other rank is then killed too
    assert -9 in _forked_ranks([*make(world), "--out", str(out)], tmp_path / "killed.txt", kill="checkpoint.committed:3")
    assert not (out / weights).exists()
    assert _forked_ranks([*make(world), "--out", str(out)], tmp_path / "resumed.txt") == [0, 0]
    assert "resuming after epoch 1, batch 1" in (tmp_path / "resumed.txt").read_text()
    a, b = load_file(str(tmp_path / "whole" / weights)), load_file(str(out / weights))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2]


_spec = importlib.util.spec_from_file_location("_index_fixtures", Path(__file__).parents[1] / "index" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
tiny_world_src, media, tiny_model_dir = _fixtures.tiny_world_src, _fixtures.media, _fixtures.tiny_model_dir


def test_index_under_two_ranks_merges_their_shards_into_the_single_process_index(media, tiny_model_dir, tmp_path):
    from xmodal.cli.main import main
    from xmodal.index import Index

    argv = ["index", str(media), "--model", str(tiny_model_dir), "--no-progress"]
    assert _forked_ranks([*argv, "--out", str(tmp_path / "ix")], tmp_path / "ranks.txt") == [0, 0]
    assert "11 files merged from 2 shards" in (tmp_path / "ranks.txt").read_text()
    assert (tmp_path / ".ix.rank0-of-2" / "index.sqlite").is_file() and (tmp_path / ".ix.rank1-of-2").is_dir()
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    two, one = Index.load(tmp_path / "ix"), Index.load(tmp_path / "one")
    try:
        assert len(two) == len(one) == 11
        hits = [[(h.path, round(h.score, 5)) for h in ix.search("a red circle", k=11)] for ix in (two, one)]
        assert hits[0] == hits[1]
    finally:
        two.close(), one.close()
