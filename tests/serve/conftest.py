"""Serve tests reuse the index fixtures (tiny world media, tiny models) and add an index and a live server."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("_index_fixtures", Path(__file__).parents[1] / "index" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
tiny_world_src, media, audio_model = _fixtures.tiny_world_src, _fixtures.media, _fixtures.audio_model


@pytest.fixture
def built_index(media, audio_model, tmp_path):
    from xmodal.index import BuildConfig, Index

    return Index.build([media], model=audio_model, out=tmp_path / "ix", config=BuildConfig(progress=False))


@pytest.fixture
def live_server(built_index):
    """The app on a free 127.0.0.1 port in a background thread; yields its base URL."""
    import uvicorn

    from xmodal.serve import ServeConfig, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(built_index, ServeConfig(max_upload_bytes=200_000))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
