"""The CLI is built from the registries (choices, help, ``xmodal list``, ``--list``) and checks names and
options before it reads any media file or loads any model."""

from __future__ import annotations

import argparse
import csv
import time

import pytest

from xmodal.catalog import REGISTRIES, components, list_strategies
from xmodal.cli.listing import KINDS
from xmodal.cli.main import build_parser, main


@pytest.fixture(autouse=True)
def _wide_help(monkeypatch):
    """Help texts unwrapped (argparse wraps to $COLUMNS), so that a description is one line."""
    monkeypatch.setenv("COLUMNS", "400")


def _out(capsys) -> str:
    return capsys.readouterr().out


def test_list_prints_every_kind_from_the_registries(capsys):
    assert KINDS == tuple(REGISTRIES)  # the CLI's kinds (known without importing the registries) are the catalog's
    assert main(["list"]) == 0
    out = _out(capsys)
    for kind in KINDS:
        assert f"{kind} (" in out
        for c in components(kind):
            assert f"{c.name}  " in out and c.description in out


def test_list_kind_with_a_pattern_prints_fields_defaults_and_comments(capsys):
    assert main(["list", "strategies", "lo*"]) == 0
    out = _out(capsys)
    assert "lora" in out and "adapter" not in out
    assert "rank: int = 4  # r, the rank of the update" in out and "head.kind: str = 'transformer'" in out
    assert main(["list", "encoders"]) == 0
    assert "[modality audio]" in _out(capsys)


@pytest.mark.parametrize("command,kinds", [("transfer", ["strategies"]), ("compare", ["strategies"]),
                                           ("bind", ["encoders", "modalities"]), ("fuse", ["fusions", "encoders"]),
                                           ("align", ["losses", "backbones"])])
def test_list_flag_needs_no_other_flag(command, kinds, capsys):
    assert main([command, "--list"]) == 0
    out = _out(capsys)
    for kind in kinds:
        for c in components(kind):
            assert c.name in out and c.description in out


@pytest.mark.parametrize("command,flag,kind", [("transfer", "--strategy", "strategies"), ("align", "--loss", "losses"),
                                               ("bind", "--encoder", "encoders"), ("bind", "--anchor", "modalities"),
                                               ("fuse", "--fusion", "fusions"), ("zeroshot", "--modality", "modalities")])
def test_choices_and_help_come_from_the_registry(command, flag, kind, capsys):
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    action = next(a for a in sub._actions if flag in a.option_strings)
    assert list(action.choices) == [c.name for c in components(kind)]
    assert main([command, "--help"]) == 0
    out = _out(capsys)
    for c in components(kind):
        assert f"- {c.name}: {c.description}" in out


