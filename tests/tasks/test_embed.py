"""xmodal.embed's replica processes (multi-instance inference): same vectors, order and errors as one process."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch

from xmodal.cli.main import main
from xmodal.errors import ConfigError, DataError
from xmodal.tasks.embed import embed


def _paths(manifest) -> list[str]:
    return [r["path"] for r in csv.DictReader(manifest.open())]


def test_replicas_give_the_vectors_and_order_of_one_process(tiny_lit, colour_manifest):
    paths = _paths(colour_manifest)
    kw = {"root": colour_manifest.parent, "batch_size": 5, "progress": False}
    one = embed(tiny_lit, "image", paths, **kw)
    two = embed(tiny_lit, "image", paths, replicas=2, **kw)
    assert two.kept == one.kept == list(range(len(paths)))
    assert torch.allclose(two.vectors, one.vectors, atol=1e-6)
    assert torch.allclose(embed(tiny_lit, "image", paths, replicas=3, precision="bf16", **kw).vectors,
                          embed(tiny_lit, "image", paths, precision="bf16", **kw).vectors, atol=1e-2)
    assert all(p.dtype == torch.float32 for p in tiny_lit.parameters())  # the parent's weights are untouched


def test_a_bad_file_in_a_replica_is_named_or_skipped(tiny_lit, colour_manifest, tmp_path):
    paths = _paths(colour_manifest)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    items = [str(colour_manifest.parent / p) for p in paths[:7]] + [str(bad)] + [str(colour_manifest.parent / p)
                                                                                for p in paths[7:12]]
    out = embed(tiny_lit, "image", items, batch_size=4, replicas=2, on_error="skip", progress=False)
    assert out.kept == [i for i in range(len(items)) if i != 7] and len(out.vectors) == len(items) - 1
    assert [s[0] for s in out.skipped] == [str(bad)]
    with pytest.raises(DataError, match="broken.png"):
        embed(tiny_lit, "image", items, batch_size=4, replicas=2, progress=False)


def test_bad_replica_counts_are_config_errors(tiny_lit, colour_manifest):
    with pytest.raises(ConfigError, match="replicas must be at least 1"):
        embed(tiny_lit, "image", _paths(colour_manifest), root=colour_manifest.parent, replicas=0, progress=False)


def test_cli_embed_with_replicas_writes_the_same_vectors(tiny_lit, colour_manifest, tmp_path):
    model = tiny_lit.save_pretrained(tmp_path / "model")
    for name, extra in (("one", []), ("two", ["--replicas", "2"])):
        assert main(["embed", "--model", str(model), "--data", str(colour_manifest), "--out", str(tmp_path / name),
                     "--batch-size", "4", "--no-progress", *extra]) == 0
    one, two = (np.load(tmp_path / n / "vectors.npy") for n in ("one", "two"))
    assert one.shape == two.shape and np.allclose(one, two, atol=1e-6)
    assert os.path.getsize(tmp_path / "one" / "items.json") == os.path.getsize(tmp_path / "two" / "items.json")
