"""MediaDataset with optional modalities: an empty cell or a missing file is an absent input with a
presence mask, not an error; a corrupt file is still an error (or a counted skip)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.data.manifest import MediaDataset
from xmodal.errors import ConfigError, DataError
from xmodal.modalities import AudioSpec
from xmodal.modalities.audio import write_wav
from xmodal.modalities.series import SeriesSpec

SPEC = AudioSpec(sample_rate=8000, n_mels=8, n_fft=64, hop_length=32, max_seconds=0.1)


@pytest.fixture
def rows(tmp_path):
    write_wav(tmp_path / "a.wav", np.zeros(800, np.float32) + 0.1, 8000)
    np.save(tmp_path / "s.npy", np.ones((10, 2)))
    (tmp_path / "bad.wav").write_bytes(b"RIFF junk")
    return tmp_path, [
        {"audio": "a.wav", "series": "s.npy", "label": "x"},
        {"audio": "", "series": "s.npy", "label": "y"},
        {"audio": "a.wav", "series": "gone.npy", "label": "x"},
        {"audio": "bad.wav", "series": "s.npy", "label": "y"},
    ]


def test_absent_inputs_get_a_presence_mask(rows) -> None:
    root, data = rows
    specs = {"audio": SPEC, "series": SeriesSpec(channels=2, length=8)}
    ds = MediaDataset(data[:3], {"audio": "audio", "series": "series"}, specs, root=root, optional=["audio", "series"])
    batch = ds.collate_fn([ds[i] for i in range(3)])
    assert batch["present"]["audio"].tolist() == [True, False, True]
    assert batch["present"]["series"].tolist() == [True, True, False]
    assert batch["audio"]["input_features"].shape[0] == 3
    assert torch.equal(batch["audio"]["input_features"][1], torch.zeros_like(batch["audio"]["input_features"][0]))
    only = ds.collate_fn([ds[1]])
    assert only["audio"] is None and only["present"]["audio"].tolist() == [False]


def test_corrupt_files_still_raise_or_count(rows) -> None:
    root, data = rows
    ds = MediaDataset(data, {"audio": "audio"}, {"audio": SPEC}, root=root, optional=["audio"])
    with pytest.raises(DataError, match="bad.wav"):
        ds[3]
    ds = MediaDataset(data, {"audio": "audio"}, {"audio": SPEC}, root=root, optional=["audio"], on_error="skip")
    assert ds[3] is None and len(ds.skipped) == 1


def test_without_optional_an_empty_cell_is_an_error(rows) -> None:
    root, data = rows
    ds = MediaDataset(data, {"audio": "audio"}, {"audio": SPEC}, root=root)
    with pytest.raises(DataError, match="row 1: no value in column 'audio'"):
        ds[1]
    assert "present" not in ds.collate_fn([ds[0]])
    with pytest.raises(ConfigError, match="not among the columns"):
        MediaDataset(data, {"audio": "audio"}, {"audio": SPEC}, root=root, optional=["image"])
