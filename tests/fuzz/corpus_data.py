"""The hostile-input corpus, part two: texts, manifests, model folders, index folders, configs and
``--out`` paths, each with the command lines run on it.

Command lines are argv templates: ``@input`` is the built input, ``@model`` a good checkpoint folder,
``@index`` a good index folder, ``@images`` a good image manifest (path,label,caption,split), ``@media``
a good media folder and ``@out`` a fresh output folder. ``named`` is what the output must mention
(default: the input's file name); ``ok`` marks a strange but valid input that may succeed silently.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .corpus import QUIET, Case

Builder = Callable[[Path, dict[str, Path]], Path]
ZEROSHOT = ("zeroshot", "--model", "@model", "--data", "@input")
ALIGN = ("align", "--model", "@model", "--train", "@input", "--out", "@out", "--epochs", "1", "--batch-size", "4", *QUIET)


def rows(good: dict[str, Path], n: int = 4) -> list[dict[str, Any]]:
    """``n`` valid rows of the good image manifest, paths made absolute."""
    root = good["images"].parent
    lines = good["images"].read_text().splitlines()[1 : n + 1]
    out = []
    for line in lines:
        path, label, caption, split = line.split(",")
        out.append({"path": str(root / path), "label": label, "caption": caption, "split": "train"})
    return out


def jsonl(edit: Callable[[list[dict[str, Any]]], None]) -> Builder:
    """A JSONL manifest of good rows after ``edit`` changed them in place."""
    def build(path: Path, good: dict[str, Path]) -> Path:
        data = rows(good)
        edit(data)
        path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
        return path

    return build


def csv_text(make: Callable[[list[dict[str, Any]]], str], encoding: str = "utf-8") -> Builder:
    def build(path: Path, good: dict[str, Path]) -> Path:
        data = rows(good)
        path.write_bytes(make(data).encode(encoding, "surrogateescape"))
        return path

    return build


def table(data: list[dict[str, Any]], columns: tuple[str, ...] = ("path", "label", "caption", "split")) -> str:
    return ",".join(columns) + "\n" + "".join(",".join(str(r[c]) for c in columns) + "\n" for r in data)


def raw(content: bytes) -> Builder:
    def build(path: Path, good: dict[str, Path]) -> Path:
        path.write_bytes(content)
        return path

    return build


def set_cell(column: str, value: Any, row: int = 1) -> Callable[[list[dict[str, Any]]], None]:
    def edit(data: list[dict[str, Any]]) -> None:
        data[row][column] = value

    return edit


def drop_cell(column: str, row: int = 1) -> Callable[[list[dict[str, Any]]], None]:
    return lambda data: data[row].pop(column)


def _dup(data: list[dict[str, Any]]) -> str:
    return table(data + data[:2])


def _swap_path(value: str) -> Callable[[list[dict[str, Any]]], None]:
    return set_cell("path", value)


TEXT = [
    Case("caption_surrogate.jsonl", "text", jsonl(set_cell("caption", "a \ud800 square")), (ALIGN,)),
    Case("caption_blank.jsonl", "text", jsonl(set_cell("caption", "   ")), (ALIGN,)),
    Case("caption_list.jsonl", "text", jsonl(set_cell("caption", ["a", "b"])), (ALIGN,)),
    Case("caption_long.jsonl", "text", jsonl(set_cell("caption", "red " * 20000)), (ALIGN,), ok=True),
    Case("caption_nul.jsonl", "text", jsonl(set_cell("caption", "a\x00red\x00square")), (ALIGN,), ok=True),
    Case("caption_bad_utf8.csv", "text", csv_text(lambda d: table(d).replace("square", "squ\udcffare", 1)),
             (ALIGN,)),
    Case("classes_surrogate", "text", raw(b""),
             (("zeroshot", "--model", "@model", "--data", "@images", "--classes", "red,gr\udcffeen"),), named="--classes"),
    Case("classes_empty_item", "text", raw(b""),
             (("zeroshot", "--model", "@model", "--data", "@images", "--classes", "red,,green"),), named="--classes"),
    Case("template_surrogate", "text", raw(b""),
             (("zeroshot", "--model", "@model", "--data", "@images", "--template", "a \udcff {}"),), named="--template"),
    Case("template_without_slot", "text", raw(b""),
             (("zeroshot", "--model", "@model", "--data", "@images", "--template", "a photo"),), named="a photo"),
    Case("list_pattern_surrogate", "text", raw(b""), (("list", "backbones", "\udcff*"),), ok=True),
    Case("query_surrogate", "text", raw(b""), (("search", "@index", "red \udcff"),), named="query"),
    Case("query_blank", "text", raw(b""), (("search", "@index", "   "),), named="query"),
]

MANIFESTS = [
    Case("label_null.jsonl", "manifest", jsonl(set_cell("label", None)), (ZEROSHOT,), named="label_null.jsonl row 1"),
    Case("label_missing.jsonl", "manifest", jsonl(drop_cell("label")), (ZEROSHOT,), named="label_missing.jsonl row 1"),
    Case("label_object.jsonl", "manifest", jsonl(set_cell("label", {"a": 1})), (ZEROSHOT,)),
    Case("label_number.jsonl", "manifest", jsonl(set_cell("label", 7)), (ZEROSHOT,), ok=True),
    Case("no_caption_column.csv", "manifest", csv_text(lambda d: table(d, ("path", "label", "split"))), (ALIGN,),
             named="no column 'caption'"),
    Case("duplicates.csv", "manifest", csv_text(_dup), (ZEROSHOT,), named="2 duplicate row(s)"),
    Case("empty.csv", "manifest", raw(b""), (ZEROSHOT, ALIGN)),
    Case("header_only.csv", "manifest", raw(b"path,label\n"), (ZEROSHOT,)),
    Case("bad_json.jsonl", "manifest", raw(b'{"path": "a.png", "label": \n'), (ZEROSHOT,)),
    Case("array_line.jsonl", "manifest", raw(b'["a.png", "red"]\n'), (ZEROSHOT,)),
    Case("extra_field.csv", "manifest", csv_text(lambda d: table(d).replace("\n", ",x\n", 2)), (ZEROSHOT,)),
    Case("missing_field.csv", "manifest", raw(b"path,label,caption\na.png,red\n"), (ZEROSHOT,)),
    Case("bom_crlf.csv", "manifest", csv_text(lambda d: "\ufeff" + table(d).replace("\n", "\r\n")), (ZEROSHOT,),
             ok=True),
    Case("not_utf8.csv", "manifest", raw(b"path,label\n\xff\xfe.png,red\n"), (ZEROSHOT,)),
    Case("manifest.txt", "manifest", raw(b"path,label\na.png,red\n"), (ZEROSHOT,)),
    Case("path_nul.jsonl", "manifest", jsonl(_swap_path("a\x00b.png")), (ZEROSHOT,), named="a\\x00b.png"),
    Case("path_folder.jsonl", "manifest", jsonl(_swap_path("/")), (ZEROSHOT,), named="/: not a file"),
    Case("path_missing.jsonl", "manifest", jsonl(_swap_path("/nonexistent/x.png")), (ZEROSHOT,), named="x.png"),
    Case("path_traversal.jsonl", "manifest", jsonl(_swap_path("../../../../../../etc/passwd.png")), (ZEROSHOT,),
             named="passwd.png"),
    Case("path_number.jsonl", "manifest", jsonl(_swap_path(5)), (ZEROSHOT,)),
    Case("path_deep.jsonl", "manifest", jsonl(_swap_path("d/" * 5000 + "x.png")), (ZEROSHOT,), named="not a usable path"),
    Case("garbage.csv", "manifest", raw(bytes(np.random.default_rng(4).integers(0, 256, 800, dtype=np.uint8))),
             (ZEROSHOT,)),
    Case("no_classes", "manifest", lambda p, g: (p.mkdir(), p)[1], (ZEROSHOT,)),
    Case("fuse_label_null.jsonl", "manifest", jsonl(set_cell("label", None)),
             (("fuse", "--train", "@input", "--test", "@input", "--out", "@out", "--modalities", "image", "--columns", "path", "--epochs",
               "1", *QUIET),), named="fuse_label_null.jsonl row 1"),
    Case("transfer_duplicates.csv", "manifest", csv_text(lambda d: table([{**r, "split": s} for r, s in zip(
        d + d[:1], ["train", "train", "val", "test", "train"])])),
        (("transfer", "--strategy", "linear_probe", "--model", "@model", "--data", "@input", "--out", "@out", "--epochs",
          "1", "--no-progress", "--set", "batch_size=2"),), named="1 duplicate row(s)"),
    Case("transfer_label_null.jsonl", "manifest", jsonl(set_cell("label", None)),
             (("transfer", "--strategy", "linear_probe", "--model", "@model", "--data", "@input", "--out", "@out",
               "--epochs", "1", "--no-progress"),), named="empty 'label'"),  # names the row and its file
    Case("compare_garbage.csv", "manifest", raw(b"\x00\x01\x02 not a manifest"),
             (("compare", "--model", "@model", "--data", "@input", "--out", "@out", "--strategies", "zero_shot"),)),
]


# ---------------------------------------------------------------- model folders
def model(edit: Callable[[Path], None]) -> Builder:
    """A copy of the good checkpoint folder after ``edit(folder)``."""
    def build(path: Path, good: dict[str, Path]) -> Path:
        shutil.copytree(good["model"], path)
        edit(path)
        return path

    return build


def vision(**values: Any) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        meta = json.loads((folder / "xmodal.json").read_text())
        meta["config"]["vision"].update(values)
        (folder / "xmodal.json").write_text(json.dumps(meta))

    return edit


def meta(key: str, value: Any) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = json.loads((folder / "xmodal.json").read_text())
        data[key] = value
        (folder / "xmodal.json").write_text(json.dumps(data))

    return edit


def _cut_weights(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 3])


MODEL_RUNS = (("zeroshot", "--model", "@input", "--data", "@images"),
              ("align", "--model", "@input", "--train", "@images", "--out", "@out", "--epochs", "1", *QUIET))
MODELS = [
    Case("model_empty", "model", lambda p, g: (p.mkdir(), p)[1], MODEL_RUNS),
    Case("model_json_garbage", "model", model(lambda f: (f / "xmodal.json").write_text("{not json")), MODEL_RUNS),
    Case("model_json_list", "model", model(lambda f: (f / "xmodal.json").write_text("[1, 2]")), MODEL_RUNS),
    Case("model_no_weights", "model", model(lambda f: (f / "model.safetensors").unlink()), MODEL_RUNS),
    Case("model_cut_weights", "model", model(_cut_weights), MODEL_RUNS),
    Case("model_width_huge", "model", model(vision(width=10**7)), MODEL_RUNS, named="width"),
    Case("model_depth_negative", "model", model(vision(depth=-1)), MODEL_RUNS, named="depth"),
    Case("model_image_size_zero", "model", model(vision(image_size=0)), MODEL_RUNS, named="image_size"),
    Case("model_unknown_backbone", "model", model(meta("backbone", "nope")), MODEL_RUNS, named="nope"),
    Case("model_config_string", "model", model(meta("config", "width=3")), MODEL_RUNS),
]


# ---------------------------------------------------------------- index folders (the index loader is part C's)
def index(edit: Callable[[Path], None]) -> Builder:
    def build(path: Path, good: dict[str, Path]) -> Path:
        shutil.copytree(good["index"], path)
        edit(path)
        return path

    return build


def _each_faiss(change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        for file in folder.glob("ann.*.faiss"):
            file.write_bytes(change(file.read_bytes()))

    return edit


def _ivf_without_nprobe(folder: Path) -> None:
    data = json.loads((folder / "ann.json").read_text())
    for entry in data["modalities"].values():
        entry.update(kind="ivf", nlist=2)
        entry.pop("nprobe", None)
    (folder / "ann.json").write_text(json.dumps(data))


def _garbage_sqlite(folder: Path) -> None:
    (folder / "index.sqlite").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)


def _dropped_table(folder: Path) -> None:
    with sqlite3.connect(folder / "index.sqlite") as db:
        names = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        db.execute(f"drop table {names[0]}")


INDEX_RUNS = (("search", "@input", "a red square"), ("serve", "@input", "--port", "0"))
INDEXES = [
    Case("index_empty", "index", lambda p, g: (p.mkdir(), p)[1], INDEX_RUNS),
    Case("index_cut_faiss", "index", index(_each_faiss(lambda b: b[: len(b) // 2])), INDEX_RUNS),
    Case("index_garbage_faiss", "index", index(_each_faiss(lambda b: b"\x13" * len(b))), INDEX_RUNS),
    Case("index_bad_ann_json", "index", index(lambda f: (f / "ann.json").write_text('{"generation": ')), INDEX_RUNS),
    Case("index_ann_json_list", "index", index(lambda f: (f / "ann.json").write_text("[]")), INDEX_RUNS),
    Case("index_garbage_sqlite", "index", index(_garbage_sqlite), INDEX_RUNS),
    Case("index_ivf_no_nprobe", "index", index(_ivf_without_nprobe), INDEX_RUNS),
    Case("index_dropped_table", "index", index(_dropped_table), INDEX_RUNS),
]


# ---------------------------------------------------------------- configs and --out
def yaml_text(text: str) -> Builder:
    return raw(text.encode())


CONFIGS = [
    Case("demo_width_huge.yaml", "config", yaml_text("model:\n  vision: {width: 10000000}\n"),
             (("demo", "--config", "@input", "--out", "@out", "--no-progress"),), named="width"),
    Case("world_negative.yaml", "config", yaml_text("image_size: -5\nimages_train: -1\n"),
             (("world", "--config", "@input", "--out", "@out"),), named="must be >= 0"),
    Case("bind_width_huge", "config", raw(b""), (("bind", "--model", "@model", "--train", "@images", "--out", "@out",
                                                  "--set", "encoder_config={width: 10000000}"),), named="width"),
    Case("fuse_depth_negative", "config", raw(b""), (("fuse", "--train", "@images", "--out", "@out", "--set",
                                                      "encoders.image={config: {depth: -1}}"),), named="depth"),
    Case("not_yaml.yaml", "config", yaml_text("a: [1, 2\n"), (("world", "--config", "@input", "--out", "@out"),)),
]

OUT_COMMANDS = {  # command -> argv before --out (the command must refuse an --out that is a file before any work)
    "demo": ("demo",), "world": ("world",), "align": ("align", "--model", "@model", "--train", "@images"),
    "zeroshot": ("zeroshot", "--model", "@model", "--data", "@images"),
    "bind": ("bind", "--model", "@model", "--train", "@images"),
    "fuse": ("fuse", "--train", "@images"), "index": ("index", "@media", "--model", "@model"),
    "transfer": ("transfer", "--strategy", "linear_probe", "--model", "@model", "--data", "@images"),
    "compare": ("compare", "--model", "@model", "--data", "@images"),
}
OUTS = [Case(f"out_file_{cmd}", "out", raw(b"I am a file\n"), ((*argv, "--out", "@input"),), named="--out")
        for cmd, argv in OUT_COMMANDS.items()]

DATA_CASES = TEXT + MANIFESTS + MODELS + INDEXES + CONFIGS + OUTS
