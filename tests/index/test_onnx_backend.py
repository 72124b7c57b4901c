"""The ``onnx`` backend of an index: the model's encoders exported and run in onnxruntime, the same vectors
and hits as PyTorch (to 1e-4), through the library and ``xmodal index`` / ``xmodal search --backend onnx``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xmodal.cli.main import main
from xmodal.errors import ConfigError
from xmodal.exporters.runtime import OnnxEmbedder, with_backend
from xmodal.index import Index

pytest.importorskip("onnxruntime")


def test_onnx_index_has_the_torch_vectors_and_hits(media, audio_model, tmp_path):
    torch_ix = Index.build([media], model=audio_model, out=tmp_path / "t")
    onnx_ix = Index.build([media], model=audio_model, out=tmp_path / "o", backend="onnx")
    model = onnx_ix.model
    assert isinstance(model, OnnxEmbedder)
    assert model.backends == {"image": "onnx", "text": "onnx", "audio": "torch", "video": "onnx"}
    assert sorted(p.name for p in (tmp_path / "o" / "onnx").iterdir()) == ["image.onnx", "text.onnx", "video.onnx"]
    for modality in ("image", "video", "audio"):
        ids_t, vec_t = torch_ix.store.vectors(modality, torch_ix.embed_dim)
        ids_o, vec_o = onnx_ix.store.vectors(modality, onnx_ix.embed_dim)
        paths_t = [r.path for r in torch_ix.store.rows(ids_t).values()]
        assert paths_t == [r.path for r in onnx_ix.store.rows(ids_o).values()]
        assert np.abs(vec_t - vec_o).max() < 1e-4, modality
    query = "a red circle moving left"
    assert np.abs(torch_ix.query_vector(query) - onnx_ix.query_vector(query)).max() < 1e-4
    assert [h.path for h in torch_ix.search(query, k=5)] == [h.path for h in onnx_ix.search(query, k=5)]


def test_cli_index_and_search_with_the_onnx_backend(media, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "ix"
    assert main(["index", str(media), "--model", str(tiny_model_dir), "--out", str(out), "--backend", "onnx",
                 "--no-progress"]) == 0
    assert "embedded 11" in capsys.readouterr().out
    for backend in ("onnx", "torch"):
        assert main(["search", str(out), "a green square", "-k", "3", "--json", "--backend", backend]) == 0
        hits = json.loads(capsys.readouterr().out)
        assert len(hits) == 3
        if backend == "onnx":
            first = hits
    assert [h["path"] for h in hits] == [h["path"] for h in first]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(hits, first)) < 1e-4


def test_unknown_backend_is_a_config_error(tiny_lit, tmp_path):
    with pytest.raises(ConfigError, match="backend 'tensorrt' is not one of torch, onnx"):
        with_backend(tiny_lit, "tensorrt", tmp_path)
