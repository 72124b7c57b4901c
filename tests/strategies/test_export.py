"""``xmodal export``: transformers, PEFT and ONNX folders that load without xmodal and reproduce its
outputs (checked in a subprocess that cannot import xmodal), a contract over the strategy registry,
and the model cards."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import xmodal
from xmodal.cli.main import main
from xmodal.config import from_dict
from xmodal.errors import ExportError
from xmodal.exporters import EXPORTERS, check_format, export, formats_for
from xmodal.strategies import STRATEGIES, load_transfer, save_transfer
from xmodal.strategies.base import encode_strings
from xmodal.strategies.train import TransferConfig, build
from xmodal.tasks import TASKS

CAPTIONS = ["a photo of a cat", "a dog", "a red dog"]  # short: the tiny tokenizer spells most words letter by letter
ROWS = [{"path": f"{k}.mp4", "label": c} for k, c in enumerate(["left", "right", "grow"])]
NO_XMODAL = """
import sys
sys.modules["xmodal"] = None  # an installed xmodal (editable or not) cannot be imported either
sys.path = [p for p in sys.path if not p.endswith("src")]
try:
    import xmodal
    raise SystemExit("xmodal is importable")
except ImportError:
    pass
import torch
from safetensors.torch import load_file, save_file
"""


def make_hf_folder(kind: str, out: Path) -> Path:
    """A tiny transformers ``kind`` dual encoder saved like a hub snapshot (tests/backbones/conftest.py)."""
    spec = importlib.util.spec_from_file_location("_tiny_hf_export", Path(__file__).parents[1] / "backbones" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_hf_folder(kind, out)


def make_transfer(clip_dir: Path, strategy: str, out: Path, **options) -> Path:
    """A classify transfer of ``strategy`` on the tiny CLIP with every trainable weight moved, saved to ``out``."""
    task = TASKS.get("classify")
    meta = task.meta(ROWS, from_dict(task.config_cls, {}))
    vm = build(xmodal.load(str(clip_dir)), TransferConfig(task="classify", strategy=strategy, options=options), meta)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in vm.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return save_transfer(vm.eval(), out, clip_dir, {"accuracy": 0.5, "trainable_params": 123})


def without_xmodal(code: str, tmp: Path) -> None:
    """Run ``code`` in a fresh interpreter that cannot import xmodal."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = tmp / "script.py"
    script.write_text(NO_XMODAL + textwrap.dedent(code))
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def pixels(n: int = 3, size: int = 30) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def xmodal_embeddings(model_dir: Path, merge: bool) -> tuple[torch.Tensor, torch.Tensor]:
    vm = load_transfer(model_dir)
    if merge:
        vm.merge()
    with torch.no_grad():
        image = vm.vision({"pixel_values": pixels()})
    return image, torch.stack(encode_strings(vm.base, CAPTIONS))


HF_FEATURES = """
def features(model, tokenizer_dir, padding=True):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    inputs = load_file("inputs.safetensors")
    with torch.no_grad():
        image = model.get_image_features(pixel_values=inputs["pixels"])
        text = model.get_text_features(**tok(CAPTIONS, padding=padding, max_length=16, return_tensors="pt"))
    image, text = [t if isinstance(t, torch.Tensor) else t.pooler_output for t in (image, text)]
    norm = torch.nn.functional.normalize
    save_file({"image": norm(image, dim=-1).contiguous(), "text": norm(text, dim=-1).contiguous()}, "out.safetensors")
"""


@pytest.mark.parametrize("kind,strategy,options", [("clip", "lora", {}), ("clip", "partial", {"mode": "bitfit"}),
                                                   ("clip", "full", {}), ("siglip", "lora", {})])
def test_transformers_export_loads_with_automodel_alone(kind, strategy, options, tiny_clip_dir, tmp_path):
    base = tiny_clip_dir if kind == "clip" else make_hf_folder(kind, tmp_path / kind)
    model = make_transfer(base, strategy, tmp_path / "run" / "model", **options)
    out = export(model, "transformers", tmp_path / "hf")
    save_file({"pixels": pixels()}, str(tmp_path / "inputs.safetensors"))
    padding = "max_length" if kind == "siglip" else True  # as xmodal pads each (SigLIP was trained on full length)
    without_xmodal(f"CAPTIONS = {CAPTIONS!r}\n" + HF_FEATURES + f"""
from transformers import AutoModel
features(AutoModel.from_pretrained({str(out)!r}), {str(out)!r}, {padding!r})
""", tmp_path)
    got, (image, text) = load_file(str(tmp_path / "out.safetensors")), xmodal_embeddings(model, merge=True)
    assert torch.allclose(got["image"], image, atol=1e-5) and torch.allclose(got["text"], text, atol=1e-5)
    assert (out / "README.md").is_file()


