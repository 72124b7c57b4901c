"""Image decoding and preprocessing with real files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from xmodal.errors import ConfigError, DataError
from xmodal.modalities import MODALITIES, ImageSpec
from xmodal.modalities.image import preprocess_image

IMAGE = MODALITIES.get("image")


def test_solid_colour_normalisation(tmp_path) -> None:
    Image.fromarray(np.full((10, 14, 3), (255, 0, 51), np.uint8)).save(tmp_path / "c.png")
    spec = ImageSpec(size=8, mean=(0.5, 0.25, 0.1), std=(0.5, 0.25, 0.2))
    x = IMAGE.load(tmp_path / "c.png", spec)
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
    expected = torch.tensor([(1.0 - 0.5) / 0.5, (0.0 - 0.25) / 0.25, (0.2 - 0.1) / 0.2])
    assert torch.allclose(x.mean((1, 2)), expected, atol=1e-5)
    assert torch.allclose(x, expected.view(3, 1, 1).expand_as(x), atol=1e-5)


@pytest.mark.parametrize("spec", [ImageSpec(size=24), ImageSpec(size=17, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))])
def test_table_normalisation_equals_per_pixel_arithmetic(spec: ImageSpec) -> None:
    """The look-up table gives exactly the float32 values of (pixels / 255 - mean) / std computed per pixel."""
    from xmodal.modalities.image import resize_crop

    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 31, 3), dtype=np.uint8))
    crop = resize_crop(img, spec.size, spec.resample)
    x = torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean, std = torch.tensor(spec.mean).view(3, 1, 1), torch.tensor(spec.std).view(3, 1, 1)
    out = preprocess_image(img, spec)
    assert out.is_contiguous() and out.dtype == torch.float32
    assert torch.equal(out, (x - mean) / std)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "LA", "I;16", "CMYK"])
def test_modes_become_rgb(tmp_path, mode: str) -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)).convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    img.save(tmp_path / f"x{suffix}")
    x = IMAGE.load(tmp_path / f"x{suffix}", ImageSpec(size=12))
    assert x.shape == (3, 12, 12) and torch.isfinite(x).all()


def test_transparent_pixels_over_white() -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    x = preprocess_image(img, ImageSpec(size=4, mean=(0, 0, 0), std=(1, 1, 1)))
    assert torch.allclose(x, torch.ones_like(x))


def test_odd_aspect_centre_crop() -> None:
    arr = np.zeros((10, 40, 3), np.uint8)
    arr[:, 18:22] = 255  # a white band in the middle of a wide image (crop keeps columns 15..24)
    x = preprocess_image(Image.fromarray(arr), ImageSpec(size=10, mean=(0, 0, 0), std=(1, 1, 1), resample="nearest"))
    assert x.shape == (3, 10, 10)
    assert x[:, :, 0].max() == 0 and x[:, :, -1].max() == 0 and x[:, :, 5].min() == 1
    tall = preprocess_image(Image.fromarray(np.zeros((50, 7, 3), np.uint8)), ImageSpec(size=5))
    assert tall.shape == (3, 5, 5)


def test_small_image_upscaled() -> None:
    assert preprocess_image(Image.new("RGB", (3, 2)), ImageSpec(size=9)).shape == (3, 9, 9)


def test_corrupt_and_missing_files(tmp_path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really" + bytes(range(200)))
    with pytest.raises(DataError, match="bad.png: unreadable image"):
        IMAGE.load(tmp_path / "bad.png", ImageSpec())
    good = tmp_path / "good.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(good)
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataError, match="cut.jpg"):
        IMAGE.load(tmp_path / "cut.jpg", ImageSpec())
    with pytest.raises(DataError, match="nope.png: no such file"):
        IMAGE.load(tmp_path / "nope.png", ImageSpec())
    with pytest.raises(DataError, match="not a file"):
        IMAGE.load(tmp_path, ImageSpec())


def test_collate_and_bad_filter(tmp_path) -> None:
    spec = ImageSpec(size=6)
    batch = IMAGE.collate([preprocess_image(Image.new("RGB", (8, 8)), spec)] * 3, spec)
    assert batch["pixel_values"].shape == (3, 3, 6, 6)
    with pytest.raises(ConfigError, match="resample"):
        preprocess_image(Image.new("RGB", (8, 9)), ImageSpec(size=6, resample="smooth"))
