"""What limits video QA on the built-in world (issue #16): the frame features the fusion head reads, or the data?

The ``qa`` task's fusion head (:class:`xmodal.tasks.qa_heads.FusionHead`) reads one pooled feature per frame.
A story shows 2-4 objects at once, and a pooled image feature is blind to where each object is, so it cannot
say which object moved, or how. This probe trains that head on frozen features of a compare's base
(``OUT/base/model``) and a world's stories (``WORLD/qa.jsonl``), with the video read in different ways:

- ``question_only``: no video (the task's baseline);
- ``pooled``: the pooled feature of each frame (what the task reads now);
- ``pooled+grid``: that feature and the frame's last-block patch tokens average-pooled to a ``grid`` x ``grid``
  map, concatenated into one feature per frame (what a ``[B, T, F]`` contract can carry);
- ``tokens``: the same 1 + grid² tokens per frame kept apart, each with its frame's and its cell's position,
  one temporal encoder over all of them, and the question and choices attending to every token.

The head is the one without similarity curves (``similarity=False``), which these figures were measured on;
``bench/results/compare_qa.md`` has the compare with them. It prints test accuracy overall, on held-out colour-shape combinations and per question kind, the epoch
chosen on validation accuracy and the train accuracy then (how far the head memorises). Run it on the
compare's world and on one with more training stories (same test stories)::

    xmodal compare --task qa --strategies zero_shot --out OUT --threads 2      # the world and its base
    python bench/qa_frame_tokens.py --out OUT
    xmodal world --out W2000 --set stories_train=2000 ...                      # the compare's world settings
    python bench/qa_frame_tokens.py --out OUT --world W2000 --epochs 15
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from xmodal.backbones.base import XModel
from xmodal.eval.report import text_table
from xmodal.strategies.base import encode_strings
from xmodal.strategies.data import decode_clips
from xmodal.tasks.heads import HeadConfig
from xmodal.tasks.qa import QAConfig, QATask
from xmodal.tasks.qa_heads import FusionHead, padded

VARIANTS = ("question_only", "pooled", "pooled+grid", "tokens")


@torch.no_grad()
def frame_tokens(model: XModel, world: Path, paths: list[str], spec, grid: int) -> torch.Tensor:
    """``[clips, T, 1 + grid², W]``: each frame's pooled feature, then its patch tokens pooled to the grid."""
    vision = model.tower("image")
    pixels, _, _ = decode_clips(paths, spec, world, "raise", 0, "clips")
    out = []
    for i in range(0, len(pixels), 8):
        p = pixels[i:i + 8]
        frames = {"pixel_values": p.flatten(0, 1)}
        pooled = vision.trunk(frames)
        tokens = vision.forward_features(frames)[-1]
        side = math.isqrt(tokens.shape[1] - 1)  # a class token, then side x side patches
        patches = nn.functional.layer_norm(tokens[:, 1:], tokens.shape[-1:]).transpose(1, 2)
        cells = nn.functional.adaptive_avg_pool2d(patches.reshape(len(patches), -1, side, side), grid)
        out.append(torch.cat([pooled[:, None], cells.flatten(2).transpose(1, 2)], 1).reshape(*p.shape[:2], -1, pooled.shape[-1]))
    return torch.cat(out)


class TokenHead(FusionHead):
    """The fusion head over every (frame, cell) token: frame and cell positions, one encoder over all."""

    def __init__(self, in_dim: int, text_dim: int, cfg: QAConfig, cells: int) -> None:
        super().__init__(in_dim, text_dim, cfg, HeadConfig(kind="transformer"))
        self.cell = nn.Parameter(torch.randn(1, 1, cells, cfg.width) * 0.02)

    def video(self, seq: torch.Tensor) -> torch.Tensor:  # [B, T, cells, F]
        h = self.frame(seq) + self.pos[:, : seq.shape[1], None] + self.cell
        return self.memory_norm(self.temporal(h.flatten(1, 2)))


