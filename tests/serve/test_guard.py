"""The server answers only its own host names and pages, serves only indexed files, and no answer
contains an absolute path."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("fastapi")


def _client(index, **cfg):
    from fastapi.testclient import TestClient

    from xmodal.serve import ServeConfig, create_app

    return TestClient(create_app(index, ServeConfig(max_upload_bytes=200_000, **cfg)), base_url="http://localhost")


@pytest.fixture
def client(built_index):
    return _client(built_index)


def _upload(client, name="q.png", data=b"not an image", **kw):
    return client.post("/api/search/file", params={"k": 2}, files={"file": (name, data, "image/png")}, **kw)


def test_foreign_host_and_cross_origin_requests_are_403(client, built_index, media):
    img = sorted((media / "images").iterdir())[0].read_bytes()
    assert client.get("/api/stats").status_code == 200
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "LOCALHOST:1"):
        assert client.get("/api/stats", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example.com", "evil.example.com:8000", "127.0.0.1.evil.example", "localhost.evil", ""):
        assert client.get("/api/stats", headers={"Host": host}).status_code == 403, host
    assert client.get("/", headers={"Host": "evil.example.com"}).status_code == 403
    assert _upload(client, data=img, headers={"Origin": "http://evil.example.com"}).status_code == 403
    assert _upload(client, data=img, headers={"Origin": "null"}).status_code == 403
    assert client.get("/api/search", params={"q": "a"}, headers={"Origin": "https://evil.example.com"}).status_code == 403
    assert _upload(client, data=img, headers={"Origin": "http://localhost:8000"}).status_code == 200
    assert _upload(client, data=img).status_code == 200  # no Origin: not a browser page (curl)
    lan = _client(built_index, allow_hosts=["Search.Lan"])
    assert lan.get("/api/stats", headers={"Host": "search.lan:8000"}).status_code == 200
    assert _upload(lan, data=img, headers={"Host": "search.lan", "Origin": "http://search.lan:8000"}).status_code == 200
    assert lan.get("/api/stats", headers={"Host": "other.lan"}).status_code == 403


def test_no_answer_contains_an_absolute_path(client, media, tmp_path):
    img = sorted((media / "images").iterdir())[0]
    hit = client.get("/api/search", params={"q": "a red circle", "k": 20}).json()["results"]
    thumb = next(h["thumb"] for h in hit if "thumb" in h)
    answers = [client.get("/"), client.get("/api/stats"), client.get("/api/search", params={"q": "x", "k": 20}),
               client.get("/api/search", params={"q": "x", "modality": "smell"}), client.get("/api/search", params={"q": " "}),
               _upload(client), _upload(client, data=img.read_bytes()), _upload(client, name="x.exe"),
               _upload(client, data=b"\0" * 300_000), client.get(hit[0]["url"]), client.get(thumb),
               client.get("/media/0/nothing.png"), client.get("/api/stats", headers={"Host": "evil.example.com"})]
    assert _upload(client).status_code == 400 and "q.png" in _upload(client).json()["error"]
    secrets = {str(tmp_path), str(media), str(media.resolve()), tempfile.gettempdir() + "/", os.path.expanduser("~")}
    for res in answers:
        text = str(res.headers) + (res.text if "image" not in res.headers.get("content-type", "") else "")
        leaked = [s for s in secrets if s in text]
        assert not leaked, (res.request.url, leaked)
    assert all(not r["path"].startswith("/") and r["id"] >= 1 for r in hit)
    assert set(answers[1].json()) == {"count", "roots", "modalities", "text_batches"}


def test_deep_and_hostile_paths_are_404_not_500(client):
    deep = "a/" * 5000 + "x.png"
    for url in (f"/media/0/{deep}", f"/thumb/0/{deep}", f"/{deep}", f"/media/0/{'..%2F' * 5000}etc/passwd",
                f"/media/0/{'x' * 300}.png", f"/media/99999999999999999999999/{deep}"):
        assert client.get(url).status_code in (400, 404), url[:40]


def test_manifest_index_serves_its_files_only_not_their_siblings(media, audio_model, tmp_path):
    from xmodal.index import BuildConfig, Index

    images = sorted((media / "images").iterdir())
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(images[1], outside / "secret.png")
    (media / "list.csv").write_text(f"path\nimages/{images[0].name}\n../outside/secret.png\n")
    idx = Index.build([media / "list.csv"], model=audio_model, out=tmp_path / "ix", config=BuildConfig(progress=False))
    client = _client(idx)
    hits = client.get("/api/search", params={"q": "a", "k": 10}).json()["results"]
    assert [h["name"] for h in hits] == [images[0].name]
    assert client.get(hits[0]["url"]).status_code == 200
    for url in (f"/media/0/images/{images[1].name}", "/media/0/../outside/secret.png", "/media/0/..%2Foutside%2Fsecret.png",
                "/media/1/secret.png", f"/media/0/{Path(images[0]).parent}/{images[0].name}"):
        assert client.get(url).status_code in (400, 404), url
