"""Embedding throughput of onnxruntime vs PyTorch on a real-size CLIP ViT-B/32, in one run, on the same inputs.

The model is the random-init transformers ``CLIPConfig()`` (ViT-B/32, 224 px, 512-d text tower) of
``bench/encoder_throughput.py``, built offline and loaded with ``xmodal.load``. The ``onnx`` backend
(``xmodal.exporters.runtime.OnnxEmbedder``, what ``xmodal index --backend onnx`` runs) exports its image and
text encoders (``torch.onnx.export``, checked against PyTorch at export) and runs them in onnxruntime with
as many threads as torch gets. Both backends embed the same preprocessed pixel batches and the same tokenised
captions (decoding and preprocessing are left out: they are the same code for both); each is timed after a
one-batch warm-up, best of ``--repeats`` passes.

    python bench/onnx_throughput.py [--images 64] [--texts 256] [--batch-size 16] [--threads 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import xmodal
from xmodal.eval.report import text_table
from xmodal.exporters.runtime import OnnxEmbedder
from xmodal.modalities import MODALITIES

sys.path.insert(0, str(Path(__file__).parent))
from encoder_throughput import best_of, build_clip_folder  # noqa: E402


def batches(model, images: int, texts: int, batch_size: int) -> dict[str, list[dict[str, torch.Tensor]]]:
    """Preprocessed inputs: random pixels of the image size, and captions of 4..16 words, in batches."""
    g = torch.Generator().manual_seed(0)
    size = model.spec("image").size
    pixels = torch.rand(images, 3, size, size, generator=g)
    words = ["a", "red", "circle", "moving", "left", "photo", "of", "the", "cat", "dog", "on", "green", "square"]
    captions = [" ".join(words[int(j)] for j in torch.randint(len(words), (4 + i % 13,), generator=g)) for i in range(texts)]
    text, spec = MODALITIES.get("text"), model.spec("text")
    return {"image": [{"pixel_values": pixels[i:i + batch_size]} for i in range(0, images, batch_size)],
            "text": [text.collate(captions[i:i + batch_size], spec) for i in range(0, texts, batch_size)]}


def run(model, modality: str, inputs: list[dict[str, torch.Tensor]], repeats: int) -> tuple[float, torch.Tensor]:
    def work() -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([model.encode(modality, b) for b in inputs])

    with torch.no_grad():
        model.encode(modality, inputs[0])  # warm-up
    return best_of(repeats, work)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=64, help="images embedded per pass")
    p.add_argument("--texts", type=int, default=256, help="captions embedded per pass")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch threads = onnxruntime intra-op threads")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per run (the best one counts)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = xmodal.load(str(build_clip_folder(Path(tmp) / "clip-vit-b-32"))).eval()
        t0 = time.perf_counter()
        fast = OnnxEmbedder(model, Path(tmp) / "onnx", threads=args.threads)
        export_seconds = time.perf_counter() - t0
        inputs = batches(model, args.images, args.texts, args.batch_size)
        rows = []
        for modality in ("image", "text"):
            t_torch, v_torch = run(model, modality, inputs[modality], args.repeats)
            t_onnx, v_onnx = run(fast, modality, inputs[modality], args.repeats)
            n = len(v_torch)
            for name, seconds in (("torch", t_torch), (f"onnx ({fast.backends[modality]})", t_onnx)):
                rows.append({"modality": modality, "backend": name, "items": n, "seconds": round(seconds, 2),
                             "items/s": round(n / seconds, 1), "x torch": round(t_torch / seconds, 2),
                             "max |diff|": f"{(v_onnx - v_torch).abs().max():.1e}" if name != "torch" else ""})
    print(f"CLIP ViT-B/32 (random init), threads {args.threads}, batch {args.batch_size}, best of {args.repeats}; "
          f"export + check of image/video/text graphs {export_seconds:.0f} s; torch {torch.__version__}, "
          f"onnxruntime {__import__('onnxruntime').__version__}")
    print(text_table(rows))


if __name__ == "__main__":
    main()
