"""``--precision`` on the training commands and ``xmodal index``: recorded in the config, bad values refused."""

import json

import pytest

from xmodal.cli.main import main


def _tiny_lit_dir(tiny_text_dir, tmp_path):
    import xmodal

    model = xmodal.load("lit", text_model=str(tiny_text_dir), vision={"width": 8, "depth": 2, "image_size": 16})
    return str(model.save_pretrained(tmp_path / "init"))


@pytest.mark.parametrize("command", ["align", "bind", "fuse", "transfer", "index"])
def test_every_command_takes_precision(command, capsys):
    try:
        main([command, "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "--precision {auto,fp32,bf16,fp16}" in capsys.readouterr().out


def test_align_trains_under_bf16_from_the_command_line(tiny_text_dir, colour_manifest, tmp_path):
    run = tmp_path / "run"
    rc = main(["align", "--train", str(colour_manifest), "--out", str(run), "--epochs", "1", "--batch-size", "6",
               "--precision", "bf16", "--set", "fit.progress=false", "--model", _tiny_lit_dir(tiny_text_dir, tmp_path)])
    assert rc == 0 and (run / "model" / "xmodal.json").is_file()
    assert json.loads((run / "run.json").read_text())["config"]["fit"]["precision"] == "bf16"


def test_a_bad_precision_is_one_line_and_exit_2(tiny_text_dir, colour_manifest, tmp_path, capsys):
    rc = main(["align", "--train", str(colour_manifest), "--out", str(tmp_path / "run"), "--epochs", "1",
               "--set", "fit.precision=fp8", "--set", "fit.progress=false",
               "--model", _tiny_lit_dir(tiny_text_dir, tmp_path)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xmodal align: error:")]
    assert rc == 2 and len(errors) == 1 and "precision 'fp8'" in errors[0]  # (other stderr: load progress bars)


def test_index_builds_at_the_precision_asked(tiny_text_dir, colour_manifest, tmp_path, capsys):
    rc = main(["index", str(colour_manifest.parent / "images"), "--out", str(tmp_path / "idx"), "--precision", "bf16",
               "--no-progress", "--model", _tiny_lit_dir(tiny_text_dir, tmp_path)])
    assert rc == 0 and "24 files" in capsys.readouterr().out
    rc = main(["index", str(colour_manifest.parent / "images"), "--out", str(tmp_path / "idx2"), "--no-progress",
               "--set", "precision=fp16", "--model", _tiny_lit_dir(tiny_text_dir, tmp_path)])
    assert rc == 2 and "fp16" in capsys.readouterr().err
