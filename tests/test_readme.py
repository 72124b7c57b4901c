"""Every ```python and ```bash block of README.md runs, in a sandbox folder with small data and tiny models.

The sandbox holds every file the README names, at the path it names: the built-in world (``data/``),
``videos.csv``, ``pairs.csv``, ``my_videos/``, ``media/``, ``more/``, ``query.png``, an aligned-model
stand-in ``RUN/model`` (tiny LiT with a ViT image tower), and tiny random transformers checkpoints in
folders named like the hub models the README loads (``openai/clip-vit-base-patch32``, ...): ``xmodal.load``
reads an existing folder as a local checkpoint, and ``HF_HUB_OFFLINE=1`` keeps the hub out of it.

Python blocks run in one namespace per README section, in order. A bash line ``xmodal CMD ...`` runs as
written through ``xmodal.cli.main.main`` (the ``xmodal`` console script's entry point; in-process, since a
fresh interpreter spends ~5 s importing torch per line), with the size-reducing flags of ``OVERRIDES``
appended; ``python bench/SCRIPT.py ...`` runs the script. A block that cannot run here is marked in
README.md by ``<!-- readme-test: skip — reason -->`` on the line before its fence.
"""

from __future__ import annotations

import importlib.util
import json
import re
import runpy
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
REPO = README.parent
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\b\s*[—–:-]?\s*(.*?)\s*-->")
TINY_WORLD = {"colours": ["red", "green", "blue"], "shapes": ["circle", "square", "triangle"], "image_size": 32,
              "images_train": 2, "images_val": 1, "images_test": 1, "video_frames": 8, "video_fps": 8,
              "video_size": 32, "clips_train": 2, "clips_val": 1, "clips_test": 1, "audio_sample_rate": 8000,
              "stories_train": 2, "stories_val": 1, "stories_test": 1, "story_frames": 16, "story_events": [1, 2]}
TINY_VIT = {"arch": "vit", "width": 16, "depth": 1, "patch_size": 8, "image_size": 32, "heads": 2}
OVERRIDES: dict[str, list[str]] = {  # flags appended to a README command whose defaults take more than seconds
    # demo: the tiny world, a tiny text tower and vision trunk, one epoch (default: ~3 minutes)
    "demo": ["--set", f"world={json.dumps(TINY_WORLD)}", "--set", "model.text_model=tiny-text",
             "--set", "model.vision={width: 8, depth: 2, image_size: 32}", "--epochs", "1", "--no-progress"],
    # compare: the tiny world (qa: its own, of 3 training stories), a tiny ViT base aligned for one epoch, one epoch per
    # strategy (default: ~15 minutes)
    "compare": ["--set", f"world={json.dumps(TINY_WORLD)}", "--set", "task_stories={qa: 3}", "--set", "base.text_model=tiny-text",
                "--set", f"base.vision={json.dumps(TINY_VIT)}", "--set", "align.fit.epochs=1", "--epochs", "1"],
    # transfer: one epoch (default: up to 60 epochs or a minute)
    "transfer": ["--epochs", "1", "--no-progress"],
    # bind: two epochs (default 10) of audio cut or padded to 1 s (default 4 s; hf_audio sets its own length)
    "bind": ["--epochs", "2", "--set", "spec={max_seconds: 1.0}"],
    # fuse: two epochs (default 10)
    "fuse": ["--epochs", "2"],
    # the frozen-vs-re-encode bench: one epoch per mode (default 3)
    "bench/frozen_vs_reencode.py": ["--epochs", "1"],
    # the out-of-core bench: 3,000 clips (default 1,000,000)
    "bench/out_of_core.py": ["--clips", "3000", "--batch", "256"],
}
RUNS_AT_LEAST = {"demo", "transfer", "compare", "bind", "zeroshot", "fuse", "index", "search", "list", "export"}  # commands


@dataclass
class Block:
    section: str  # the "## " heading the block is under
    lang: str  # "python" or "bash"
    code: str  # the block's text
    line: int  # README.md line of the opening fence
    skip: str | None  # the reason of its skip marker; None: the block runs


