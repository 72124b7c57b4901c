"""Every CLI command over the generated hostile-input corpus (tests/fuzz/corpus*.py), in process through
``xmodal.cli.main.main``: no traceback, and each bad input is named in one error line (exit status 2) or
named as skipped / counted (exit status 0)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

from fuzz.corpus import MEDIA, MEDIA_RUNS, Case, faststart_mp4, good_image, good_wav
from fuzz.corpus_data import DATA_CASES
from xmodal.cli.main import main

CASES = MEDIA + DATA_CASES
KINDS = ("image", "video", "audio", "text", "manifest", "model", "index")
COLUMNS = ("path", "label", "caption", "split", "image", "audio")


@pytest.fixture(scope="module")
def good(tiny_text_dir, tmp_path_factory) -> dict[str, Path]:
    """Valid inputs the hostile ones are mixed with: a tiny model, an image manifest, a media folder, an index."""
    import xmodal

    root = tmp_path_factory.mktemp("good")
    torch.manual_seed(0)
    model = xmodal.load("lit", text_model=str(tiny_text_dir), vision={"width": 8, "depth": 2, "image_size": 16})
    paths = {"model": model.save_pretrained(root / "model"), "media": root / "media"}
    (root / "media" / "images").mkdir(parents=True)
    rows = []
    for k, (label, rgb) in enumerate([("red", (220, 40, 40)), ("green", (40, 170, 60))] * 3):
        good_image(root / "media" / "images" / f"{label}{k}.png", rgb)
        rows.append({"path": f"media/images/{label}{k}.png", "label": label, "caption": f"a {label} square",
                     "split": "train"})
    paths["images"] = _write_csv(root / "images.csv", rows, ("path", "label", "caption", "split"))
    paths["image"] = root / "media" / "images" / "red0.png"
    paths["video"] = faststart_mp4(root / "good.mp4", frames=8, size=16)
    paths["audio"] = good_wav(root / "good.wav")
    assert main(["index", str(paths["media"]), "--model", str(paths["model"]), "--out", str(root / "index"),
                 "--no-progress"]) == 0
    paths["index"] = root / "index"
    return paths


def _write_csv(path: Path, rows: list[dict], columns: tuple[str, ...]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _media_manifest(folder: Path, case: Case, bad: Path, good: dict[str, Path]) -> Path:
    """Four good rows of the case's kind (two labels) and one row naming the hostile file."""
    first = good["audio" if case.kind == "audio" else case.kind]
    rows = [{"path": str(first if case.kind != "audio" else good["image"]), "label": label, "caption": "a thing",
             "split": "train", "image": str(good["image"]), "audio": str(good["audio"])}
            for label in ("red", "green", "red", "green")]
    rows.append({**rows[0], "path": str(bad), "image": str(bad if case.kind == "image" else good["image"]),
                 "audio": str(bad if case.kind == "audio" else good["audio"])})
    return _write_csv(folder / "manifest.csv", rows, COLUMNS)


def _argv(template: tuple[str, ...], values: dict[str, str]) -> list[str]:
    return [values.get(a, a) for a in template]


@pytest.fixture
def no_server(monkeypatch):
    """``xmodal serve`` returns instead of serving (a case that loads is checked, not served)."""
    import xmodal.serve

    monkeypatch.setattr(xmodal.serve, "run_server", lambda *a, **k: None)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_command_over_the_hostile_corpus(case: Case, good, tmp_path, capsys, no_server) -> None:
    bad = case.build(tmp_path / case.name, good)
    values = {"@input": str(bad), "@model": str(good["model"]), "@index": str(good["index"]),
              "@images": str(good["images"]), "@media": str(good["media"])}
    if case.kind in MEDIA_RUNS:
        values["@manifest"] = str(_media_manifest(tmp_path, case, bad, good))
    named = case.named or case.name
    for k, template in enumerate(case.runs or MEDIA_RUNS[case.kind]):
        argv = _argv(template, {**values, "@out": str(tmp_path / f"out{k}")})
        try:
            rc = main(argv)
        except BaseException as exc:  # noqa: BLE001  (a traceback is exactly what this test looks for)
            _fail(case, f"{argv[0]} raised {type(exc).__name__}: {exc}"[:400])
        out, err = capsys.readouterr()
        errors = [line for line in err.splitlines() if line.startswith(f"xmodal {argv[0]}: error:")]
        if rc == 2:
            if len(errors) != 1 or named not in errors[0]:
                _fail(case, f"{argv[0]}: expected one error line naming {named!r}, got {err.strip()[-400:]!r}")
        elif rc != 0:
            _fail(case, f"{argv[0]}: exit status {rc}")
        elif not case.ok and named not in out + err:
            _fail(case, f"{argv[0]}: succeeded without naming {named!r} (skipped or counted)")


def _fail(case: Case, message: str) -> None:
    pytest.fail(f"{case.name}: {message}")


def test_the_corpus_covers_every_kind_with_at_least_60_inputs(tmp_path) -> None:
    names = [c.name for c in CASES]
    assert len(names) >= 60 and len(set(names)) == len(names)
    assert set(KINDS) <= {c.kind for c in CASES}
    for case in MEDIA:  # generated, and small: nothing needs committing
        path = case.build(tmp_path / case.name, {})
        assert path.exists() and (path.is_dir() or path.stat().st_size < 50_000), case.name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
