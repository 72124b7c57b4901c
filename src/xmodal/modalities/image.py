"""Images (Pillow): decode, convert to RGB, resize the shorter side, centre crop, normalise.

``load(path, spec)`` gives one ``[3, size, size]`` float tensor; ``collate`` stacks them into
``{"pixel_values": [B, 3, size, size]}``. :func:`preprocess_image` does the same for an in-memory
``PIL.Image`` (video frames, generated images).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from xmodal.errors import ConfigError, DataError
from xmodal.modalities.base import MODALITIES, ImageSpec, check_file_size, check_picture

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
BACKGROUND = (255, 255, 255)  # transparent pixels are composited over white


def resample_filter(name: str) -> Image.Resampling:
    """The Pillow filter called ``name`` ("bicubic", "bilinear", "nearest", "lanczos", ...)."""
    try:
        return Image.Resampling[name.upper()]
    except KeyError:
        known = ", ".join(r.name.lower() for r in Image.Resampling)
        raise ConfigError(f"unknown resample filter {name!r}; known: {known}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB: grey and palette expanded, alpha composited over white, 16-bit and
    float greys rescaled to 0..255."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        peak = arr.max(initial=0.0)
        top = 1.0 if img.mode == "F" and peak <= 1.0 else (255.0 if peak <= 255 else 65535.0)
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        back = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(back, rgba).convert("RGB")
    return img.convert("RGB")


def resize_crop(img: Image.Image, size: int, resample: str = "bicubic") -> Image.Image:
    """Resize so the shorter side is ``size`` pixels (aspect kept), then centre crop ``size x size``."""
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), resample_filter(resample))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((left, top, left + size, top + size))


def preprocess_image(img: Image.Image, spec: ImageSpec, source: str | Path = "<image>") -> torch.Tensor:
    """One ``PIL.Image`` (any mode) -> float32 ``[3, spec.size, spec.size]``, normalised with
    ``spec.mean`` / ``spec.std`` after scaling pixels to [0, 1]. A DataError naming ``source`` if the
    picture breaks the decode limits (too many pixels, too elongated to resize)."""
    if spec.size < 1:
        raise ConfigError(f"image size must be positive, got {spec.size}")
    check_picture(source, *img.size)
    pixels = np.asarray(resize_crop(to_rgb(img), spec.size, spec.resample))
    table = _normalise_table(tuple(spec.mean), tuple(spec.std))
    out = np.empty((3,) + pixels.shape[:2], dtype=np.float32)
    for c in range(3):  # one table look-up per pixel: the same float32 values as (x / 255 - mean) / std
        np.take(table[c], pixels[:, :, c], out=out[c])
    return torch.from_numpy(out)


@functools.lru_cache(maxsize=16)
def _normalise_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``[3, 256]`` float32: ``(v / 255 - mean[c]) / std[c]`` for every 8-bit value ``v`` of channel ``c``,
    computed with the float32 operations of a per-pixel normalisation (so the values are identical)."""
    x = torch.from_numpy(np.arange(256, dtype=np.float32) / 255.0).view(1, 256)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1)
    table = ((x - mean_t) / std_t).numpy()
    table.setflags(write=False)
    return table


def check_file(path: str | Path) -> Path:
    """``path`` as a Path; a DataError if it does not exist, is not a file or cannot be a path at all
    (a NUL byte, a name too long for the file system)."""
    if not isinstance(path, (str, Path)):
        raise DataError(f"{path!r}", f"not a file path (a {type(path).__name__})")
    path = Path(path)
    shown = shown_path(path)
    if "\x00" in str(path):
        raise DataError(shown, "not a usable path (it holds a NUL byte)")
    try:
        exists, is_file = path.exists(), path.is_file()
    except OSError as exc:
        raise DataError(shown, f"not a usable path ({exc.strerror or type(exc).__name__})") from None
    if not exists:
        raise DataError(shown, "no such file")
    if not is_file:
        raise DataError(shown, "not a file")
    return path


def shown_path(path: str | Path, limit: int = 200) -> str:
    """``path`` as it is printed in an error: NUL bytes escaped, the middle of a very long path elided."""
    text = str(path).replace("\x00", "\\x00")
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]}"


def read_image(path: str | Path) -> Image.Image:
    """Decode the image file ``path`` fully (EXIF orientation applied); a DataError if unreadable, if
    its header breaks the decode limits (checked before any pixel is decoded) or if float pixels are
    NaN or infinite."""
    path = check_file(path)
    check_file_size(path)
    try:
        with Image.open(path) as img:
            check_picture(path, *img.size)
            img.load()
            _check_finite(path, img)
            return ImageOps.exif_transpose(img)
    except UnidentifiedImageError:
        raise DataError(path, "unreadable image (not a known image format or corrupt)") from None
    except Image.DecompressionBombError as exc:
        raise DataError(path, f"image too large ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DataError(path, f"corrupt or truncated image ({_one_line(exc)})") from None


def _check_finite(path: Path, img: Image.Image) -> None:
    if img.mode == "F" and not np.isfinite(np.asarray(img)).all():
        raise DataError(path, "image contains NaN or infinite pixel values")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class ImageModality:
    """Still images read with Pillow."""

    name = "image"
    extensions = EXTENSIONS
    spec_cls = ImageSpec
    is_file = True
    frames_of = None
    visual = True

    def load(self, item: str | Path | Image.Image, spec: ImageSpec) -> torch.Tensor:
        """A file path (or an in-memory image) -> ``[3, size, size]``."""
        if isinstance(item, Image.Image):
            return preprocess_image(item, spec)
        return preprocess_image(read_image(item), spec, item)

    def collate(self, items: list[torch.Tensor], spec: Any = None) -> dict[str, torch.Tensor]:
        """Stack ``[3, H, W]`` samples into ``{"pixel_values": [B, 3, H, W]}``."""
        if not items:
            raise ValueError("cannot collate an empty list of images")
        return {"pixel_values": torch.stack(items)}

    def duration(self, path: Path) -> float | None:
        return None  # a still

    def still(self, path: Path) -> Image.Image:
        return to_rgb(read_image(path))


MODALITIES.register("image", ImageModality())
