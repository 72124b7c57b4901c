"""``xmodal bind`` and ``xmodal fuse`` from the command line on a tiny image+audio manifest."""

from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image

import xmodal
from xmodal.cli.main import main
from xmodal.modalities.audio import write_wav

SETS = ["--set", "fit.progress=false", "--set", "fit.verbose=false"]


def _manifest(root):
    rng = np.random.default_rng(0)
    rows = []
    for label, rgb, freq in (("red", (220, 40, 40), 400.0), ("blue", (40, 60, 220), 1600.0)):
        for k in range(4):
            Image.fromarray(np.clip(np.array(rgb) + rng.normal(0, 15, (16, 16, 3)), 0, 255).astype(np.uint8)).save(root / f"{label}{k}.png")
            write_wav(root / f"{label}{k}.wav", 0.5 * np.sin(2 * np.pi * freq * np.arange(2000) / 8000), 8000)
            rows.append({"image": f"{label}{k}.png", "audio": f"{label}{k}.wav", "label": label,
                         "split": "test" if k == 3 else "train"})
    rows[-1]["audio"] = ""  # a test row without audio still gets a prediction
    with (root / "av.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "av.csv"


AUDIO = "{sample_rate: 8000, n_mels: 16, n_fft: 128, hop_length: 64, max_seconds: 0.25}"


def test_fuse_command(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    rc = main(["fuse", "--train", str(manifest), "--out", str(tmp_path / "run"), "--fusion", "early", "--epochs", "1",
               "--noise", "0,1", *SETS, "--set", "batch_size=4",
               "--set", "encoders.image={config: {width: 8, depth: 2}, spec: {size: 16}}",
               "--set", f"encoders.audio={{config: {{width: 8, depth: 2}}, spec: {AUDIO}}}"])
    out = capsys.readouterr().out
    assert rc == 0 and "image+audio" in out and "noise 1" in out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["n"] == 2 and set(results["subsets"]) == {"image+audio", "image", "audio"}
    assert (tmp_path / "run" / "robustness.png").is_file()
    assert xmodal.load_fusion(tmp_path / "run" / "model").fusion_name == "early"


def test_bind_command_and_bad_fusion(tmp_path, tiny_text_dir, capsys):
    manifest = _manifest(tmp_path)
    model = xmodal.load("lit", text_model=str(tiny_text_dir), vision={"width": 8, "depth": 2, "image_size": 16})
    model.save_pretrained(tmp_path / "base")
    rc = main(["bind", "--model", str(tmp_path / "base"), "--train", str(manifest), "--out", str(tmp_path / "b"),
               "--epochs", "1", "--batch-size", "4", "--set", "align.fit.progress=false",
               "--set", "encoder_config={width: 8, depth: 2}", "--set", f"spec={AUDIO}"])
    assert rc == 0, capsys.readouterr().err
    assert "audio" in xmodal.load(tmp_path / "b" / "model").modalities
    rc = main(["fuse", "--train", str(manifest), "--out", str(tmp_path / "x"), "--fusion", "middle"])
    assert rc == 2 and "unknown fusion 'middle'" in capsys.readouterr().err


def test_bind_audio_to_text_then_zeroshot_with_a_prompt_set(tmp_path, tiny_text_dir, capsys):
    manifest = _manifest(tmp_path)
    model = xmodal.load("lit", text_model=str(tiny_text_dir), vision={"width": 8, "depth": 2, "image_size": 16})
    model.save_pretrained(tmp_path / "base")
    rc = main(["bind", "--model", str(tmp_path / "base"), "--train", str(manifest), "--out", str(tmp_path / "t"),
               "--anchor", "text", "--columns", "audio,label", "--epochs", "2", "--batch-size", "4",
               "--set", "align.fit.progress=false", "--set", "encoder_config={width: 8, depth: 2}", "--set", f"spec={AUDIO}"])
    out = capsys.readouterr().out
    assert rc == 0 and "final embeddings of a training batch (evaluation mode): cos_audio" in out
    assert '"cos_audio"' in out and '"eval_rank_audio"' in out  # collapse diagnostics in every epoch's line
    bound = xmodal.load(tmp_path / "t" / "model")
    assert "text" in bound.projections
    for flags in ([], ["--prompts", "plain"], ["--template", "a {} noise"]):
        rc = main(["zeroshot", "--model", str(tmp_path / "t" / "model"), "--data", str(manifest), "--split", "test",
                   "--column", "audio", "--modality", "audio", "--on-error", "skip", *flags])
        assert rc == 0 and "top1" in capsys.readouterr().out
    rc = main(["zeroshot", "--model", str(tmp_path / "t" / "model"), "--data", str(manifest), "--prompts", "speech"])
    assert rc == 2 and "unknown prompt set 'speech'" in capsys.readouterr().err


def test_bind_on_error_skip_counts_and_names_a_bad_anchor_file(tmp_path, tiny_text_dir, capsys):
    manifest = _manifest(tmp_path)
    (tmp_path / "red1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # the anchor (image) of a train row
    model = xmodal.load("lit", text_model=str(tiny_text_dir), vision={"width": 8, "depth": 2, "image_size": 16})
    model.save_pretrained(tmp_path / "base")
    argv = ["bind", "--model", str(tmp_path / "base"), "--train", str(manifest), "--out", str(tmp_path / "b"),
            "--epochs", "1", "--batch-size", "4", "--set", "align.fit.progress=false",
            "--set", "encoder_config={width: 8, depth: 2}", "--set", f"spec={AUDIO}"]
    assert main(argv) == 2 and "red1.png" in capsys.readouterr().err  # fail fast by default
    assert main([*argv, "--on-error", "skip"]) == 0, capsys.readouterr().err  # it left a record, no training
    out = capsys.readouterr().out
    assert "skipped 1 unreadable file(s)" in out and "red1.png" in out
