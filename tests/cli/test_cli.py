import json
import subprocess
import sys

from xmodal.cli.main import main


def test_help_lists_subcommands(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    for name in ("demo", "world", "align", "zeroshot"):
        assert name in out


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "xmodal.cli.main", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "xmodal" in out.stdout


def test_align_then_zeroshot_from_the_command_line(tiny_text_dir, colour_manifest, tmp_path, capsys):
    run = tmp_path / "run"
    model_args = ["--set", "fit.progress=false"]
    rc = main(["align", "--train", str(colour_manifest), "--out", str(run), "--epochs", "2",
               "--batch-size", "6", *model_args, "--model", _tiny_lit_dir(tiny_text_dir, tmp_path)])
    assert rc == 0 and (run / "model" / "xmodal.json").is_file()
    rc = main(["zeroshot", "--model", str(run / "model"), "--data", str(colour_manifest), "--split", "val",
               "--template", "a {} square", "--out", str(tmp_path / "zs"), "--precision", "bf16"])
    assert rc == 0
    res = json.loads((tmp_path / "zs" / "results.json").read_text())
    assert res["n"] == 6 and 0.0 <= res["top1"] <= 1.0
    assert (tmp_path / "zs" / "confusion.png").stat().st_size > 1000


def _tiny_lit_dir(tiny_text_dir, tmp_path):
    import xmodal

    model = xmodal.load("lit", text_model=str(tiny_text_dir), vision={"width": 8, "depth": 2, "image_size": 16})
    return str(model.save_pretrained(tmp_path / "init"))


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "m.csv"
    bad.write_text("path,label\nimages/a.png,red,EXTRA\n")
    rc = main(["zeroshot", "--model", str(tmp_path / "nope"), "--data", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("xmodal zeroshot: error:") and len(err.splitlines()) == 1


TINY_WORLD = {"colours": ["red", "green", "blue"], "shapes": ["circle", "square", "triangle"], "image_size": 32,
              "images_train": 4, "images_val": 1, "images_test": 2, "video_frames": 8, "video_size": 32,
              "clips_train": 1, "clips_val": 1, "clips_test": 1, "audio_sample_rate": 8000}


def test_demo_writes_a_report_with_every_evaluation(tiny_text_dir, tmp_path, capsys):
    import yaml

    cfg = {"world": TINY_WORLD, "model": {"text_model": str(tiny_text_dir), "vision": {"width": 8, "depth": 2}},
           "align": {"batch_size": 16, "fit": {"epochs": 2}}}
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--no-progress", "--config", str(tmp_path / "demo.yaml")]) == 0
    printed = capsys.readouterr().out
    assert "[5/5]" in printed and "generalized zero-shot" in printed
    res = json.loads((out / "report" / "results.json").read_text())
    assert [r["items"] for r in res["summary"]] == [12, 6, 6, 8]  # 6 seen x 2, 3 held out x 2, 8 test clips
    assert res["held_out_classes"] == ["red circle", "green square", "blue triangle"]
    assert len(res["training"]["epochs"]) == 2
    for png in ("training.png", "per_class.png", "confusion_gzsl.png", "confusion_seen.png"):
        assert (out / "report" / png).stat().st_size > 1000
    assert "![" in (out / "report" / "report.md").read_text()


def test_world_preview_from_the_command_line(tmp_path, capsys):
    import yaml

    (tmp_path / "w.yaml").write_text(yaml.safe_dump(TINY_WORLD))
    assert main(["world", "--out", str(tmp_path / "w"), "--preview", "--config", str(tmp_path / "w.yaml")]) == 0
    for name in ("images.csv", "videos.csv", "world.json"):
        assert (tmp_path / "w" / name).is_file()
    pngs = list((tmp_path / "w").rglob("contact_sheet.png"))
    gifs = list((tmp_path / "w").rglob("*.gif"))
    assert pngs and gifs and pngs[0].stat().st_size > 1000


def test_missing_column_and_empty_split_are_one_line_errors(colour_manifest, tiny_text_dir, tmp_path, capsys):
    model = _tiny_lit_dir(tiny_text_dir, tmp_path)
    rc = main(["zeroshot", "--model", model, "--data", str(colour_manifest), "--label-column", "colour"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no column 'colour'" in err and str(colour_manifest) in err and len(err.splitlines()) == 1
    rc = main(["zeroshot", "--model", model, "--data", str(colour_manifest), "--split", "nope"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no rows with split 'nope'" in err


def test_out_naming_a_file_fails_before_any_work(colour_manifest, tmp_path, capsys):
    (tmp_path / "taken").write_text("mine")
    rc = main(["zeroshot", "--model", str(tmp_path / "no-model"), "--data", str(colour_manifest),
               "--out", str(tmp_path / "taken")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"xmodal zeroshot: error: --out {tmp_path / 'taken'}: exists and is not a folder"
    assert (tmp_path / "taken").read_text() == "mine"


def test_duplicate_rows_are_counted_once_with_a_notice(colour_manifest, tiny_text_dir, tmp_path, capsys):
    lines = colour_manifest.read_text().splitlines()
    dup = colour_manifest.parent / "dup.csv"
    dup.write_text("\n".join(lines + lines[-3:]) + "\n")
    rc = main(["zeroshot", "--model", _tiny_lit_dir(tiny_text_dir, tmp_path), "--data", str(dup), "--split", "val",
               "--out", str(tmp_path / "zs")])
    err = capsys.readouterr().err
    assert rc == 0 and f"{dup}: 3 duplicate row(s) dropped" in err
    assert json.loads((tmp_path / "zs" / "results.json").read_text())["n"] == 6


def test_load_model_puts_the_model_on_the_ranks_device_under_torchrun(tiny_text_dir, tmp_path, monkeypatch):
    """The CLI's one model loader: plain ``xmodal.load`` alone, on this rank's device under torchrun."""
    import torch

    from xmodal.cli.common import load_model
    from xmodal.engine import distributed

    folder = _tiny_lit_dir(tiny_text_dir, tmp_path)
    assert next(load_model(folder).parameters()).device.type == "cpu"
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "device", lambda: torch.device("meta"))  # stands for a rank's GPU
    assert next(load_model(folder).parameters()).device.type == "meta"
