"""The world preview: contact sheet PNG, GIF of clips, clip + spectrogram strip."""

from __future__ import annotations

import pytest
from PIL import Image

from xmodal.experiments.preview import write_preview
from xmodal.experiments.world import WorldConfig, generate_world
from xmodal.errors import DataError

TINY = WorldConfig(colours=("red", "green", "blue"), shapes=("circle", "square", "star"), image_size=32,
                   images_train=2, images_val=1, images_test=1, video_frames=6, video_fps=6, video_size=32,
                   clips_train=1, clips_val=0, clips_test=1, audio_sample_rate=8000)


def test_preview_writes_png_and_gif(tmp_path):
    root = generate_world(tmp_path / "w", TINY, progress=False)
    paths = write_preview(root)
    assert [p.name for p in paths] == ["contact_sheet.png", "clips.gif", "clip_strip.png"]
    assert all(p.parent == root / "preview" and p.stat().st_size > 1000 for p in paths)
    with Image.open(paths[0]) as sheet:
        assert sheet.format == "PNG" and min(sheet.size) > 300
    with Image.open(paths[1]) as gif:
        assert gif.format == "GIF" and gif.n_frames == 6 and abs(gif.info["duration"] - 1000 / 6) <= 10
    other = write_preview(root, tmp_path / "elsewhere")
    assert all(p.parent == tmp_path / "elsewhere" and p.is_file() for p in other)


def test_preview_of_a_folder_that_is_not_a_world(tmp_path):
    with pytest.raises(DataError, match="world.json"):
        write_preview(tmp_path)