def readme_blocks(text: str) -> list[Block]:
    """The python and bash blocks of a Markdown text, with the skip reason of the line before each."""
    lines, out, section, i = text.splitlines(), [], "", 0
    while i < len(lines):
        if lines[i].startswith("## "):
            section = lines[i][3:].strip()
        fence = re.fullmatch(r"```(\w*)\s*", lines[i])
        if fence:
            end = lines.index("```", i + 1)
            marker = SKIP.search(lines[i - 1]) if i else None
            if fence.group(1) in ("python", "bash"):
                out.append(Block(section, fence.group(1), "\n".join(lines[i + 1:end]), i + 1,
                                 marker.group(1) if marker else None))
            i = end
        i += 1
    return out


def commands(block: Block) -> list[list[str]]:
    """The words of each command line of a bash block (comments dropped)."""
    return [words for words in (shlex.split(line, comments=True) for line in block.code.splitlines()) if words]


# ---------------------------------------------------------------- the sandbox
def _tiny_checkpoints(root: Path, text_dir: Path) -> None:
    """``RUN/model``, and tiny transformers models where the README names hub models."""
    import torch
    from transformers import ASTConfig, ASTModel

    import xmodal

    shutil.copytree(text_dir, root / "tiny-text")
    torch.manual_seed(0)
    xmodal.load("lit", text_model=str(root / "tiny-text"), num_frames=8, vision=TINY_VIT).save_pretrained(root / "RUN" / "model")
    spec = importlib.util.spec_from_file_location("tiny_hf", REPO / "tests" / "backbones" / "conftest.py")
    tiny_hf = importlib.util.module_from_spec(spec)  # the tiny CLIP maker the backbone tests use
    spec.loader.exec_module(tiny_hf)
    tiny_hf.make_hf_folder("clip", root / "openai" / "clip-vit-base-patch32")
    ast = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, num_mel_bins=16,
                    max_length=32, patch_size=16, frequency_stride=16, time_stride=16)
    ASTModel(ast).save_pretrained(root / "MIT" / "ast-finetuned-audioset-10-10-0.4593")


