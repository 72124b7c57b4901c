"""Run folders from the command line: a new model is seeded before it is built (same seed, same
bytes), and a finished ``--out`` of other data is refused in one line unless ``--overwrite``."""

from __future__ import annotations

import csv
import random

import numpy as np
import torch

import xmodal
from xmodal.cli.main import main

QUIET = ["--set", "fit.progress=false", "--set", "fit.verbose=false"]


def test_two_align_runs_of_a_new_lit_model_with_one_seed_are_bit_identical(colour_manifest, tmp_path):
    files = []
    for k, run in enumerate(("a", "b")):
        random.seed(k), np.random.seed(k), torch.manual_seed(k)  # whatever state the process starts in
        assert main(["align", "--model", "lit", "--train", str(colour_manifest), "--out", str(tmp_path / run),
                     "--epochs", "1", "--batch-size", "9", *QUIET]) == 0
        files.append((tmp_path / run / "model" / "model.safetensors").read_bytes())
    assert files[0] == files[1]


def _tiny_lit(tiny_text_dir, tmp_path):
    xmodal.load("lit", text_model=str(tiny_text_dir), vision={"width": 8, "depth": 2, "image_size": 16}).save_pretrained(tmp_path / "lit")
    return str(tmp_path / "lit")


def test_a_finished_out_of_other_data_is_refused_unless_overwrite(colour_manifest, tiny_text_dir, tmp_path, capsys):
    model, out = _tiny_lit(tiny_text_dir, tmp_path), str(tmp_path / "run")
    argv = ["align", "--model", model, "--out", out, "--epochs", "1", "--batch-size", "6", "--set", "fit.progress=false"]
    assert main([*argv, "--train", str(colour_manifest)]) == 0
    before = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    with colour_manifest.open() as fh:
        rows = list(csv.DictReader(fh))[1:]  # one row fewer
    other = colour_manifest.parent / "fewer.csv"
    with other.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    assert main([*argv, "--train", str(other)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "different data.train" in err and "--overwrite" in err
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == before  # untouched
    assert main([*argv, "--train", str(colour_manifest)]) == 0  # the same run: reported done
    assert "already finished" in capsys.readouterr().out
    assert main([*argv, "--train", str(other), "--overwrite"]) == 0
    assert "already finished" not in capsys.readouterr().out
    assert main([*argv, "--train", str(other), "--epochs", "2"]) == 2  # another config
    assert "different config.fit.epochs" in capsys.readouterr().err