def head_and_video(variant: str, feats: torch.Tensor, text_dim: int) -> tuple[nn.Module, torch.Tensor]:
    cfg = QAConfig(use_video=variant != "question_only", similarity=False)  # the head these figures were measured on
    if variant == "tokens":
        return TokenHead(feats.shape[-1], text_dim, cfg, feats.shape[2]), feats
    video = feats.flatten(2) if variant == "pooled+grid" else feats[:, :, 0]
    return FusionHead(video.shape[-1], text_dim, cfg, HeadConfig(kind="transformer")), video


class Split:
    def __init__(self, rows: list[dict], index: dict[str, int], texts: dict[str, torch.Tensor]) -> None:
        self.rows, self.texts = rows, texts
        self.clip = torch.tensor([index[r["path"]] for r in rows])
        self.targets = QATask().targets(rows, {"mode": "choice"}, QAConfig(), "rows")

    def scores(self, head: nn.Module, video: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        question = torch.stack([self.texts[self.rows[i]["question"]] for i in idx])
        choices = [self.targets["choices"][i] for i in idx]
        flat = torch.stack([self.texts[c] for options in choices for c in options])
        return head.choices(video[self.clip[idx]], question, *padded(flat, [len(o) for o in choices]))

    @torch.no_grad()
    def accuracy(self, head: nn.Module, video: torch.Tensor) -> dict[str, float]:
        head.eval()
        pred = torch.cat([self.scores(head, video, idx).argmax(-1) for idx in torch.arange(len(self.rows)).split(256)])
        right = (pred == self.targets["answer"]).float()
        head.train()
        out = {"accuracy": float(right.mean())}
        for key, keep in [("held_out", [bool(r["held_out"]) for r in self.rows]),
                          *[(k, [r["kind"] == k for r in self.rows]) for k in sorted({r["kind"] for r in self.rows})]]:
            out[key] = float(right[torch.tensor(keep)].mean())
        return out


def train(variant: str, feats: torch.Tensor, splits: dict[str, Split], text_dim: int, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    head, video = head_and_video(variant, feats, text_dim)
    train_split, batches = splits["train"], math.ceil(len(splits["train"].rows) / 32)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=epochs * batches)
    best, start = {"val": -1.0}, time.perf_counter()
    for epoch in range(epochs):
        for idx in torch.randperm(len(train_split.rows)).split(32):
            loss = nn.functional.cross_entropy(train_split.scores(head, video, idx), train_split.targets["answer"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
        val = splits["val"].accuracy(head, video)["accuracy"]
        if val > best["val"]:
            best = {"val": val, "epoch": epoch + 1, "train": splits["train"].accuracy(head, video)["accuracy"],
                    **splits["test"].accuracy(head, video)}
    return {"variant": variant, **best, "seconds": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="a qa compare's --out (its base/model; its world unless --world)")
    ap.add_argument("--world", default="", help="a world folder with stories (default: OUT/world)")
    ap.add_argument("--grid", type=int, default=4, help="patch tokens pooled to grid x grid cells per frame")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    world = Path(args.world or Path(args.out) / "world")
    model = XModel.from_pretrained(Path(args.out) / "base" / "model").eval()
    rows = [json.loads(line) for line in (world / "qa.jsonl").open()]
    paths = list(dict.fromkeys(r["path"] for r in rows))
    feats = frame_tokens(model, world, paths, QATask().sampling(QAConfig(), model.spec("video")), args.grid)
    names = sorted({r["question"] for r in rows} | {c for r in rows for c in r["choices"]})
    texts = dict(zip(names, encode_strings(model, names)))
    index = {p: i for i, p in enumerate(paths)}
    splits = {s: Split([r for r in rows if r["split"] == s], index, texts) for s in ("train", "val", "test")}
    print(f"{world}: {len(splits['train'].rows)} train / {len(splits['test'].rows)} test questions, "
          f"frame tokens {tuple(feats.shape[1:])}")
    results = [train(v, feats, splits, model.embed_dim, args.epochs, args.seed) for v in VARIANTS]
    print(text_table([{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in results]))


if __name__ == "__main__":
    main()
