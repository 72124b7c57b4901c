"""The web app: search API, media serving confined to indexed files, upload limits, concurrency."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")


@pytest.fixture
def client(built_index):
    from fastapi.testclient import TestClient

    from xmodal.serve import ServeConfig, create_app

    return TestClient(create_app(built_index, ServeConfig(max_upload_bytes=200_000)), base_url="http://localhost")


def test_page_and_text_search(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text
    body = client.get("/api/search", params={"q": "a red circle", "k": 5}).json()
    assert len(body["results"]) == 5
    videos = client.get("/api/search", params={"q": "a red circle", "k": 50, "modality": "video"}).json()["results"]
    assert {r["modality"] for r in videos} == {"video"}
    for r in body["results"]:
        assert client.get(r["url"]).status_code == 200
        if "thumb" in r:
            thumb = client.get(r["thumb"])
            assert thumb.status_code == 200 and thumb.content[:4] == b"\x89PNG"
    assert client.get("/api/search", params={"q": "x", "modality": "smell"}).status_code == 400


def test_upload_query_and_oversize_refused(client, media):
    img = sorted((media / "images").iterdir())[0]
    res = client.post("/api/search/file", params={"k": 3, "modality": "image"},
                      files={"file": (img.name, img.read_bytes(), "image/png")})
    assert res.status_code == 200 and res.json()["results"][0]["name"] == img.name
    big = client.post("/api/search/file", files={"file": ("big.png", b"\0" * 300_000, "image/png")})
    assert big.status_code == 413
    odd = client.post("/api/search/file", files={"file": ("x.exe", b"MZ", "application/octet-stream")})
    assert odd.status_code == 415
    bad = client.post("/api/search/file", files={"file": ("bad.png", b"not an image", "image/png")})
    assert bad.status_code == 400


def test_path_traversal_and_unindexed_files_are_404(client, media, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes((sorted((media / "images").iterdir())[0]).read_bytes())
    (media / "images" / "unindexed.png").write_bytes(secret.read_bytes())  # inside the root, not indexed
    os.symlink(secret, media / "images" / "link.png")  # a symlink escaping the root
    ok = client.get("/api/search", params={"q": "a red circle", "k": 1}).json()["results"][0]["url"]
    assert client.get(ok).status_code == 200
    root = ok.split("/")[2]
    attempts = [f"/media/{root}/../secret.png", f"/media/{root}/..%2Fsecret.png", f"/media/{root}/%2e%2e/secret.png",
                f"/media/{root}/images/..%2F..%2Fsecret.png", f"/media/{root}/{secret}", f"/media/{root}//etc/passwd",
                f"/media/{root}/images/unindexed.png", f"/media/{root}/images/link.png", "/media/7/images/x.png",
                f"/thumb/{root}/..%2F..%2Fsecret.png", f"/media/{root}/%00", "/media/-1/etc/passwd"]
    for url in attempts:
        assert client.get(url).status_code in (403, 404), url


def test_concurrent_queries_stay_responsive(live_server):
    import httpx

    def query(i: int) -> tuple[int, int]:
        res = httpx.get(f"{live_server}/api/search", params={"q": f"a shape number {i}", "k": 5}, timeout=30)
        return res.status_code, len(res.json()["results"])

    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(query, range(24)))
    assert out == [(200, 5)] * 24
    assert httpx.get(f"{live_server}/api/stats", timeout=5).json()["count"] == 14
