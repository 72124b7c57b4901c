"""Audio zero-shot on av-digits by two routes, side by side: bound through images, and bound to text.

- ``image``: LiT aligns an image tower to the locked MiniLM text tower (images <-> digit words), then
  audio is bound to the frozen image tower on (audio, image) pairs alone: audio never meets text.
- ``text``: audio is bound directly to the locked MiniLM text tower on (audio, word) pairs (CLAP-style:
  a trained text projection head, a learnable temperature, repeated words as positives, class-balanced
  batches, augmented log-mels decoded once).
- ``supervised`` (a reference, not a binding): av_digits_bench.py's audio-only classifier on the same split.

Both are scored by zero-shot top-1 of the spoken digits from the ten digit words, on FSDD's official
test split and with one speaker held out (trained on the other five speakers' train rows, tested on
all 500 of the held-out speaker's). Real data from ``../shared/data/av-digits/pairs.csv``, read with the
ordinary manifest loader; "bind s" is the wall time of ``xmodal.bind`` (decoding included, cold cache; for
``supervised``, of its training)::

    python bench/audio_text_bench.py [--data ../shared/data/av-digits] [--routes image,text]
        [--splits official,theo] [--threads N] [--out bench-out/audio-text]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import xmodal
from xmodal.alignment.train import AlignConfig, align
from xmodal.binding.train import BindConfig, bind
from xmodal.data.manifest import read_manifest
from xmodal.engine.fit import FitConfig
from xmodal.eval.report import text_table

AUDIO_SPEC = {"sample_rate": 8000, "n_mels": 40, "n_fft": 256, "hop_length": 128, "max_seconds": 1.0}
AUDIO_CNN = {"width": 16, "depth": 3}
VISION = {"width": 16, "depth": 3, "image_size": 28, "stem_stride": 2}
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGIT_TEMPLATES = ("{}", "the number {}", "the digit {}", "a handwritten {}")  # av_digits_bench.py's image route


def splits(rows: list[dict], name: str) -> tuple[list[dict], list[dict]]:
    """(train, test): FSDD's official split, or the other speakers' train rows vs every row of speaker ``name``."""
    train = [r for r in rows if r["split"] == "train"]
    if name == "official":
        return train, [r for r in rows if r["split"] == "test"]
    test = [r for r in rows if r["speaker"] == name]
    if not test:
        raise SystemExit(f"no rows of speaker {name!r} in pairs.csv")
    return [r for r in train if r["speaker"] != name], test


def fit_cfg(epochs: int, lr: float) -> FitConfig:
    return FitConfig(epochs=epochs, lr=lr, progress=False, verbose=False)


def through_images(train, test, root, out, args) -> tuple[float, float, float]:
    """LiT images <-> words, then audio bound to the image tower: (audio top-1, image top-1, bind seconds)."""
    torch.manual_seed(0)
    model = xmodal.load("lit", vision=VISION)
    align(model, train, AlignConfig(columns=("image", "text"), batch_size=128, templates=DIGIT_TEMPLATES,
                                    fit=fit_cfg(args.align_epochs, 2e-3)), root=root)
    image = xmodal.zeroshot(model, [r["image"] for r in test], [r["text"] for r in test], WORDS, DIGIT_TEMPLATES,
                            modality="image", root=root, progress=False).top1
    cfg = BindConfig(encoder="audio_cnn", encoder_config=AUDIO_CNN, spec=AUDIO_SPEC, anchor="image", columns=("audio", "image"),
                     align=AlignConfig(label_column="", batch_size=128, fit=fit_cfg(args.image_epochs, 3e-3)))
    start = time.perf_counter()
    bind(model, train, cfg, root=root, out=out)
    seconds = time.perf_counter() - start
    bound = xmodal.load(out / "model")  # the reloaded checkpoint is what is measured
    audio = xmodal.zeroshot(bound, [r["audio"] for r in test], [r["text"] for r in test], WORDS, DIGIT_TEMPLATES,
                            modality="audio", root=root, progress=False).top1
    return audio, image, seconds


def to_text(train, test, root, out, args) -> tuple[float, float, float]:
    """Audio bound directly to the locked text tower, scored with the audio prompt set: (audio top-1, -, bind seconds)."""
    torch.manual_seed(0)
    model = xmodal.load("lit")
    cfg = BindConfig(encoder="audio_cnn", encoder_config=AUDIO_CNN, spec=AUDIO_SPEC, anchor="text", columns=("audio", "text"),
                     align=AlignConfig(label_column="", balance=True, batch_size=128, fit=fit_cfg(args.text_epochs, args.text_lr)))
    start = time.perf_counter()
    result = bind(model, train, cfg, root=root, out=out)
    seconds = time.perf_counter() - start
    for line in result.warnings:
        print(f"  warning: {line}", flush=True)
    bound = xmodal.load(out / "model")
    audio = xmodal.zeroshot(bound, [r["audio"] for r in test], [r["text"] for r in test], WORDS,
                            modality="audio", root=root, progress=False).top1  # default prompts: the audio set
    return audio, float("nan"), seconds


def supervised(train, test, root, out, args) -> tuple[float, float, float]:
    """Reference: the audio-only supervised classifier of av_digits_bench.py (labels, no text), same split."""
    from xmodal.fusion.evaluate import evaluate_fusion
    from xmodal.fusion.train import FuseConfig, fuse

    torch.manual_seed(0)
    encoders = {"audio": {"encoder": "audio_cnn", "config": AUDIO_CNN, "spec": AUDIO_SPEC}}
    cfg = FuseConfig(fusion="late", modalities=("audio",), columns=("audio",), encoders=encoders, modality_dropout=0.0,
                     fit=fit_cfg(args.supervised_epochs, 3e-3))
    start = time.perf_counter()
    res = fuse(train, cfg, root=root)
    seconds = time.perf_counter() - start
    return evaluate_fusion(res.model, test, ("audio",), root=root).subsets["audio"], float("nan"), seconds


ROUTES = {"image": through_images, "text": to_text, "supervised": supervised}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "av-digits"))
    p.add_argument("--routes", default="image,text", help="comma-separated: image, text, supervised (audio-only reference)")
    p.add_argument("--splits", default="official,theo", help="comma-separated: official and/or held-out speaker names")
    p.add_argument("--align-epochs", type=int, default=4, help="image route: LiT image-text epochs")
    p.add_argument("--image-epochs", type=int, default=8, help="image route: audio -> image bind epochs")
    p.add_argument("--text-epochs", type=int, default=10, help="text route: audio -> text bind epochs")
    p.add_argument("--text-lr", type=float, default=3e-3, help="text route: peak learning rate")
    p.add_argument("--supervised-epochs", type=int, default=4, help="supervised reference: epochs (av_digits_bench's)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = torch's default")
    p.add_argument("--out", default="bench-out/audio-text")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root, out = Path(args.data), Path(args.out)
    rows = read_manifest(root / "pairs.csv")
    table = []
    for split in args.splits.split(","):
        train, test = splits(rows, split)
        for route in args.routes.split(","):
            run = out / f"{route}-{split}"
            if run.exists():
                import shutil

                shutil.rmtree(run)  # a cold run: no resumed state, no cached log-mels
            audio, image, seconds = ROUTES[route](train, test, root, run, args)
            row = {"route": route, "split": split, "train rows": len(train), "test rows": len(test),
                   "audio top-1 %": round(100 * audio, 1), "bind s": round(seconds, 1)}
            if image == image:
                row["image top-1 % (LiT)"] = round(100 * image, 1)
            print(json.dumps(row), flush=True)
            table.append(row)
    print()
    print(text_table(table))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