def test_peft_export_loads_with_peftmodel_alone(tiny_clip_dir, tmp_path):
    model = make_transfer(tiny_clip_dir, "lora", tmp_path / "run" / "model")
    out = export(model, "peft", tmp_path / "peft")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "base"} <= {p.name for p in out.iterdir()}
    save_file({"pixels": pixels()}, str(tmp_path / "inputs.safetensors"))
    without_xmodal(f"CAPTIONS = {CAPTIONS!r}\n" + HF_FEATURES + f"""
from transformers import AutoModel
from peft import PeftModel
model = PeftModel.from_pretrained(AutoModel.from_pretrained({str(out / 'base')!r}), {str(out)!r}).eval()
features(model.base_model.model, {str(out / 'base')!r})
""", tmp_path)
    got, (image, text) = load_file(str(tmp_path / "out.safetensors")), xmodal_embeddings(model, merge=False)
    assert torch.allclose(got["image"], image, atol=1e-5) and torch.allclose(got["text"], text, atol=1e-5)
    base = xmodal.load(str(tiny_clip_dir))
    with torch.no_grad():
        assert not torch.allclose(base.tower("image")({"pixel_values": pixels()}), image, atol=1e-3)  # the adapter counts


@pytest.mark.parametrize("base,strategy", [("clip", "lora"), ("clip", "adapter"), ("lit", "lora")])
def test_onnx_export_runs_in_onnxruntime_alone(base, strategy, tiny_clip_dir, make_lit, tmp_path):
    pytest.importorskip("onnxruntime")
    base_dir = tiny_clip_dir if base == "clip" else make_lit().save_pretrained(tmp_path / "lit")
    model = make_transfer(base_dir, strategy, tmp_path / "run" / "model")
    out = export(model, "onnx", tmp_path / "onnx")
    vm = load_transfer(model)
    size = vm.base.spec("image").size
    clips = torch.randn(3, vm.base.spec("video").num_frames, 3, size, size, generator=torch.Generator().manual_seed(2))
    text = vm.base.spec("text").tokenizer(CAPTIONS, padding=True, return_tensors="pt")
    names = json.loads((out / "onnx.json").read_text())["inputs"]["text"]
    save_file({"clips": clips, "pixels": pixels(size=size), **{k: text[k] for k in names}}, str(tmp_path / "inputs.safetensors"))
    without_xmodal(f"""
import onnxruntime
inputs = {{k: v.numpy() for k, v in load_file("inputs.safetensors").items()}}
def run(name, feed):
    return torch.from_numpy(onnxruntime.InferenceSession({str(out)!r} + f"/{{name}}.onnx").run(None, feed)[0])
save_file({{"video": run("video", {{"pixel_values": inputs["clips"]}}), "image": run("image", {{"pixel_values": inputs["pixels"]}}),
           "text": run("text", {{k: inputs[k] for k in {list(names)!r}}})}}, "out.safetensors")
""", tmp_path)
    got = load_file(str(tmp_path / "out.safetensors"))
    vm.merge()
    with torch.no_grad():
        video, image = vm(clips), vm.vision({"pixel_values": pixels(size=size)})
    assert got["video"].shape == video.shape == (3, len(ROWS))  # batch 3, exported with 2: the batch axis is dynamic
    assert torch.allclose(got["video"], video, atol=1e-4) and torch.allclose(got["image"], image, atol=1e-4)
    assert torch.allclose(got["text"], torch.stack(encode_strings(vm.base, CAPTIONS)), atol=1e-4)


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_exports_or_names_the_format_that_works(strategy, tiny_clip_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    model = make_transfer(tiny_clip_dir, strategy, tmp_path / "run" / "model")
    works = formats_for(load_transfer(model))
    assert works, f"{strategy}: no export format can hold it"
    for to in EXPORTERS.names():
        if to not in works:
            with pytest.raises(ExportError) as err:
                check_format(load_transfer(model), to)
            line = str(err.value)
            assert "\n" not in line and strategy in line and any(f"--to {w}" in line for w in works)
    out = export(model, works[0], tmp_path / "out")
    assert (out / "README.md").is_file()


def test_model_cards_name_base_strategy_data_metrics_and_loading(tiny_clip_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"command": "transfer", "config": {}, "data": {"data": "f00d"}}))
    model = make_transfer(tiny_clip_dir, "lora", run / "model", rank=2)
    for folder in (model, export(model, "transformers", tmp_path / "hf")):
        card = (folder / "README.md").read_text()
        assert str(tiny_clip_dir) in card and "`lora`" in card and '"rank": 2' in card
        assert "f00d" in card and "| accuracy | 0.5 |" in card and "| trainable_params | 123 |" in card
        assert "## How to load" in card
    assert "AutoModel.from_pretrained" in (tmp_path / "hf" / "README.md").read_text()


def test_cli_exports_and_refuses_in_one_line(tiny_clip_dir, tmp_path, capsys):
    lora = make_transfer(tiny_clip_dir, "lora", tmp_path / "lora" / "model")
    assert main(["export", str(lora), "--to", "transformers", "--out", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "config.json").is_file() and str(tmp_path / "hf") in capsys.readouterr().out
    head = make_transfer(tiny_clip_dir, "temporal_head", tmp_path / "head" / "model")
    assert main(["export", str(head), "--to", "peft", "--out", str(tmp_path / "p")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xmodal export: error")]
    assert len(errors) == 1 and errors[0].endswith("--to onnx") and not (tmp_path / "p").exists()