# ---------------------------------------------------------------- names and options fail fast
@pytest.fixture
def missing_media(tmp_path, monkeypatch):
    """A manifest whose files do not exist; loading a model fails the test."""
    import xmodal.api

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the names and options were checked")

    monkeypatch.setattr(xmodal.api, "load", no_load)
    rows = [{"path": f"clips/missing{k}.mp4", "image": f"img/missing{k}.png", "audio": f"wav/missing{k}.wav",
             "caption": "a thing", "label": "ab"[k % 2], "split": "train"} for k in range(4)]
    with (tmp_path / "m.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    build_parser()  # every registry imported before the clock starts
    return str(tmp_path / "m.csv")


def _fails_fast(argv, capsys, *expected) -> str:
    t0 = time.perf_counter()
    rc = main(argv)
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert elapsed < 1.0, f"took {elapsed:.2f}s"
    assert "missing" not in err, err  # the error is about the name, not about a media file
    for text in expected:
        assert text in err, err
    return err


def test_transfer_checks_strategy_and_options_first(missing_media, tmp_path, capsys):
    run = ["transfer", "--model", str(tmp_path / "no-model"), "--data", missing_media, "--out", str(tmp_path / "r")]
    err = _fails_fast([*run, "--strategy", "lora", "--option", "rnak=8"], capsys, "unknown key(s) ['rnak']", "'rank'")
    assert err.startswith("xmodal transfer: error: lora options:") and len(err.splitlines()) == 1
    _fails_fast([*run, "--strategy", "lora", "--option", "head.knd=conv"], capsys, "['knd']", "'kind'")
    _fails_fast([*run, "--strategy", "lora", "--set", "strategy=lorra"], capsys, "unknown strategy 'lorra'", "lora")
    _fails_fast([*run, "--strategy", "lorra"], capsys, "argument --strategy: unknown strategy 'lorra'; known: adapter")
    assert not (tmp_path / "r").exists()


def test_transfer_and_compare_check_the_task_and_its_options_first(missing_media, tmp_path, capsys):
    run = ["transfer", "--model", str(tmp_path / "no-model"), "--data", missing_media, "--out", str(tmp_path / "r"),
           "--strategy", "temporal_head"]
    _fails_fast([*run, "--task", "grnd"], capsys, "argument --task: unknown task 'grnd'; known: caption, classify")
    _fails_fast([*run, "--task", "ground", "--task-option", "num_frame=8"], capsys, "ground task options",
                "['num_frame']", "'num_frames'")
    compare = ["compare", "--model", str(tmp_path / "no-model"), "--data", missing_media, "--out", str(tmp_path / "c")]
    _fails_fast([*compare, "--task", "retrieve", "--task-option", "match=[a]"], capsys, "retrieve task options")
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()


def test_compare_checks_every_strategy_spec_first(missing_media, tmp_path, capsys):
    run = ["compare", "--model", str(tmp_path / "no-model"), "--data", missing_media, "--out", str(tmp_path / "c")]
    _fails_fast([*run, "--strategies", "linear_probe;lora:rnak=8"], capsys, "lora options", "['rnak']", "'rank'")
    _fails_fast([*run, "--strategies", "linear_probe,lorra"], capsys, "unknown strategy 'lorra'",
                ", ".join(list_strategies()))
    assert not (tmp_path / "c").exists()


def test_align_checks_the_loss_first(missing_media, tmp_path, capsys):
    run = ["align", "--model", str(tmp_path / "no-model"), "--train", missing_media, "--out", str(tmp_path / "a")]
    _fails_fast([*run, "--set", "loss=sigslip"], capsys, "unknown loss 'sigslip'; known: clip, siglip")
    _fails_fast([*run, "--loss", "sigslip"], capsys, "argument --loss: unknown loss 'sigslip'; known: clip, siglip")
    _fails_fast([*run, "--set", "modalities=[image, txt]"], capsys, "unknown modality 'txt'")


def test_bind_checks_encoder_modalities_and_encoder_config_first(missing_media, tmp_path, capsys):
    run = ["bind", "--model", str(tmp_path / "no-model"), "--train", missing_media, "--out", str(tmp_path / "b")]
    _fails_fast([*run, "--set", "encoder_config={widht: 8}"], capsys, "encoder audio_cnn", "['widht']", "'width'")
    _fails_fast([*run, "--set", "spec={n_mel: 8}"], capsys, "audio spec", "['n_mel']", "'n_mels'")
    _fails_fast([*run, "--encoder", "series_cnn"], capsys, "encoder 'series_cnn' reads series, not audio")
    _fails_fast([*run, "--set", "anchor=imgae"], capsys, "unknown modality 'imgae'", "image")
    _fails_fast([*run, "--set", "encoder=audio_cnnn"], capsys, "unknown encoder 'audio_cnnn'", "audio_cnn")
    _fails_fast([*run, "--set", "align.loss=nope"], capsys, "unknown loss 'nope'")


def test_fuse_checks_fusion_modalities_and_encoders_first(missing_media, tmp_path, capsys):
    run = ["fuse", "--train", missing_media, "--out", str(tmp_path / "f")]
    _fails_fast([*run, "--set", "fusion=middle"], capsys, "unknown fusion 'middle'; known: cross_attention, early, late")
    _fails_fast([*run, "--modalities", "image,audoi"], capsys, "unknown modality 'audoi'")
    _fails_fast([*run, "--set", "encoders.audio={encoder: nope}"], capsys, "unknown encoder 'nope'")
    _fails_fast([*run, "--set", "encoders.audio={config: {widht: 8}}"], capsys, "['widht']")
    _fails_fast([*run, "--set", "encoders.audio={encoder: image_convnet}"], capsys, "reads image, not audio")
    _fails_fast([*run, "--noise", "0,lots"], capsys, "--noise '0,lots'")
    assert not (tmp_path / "f").exists()