def _media(root: Path, av: Path) -> None:
    """The built-in world in ``data/`` and the files the README's commands read."""
    import csv

    from xmodal.experiments.world import WorldConfig, generate_world

    world = generate_world(root / "data", WorldConfig(**TINY_WORLD), progress=False)
    with (world / "videos.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    with (root / "videos.csv").open("w", newline="") as fh:  # the world's clips, relative to the sandbox
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "path": f"data/{r['path']}", "audio": f"data/{r['audio']}"} for r in rows)
    for r in rows:  # a folder of class folders
        (root / "my_videos" / r["label"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(world / r["path"], root / "my_videos" / r["label"] / Path(r["path"]).name)
    for name in ("images", "videos"):
        shutil.copytree(world / name, root / "media" / name)
    images = sorted((world / "images").iterdir())
    shutil.copy(images[0], root / "query.png")
    (root / "more").mkdir()
    for image in images[-2:]:
        shutil.copy(image, root / "more" / image.name)
    _mixed(world, root)
    _pairs(av, root)
    (root / "bench").symlink_to(REPO / "bench")


def _mixed(world: Path, root: Path) -> None:
    """``mixed.jsonl``: the world's clips as classification rows and its questions, each naming its task."""
    import csv
    import json

    with (world / "videos.csv").open(newline="") as fh:
        rows = [{**r, "task": "classify"} for r in csv.DictReader(fh)]
    rows += [{**json.loads(line), "task": "qa"} for line in (world / "qa.jsonl").read_text().splitlines() if line.strip()]
    with (root / "mixed.jsonl").open("w") as fh:
        fh.writelines(json.dumps({**r, "path": f"data/{r['path']}"}) + "\n" for r in rows)


def _pairs(av: Path, root: Path, train: int = 2, test: int = 1) -> None:
    """``pairs.csv`` (image,audio,text,label,split), ``img/``, ``wav/``: the first ``train`` and ``test`` rows
    of each class of the shared tiny image+audio manifest."""
    import csv

    with av.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    kept = [r for r in rows if sum(o["label"] == r["label"] and o["split"] == r["split"]
                                   for o in rows[:rows.index(r)]) < {"train": train, "test": test}[r["split"]]]
    with (root / "pairs.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(kept[0]))
        writer.writeheader()
        writer.writerows(kept)
    for name in ("img", "wav"):
        shutil.copytree(av.parent / name, root / name)


@pytest.fixture
def sandbox(tmp_path, tiny_text_dir, tiny_av, monkeypatch) -> Path:
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster, and ~2x so on a shared 2-core machine
    _tiny_checkpoints(tmp_path, tiny_text_dir)
    _media(tmp_path, tiny_av)
    yield tmp_path
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- running the blocks
def run_bash(block: Block, capsys) -> None:
    from xmodal.cli.main import main

    for words in commands(block):
        where = f"README.md:{block.line}: {shlex.join(words)}"
        if words[0] == "xmodal":
            rc = main(words[1:] + OVERRIDES.get(words[1], []))
            assert rc == 0, f"{where} exited {rc}: {capsys.readouterr().err[-2000:]}"
        elif words[0] == "python" and words[1].endswith(".py"):
            run_script(words[1], words[2:] + OVERRIDES.get(words[1], []), where)
        else:
            pytest.fail(f"{where}: not an `xmodal` or `python SCRIPT` line; mark the block skipped, with a reason")


def run_script(script: str, args: list[str], where: str) -> None:
    argv = sys.argv
    sys.argv = [script, *args]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        assert not exc.code, f"{where} exited {exc.code}"
    finally:
        sys.argv = argv


def test_readme_blocks_run(sandbox, capsys):
    import torch

    namespaces: dict[str, dict] = {}
    timings = []
    for block in readme_blocks(README.read_text()):
        if block.skip is not None:
            continue
        torch.set_num_threads(1)  # a command may have set its own (the bench: --threads 2)
        t0 = time.perf_counter()
        if block.lang == "python":
            code = compile(block.code, f"README.md:{block.line}", "exec")
            exec(code, namespaces.setdefault(block.section, {"__name__": "__readme__"}))  # noqa: S102
        else:
            run_bash(block, capsys)
        timings.append(f"README.md:{block.line} {block.lang} {time.perf_counter() - t0:.1f}s")
    with capsys.disabled():
        print("\n" + "\n".join(timings))
    assert (sandbox / "xmodal-demo" / "report" / "results.json").is_file()
    assert (sandbox / "runs" / "lora" / "model" / "transfer.json").is_file()
    assert (sandbox / "compare-clip" / "report" / "classify" / "results.json").is_file()
    assert (sandbox / "BOUND-ast" / "model" / "xmodal.json").is_file()
    assert (sandbox / "merged.index").is_dir()
    assert (sandbox / "lora-hf" / "config.json").is_file() and (sandbox / "lora-onnx" / "video.onnx").is_file()


def test_readme_keeps_its_key_commands_and_skips_only_with_a_reason():
    text = README.read_text()
    blocks = readme_blocks(text)
    assert len(SKIP.findall(text)) == sum(b.skip is not None for b in blocks), "a skip marker is not right before a fence"
    for b in blocks:
        assert b.skip is None or b.skip.strip(), f"README.md:{b.line}: a skip marker needs a reason"
    codes = [b.code for b in blocks]
    assert any("pip install" in c for c in codes) and any("python -m pytest" in c for c in codes)
    running = [b for b in blocks if b.skip is None]
    ran = {words[1] for b in running if b.lang == "bash" for words in commands(b) if words[0] == "xmodal"}
    assert RUNS_AT_LEAST <= ran, f"README commands that no longer run: {sorted(RUNS_AT_LEAST - ran)}"
    assert any(b.section == "Python API" and b.lang == "python" for b in running)
