"""Time series / sensor streams (accelerometers, EEG, any multichannel signal) from CSV or .npy.

A stream is ``[T]`` or ``[T, channels]`` (time first): a ``.npy`` array (loaded without pickle) or a
CSV/TSV of numbers with an optional header line. ``load`` cuts or zero-pads it to ``spec.length``
steps and returns float32 ``[channels, length]``, z-scored per channel when ``spec.normalize``;
``collate`` stacks samples into ``{"series_values": [B, channels, length]}``. NaN or infinite values,
an empty stream or the wrong channel count are a DataError naming the file (and the row of a CSV).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xmodal.errors import ConfigError, DataError
from xmodal.modalities.base import MODALITIES
from xmodal.modalities.image import check_file

EXTENSIONS = (".npy", ".csv")


@dataclass
class SeriesSpec:
    channels: int = 0  # channels the tower expects; 0 = accept any (all files must then agree)
    length: int = 128  # time steps per sample: longer streams are cut, shorter zero-padded
    normalize: bool = True  # z-score each channel of each stream (robust to sensor gain/offset)


def _read_csv(path: Path) -> np.ndarray:
    values: list[list[float]] = []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            for line_no, row in enumerate(csv.reader(fh, delimiter=delimiter), start=1):
                if not row or not any(c.strip() for c in row):
                    continue
                try:
                    values.append([float(c) for c in row])
                except ValueError:
                    if line_no == 1 and not values:  # a header line
                        continue
                    raise DataError(f"{path}:{line_no}", f"not a number in {row[:6]}") from None
                if len(values[-1]) != len(values[0]):
                    raise DataError(f"{path}:{line_no}", f"{len(values[-1])} values but the first row has {len(values[0])}")
    except UnicodeDecodeError:
        raise DataError(path, "not a UTF-8 text CSV") from None
    return np.asarray(values, dtype=np.float64).reshape(len(values), len(values[0]) if values else 0)


def read_series(path: str | Path) -> np.ndarray:
    """The raw stream ``[T, channels]`` (float64) of a ``.npy`` or CSV file; DataError if bad."""
    path = check_file(path)
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(path, f"unreadable .npy ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        if data.dtype.kind not in "biuf":
            raise DataError(path, f"array of {data.dtype} is not numeric")
        data = np.asarray(data, dtype=np.float64)
    else:
        data = _read_csv(path)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2:
        raise DataError(path, f"expected [time] or [time, channels], got shape {tuple(data.shape)}")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise DataError(path, "empty stream (no samples)")
    bad = ~np.isfinite(data)
    if bad.any():
        t, c = np.argwhere(bad)[0]
        raise DataError(path, f"NaN or infinite value at step {t}, channel {c} ({int(bad.sum())} in all)")
    return data


class SeriesModality:
    """Multichannel time series from ``.npy`` or CSV files."""

    name = "series"
    extensions = EXTENSIONS
    spec_cls = SeriesSpec
    is_file = True
    frames_of = None
    visual = False

    def load(self, item: str | Path, spec: SeriesSpec) -> torch.Tensor:
        """A stream file -> float32 ``[channels, spec.length]``."""
        if spec.length < 1:
            raise ConfigError(f"series spec length must be >= 1, got {spec.length}")
        data = read_series(item)
        if spec.channels and data.shape[1] != spec.channels:
            raise DataError(item, f"{data.shape[1]} channels but the model expects {spec.channels}")
        if spec.normalize:
            data = (data - data.mean(0)) / (data.std(0) + 1e-6)
        data = data[: spec.length]
        if len(data) < spec.length:
            data = np.pad(data, ((0, spec.length - len(data)), (0, 0)))
        return torch.from_numpy(np.ascontiguousarray(data.T, dtype=np.float32))

    def collate(self, items: list[torch.Tensor], spec: Any = None) -> dict[str, torch.Tensor]:
        """Stack ``[channels, length]`` samples into ``{"series_values": [B, channels, length]}``."""
        if not items:
            raise ValueError("cannot collate an empty list of series")
        shapes = {tuple(x.shape) for x in items}
        if len(shapes) > 1:
            raise ConfigError(f"series of different shapes {sorted(shapes)} in one batch: set SeriesSpec.channels")
        return {"series_values": torch.stack(items)}

    def duration(self, path: Path) -> None:
        return None  # steps carry no sample rate

    def still(self, path: Path) -> None:
        return None  # not shown as a picture


MODALITIES.register("series", SeriesModality())
