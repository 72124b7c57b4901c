"""Every registered modality honours the Modality contract (name, extensions, load, collate, errors)."""

from __future__ import annotations

import pytest
import torch

from xmodal.errors import DataError
from xmodal.modalities import MODALITIES, Modality, modality_of


def test_builtin_modalities_registered() -> None:
    assert {"image", "video", "audio", "text"} <= set(MODALITIES.names())


@pytest.mark.parametrize("name", MODALITIES.names())
def test_contract(name: str, modality_sample) -> None:
    mod = MODALITIES.get(name)
    assert isinstance(mod, Modality)
    assert mod.name == name
    assert mod.extensions and all(e.startswith(".") and e == e.lower() for e in mod.extensions)
    item, spec, bad = modality_sample(name)
    samples = [mod.load(item, spec), mod.load(item, spec)]
    batch = mod.collate(samples, spec)
    assert isinstance(batch, dict) and batch
    for key, value in batch.items():
        assert isinstance(value, torch.Tensor), key
        assert value.shape[0] == 2, key
    with pytest.raises(DataError):
        mod.load(bad, spec)


def test_extensions_do_not_overlap() -> None:
    seen: dict[str, str] = {}
    for name in MODALITIES.names():
        for ext in MODALITIES.get(name).extensions:
            assert ext not in seen, f"{ext} claimed by {seen.get(ext)} and {name}"
            seen[ext] = name


def test_modality_of() -> None:
    assert modality_of("a/b.PNG") == "image"
    assert modality_of("clip.mp4") == "video"
    assert modality_of("x.gif") == "image"
    assert modality_of("s.flac") == "audio"
    with pytest.raises(DataError, match="unknown file type"):
        modality_of("model.bin")
