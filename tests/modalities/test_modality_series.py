"""Time-series / sensor streams: CSV and .npy, multichannel, cut/pad, normalisation, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.errors import DataError
from xmodal.modalities import MODALITIES, modality_of
from xmodal.modalities.series import SeriesSpec

SERIES = MODALITIES.get("series")


def test_npy_and_csv_give_the_same_stream(tmp_path) -> None:
    data = np.random.default_rng(0).normal(2.0, 3.0, size=(50, 2))
    np.save(tmp_path / "a.npy", data)
    (tmp_path / "a.csv").write_text("ax,ay\n" + "\n".join(f"{x},{y}" for x, y in data) + "\n")
    spec = SeriesSpec(channels=2, length=64)
    a, b = SERIES.load(tmp_path / "a.npy", spec), SERIES.load(tmp_path / "a.csv", spec)
    assert a.shape == (2, 64) and a.dtype == torch.float32
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a[:, :50].mean(1), torch.zeros(2), atol=1e-4)  # z-scored per channel
    assert torch.equal(a[:, 50:], torch.zeros(2, 14))  # zero-padded
    assert SERIES.load(tmp_path / "a.npy", SeriesSpec(length=10)).shape == (2, 10)  # cut
    assert modality_of("walk.npy") == "series"


def test_one_channel_stream(tmp_path) -> None:
    np.save(tmp_path / "x.npy", np.arange(20.0))
    x = SERIES.load(tmp_path / "x.npy", SeriesSpec(length=20, normalize=False))
    assert x.shape == (1, 20) and float(x[0, 5]) == 5.0
    assert SERIES.collate([x, x])["series_values"].shape == (2, 1, 20)


@pytest.mark.parametrize("content, match", [
    ("1,2\n3,nan\n", r"NaN or infinite value at step 1, channel 1"),
    ("", "empty stream"),
    ("1,2\n3\n", r"bad.csv:2: 1 values but the first row has 2"),
    ("t,v\n1,2\nx,3\n", r"bad.csv:3: not a number"),
])
def test_bad_csv_streams_name_the_file(tmp_path, content, match) -> None:
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(DataError, match=match) as info:
        SERIES.load(tmp_path / "bad.csv", SeriesSpec())
    assert "bad.csv" in str(info.value)


def test_bad_npy_streams(tmp_path) -> None:
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(DataError, match="nan.npy: NaN"):
        SERIES.load(tmp_path / "nan.npy", SeriesSpec())
    np.save(tmp_path / "c3.npy", np.zeros((5, 3)))
    with pytest.raises(DataError, match="3 channels but the model expects 2"):
        SERIES.load(tmp_path / "c3.npy", SeriesSpec(channels=2))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="unreadable .npy"):
        SERIES.load(tmp_path / "junk.npy", SeriesSpec())
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(DataError, match="shape"):
        SERIES.load(tmp_path / "cube.npy", SeriesSpec())
