"""A small web app over an :class:`~xmodal.index.Index`: a search page, a JSON API and the media.

Routes::

    GET  /                         the search page (static/index.html)
    GET  /api/search?q=&k=&modality=   text query -> {"results": [...]}
    POST /api/search/file?k=&modality=  query by an uploaded file (multipart field "file")
    GET  /api/stats                counts and index parameters
    GET  /media/{root}/{rel}       an indexed file: root number + path relative to that root
    GET  /thumb/{root}/{rel}       a small PNG of an indexed image or of a video's first frame

Only files that are rows of the index and lie inside their indexed root are served; anything else,
including ``..`` and symlink escapes, is a 404. Uploads over ``max_upload_bytes`` are refused (413)
before they are read in full. Handlers are plain functions, run by the server's thread pool, so one
slow query does not block the others; queries through the model are serialised by the index.
"""

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from xmodal.errors import ConfigError, XmodalError

STATIC = Path(__file__).parent / "static"
UPLOAD_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".mp4", ".webm", ".mkv", ".avi", ".mov",
                   ".wav", ".flac", ".ogg", ".mp3"}


@dataclass
class ServeConfig:
    max_upload_bytes: int = 20_000_000  # largest query upload accepted, bytes (larger: 413)
    max_k: int = 100  # most results one query may ask for
    thumb_size: int = 160  # longest side of thumbnails, pixels


def _fastapi() -> Any:
    try:
        import fastapi
    except ImportError:
        raise ConfigError('xmodal serve needs fastapi and uvicorn: pip install -e ".[index]"') from None
    return fastapi


def create_app(index: Any, cfg: ServeConfig | None = None) -> Any:
    """The FastAPI app serving ``index``."""
    fa = _fastapi()
    from fastapi.responses import HTMLResponse, JSONResponse

    cfg = cfg or ServeConfig()
    app = fa.FastAPI(title="xmodal search", docs_url=None, redoc_url=None, openapi_url=None)
    roots = [Path(r) for r in index.roots()]

    def results(query: Any, k: int, modality: list[str] | None, query_modality: str | None = None) -> Any:
        try:
            hits = index.search(query, k=max(1, min(k, cfg.max_k)), modality=modality or None,
                                query_modality=query_modality)
        except XmodalError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return {"results": [_hit_json(h, roots) for h in hits]}

    @app.get("/", response_class=HTMLResponse)
    def page() -> Any:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/api/stats")
    def stats() -> Any:
        return index.stats()

    _search_routes(app, results, cfg)
    _media_routes(app, index, roots, cfg)
    return app


def _search_routes(app: Any, results: Any, cfg: ServeConfig) -> None:
    fa = _fastapi()
    from fastapi.responses import JSONResponse

    @app.get("/api/search")
    def search_text(q: str, k: int = 12, modality: list[str] | None = fa.Query(None)) -> Any:
        if not q.strip():
            return JSONResponse({"error": "empty query"}, status_code=400)
        return results(q, k, modality)

    @app.post("/api/search/file")
    async def search_file(request: fa.Request, k: int = 12, modality: list[str] | None = fa.Query(None)) -> Any:
        size = request.headers.get("content-length")
        if size is None or not size.isdigit() or int(size) > cfg.max_upload_bytes + 4096:
            return _too_large(cfg) if size and size.isdigit() else JSONResponse(
                {"error": "uploads need a Content-Length"}, status_code=411)
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None or not hasattr(upload, "read"):
            return JSONResponse({"error": "no file in field 'file'"}, status_code=400)
        suffix = Path(upload.filename or "").suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            return JSONResponse({"error": f"unsupported file type {suffix!r}"}, status_code=415)
        data = await upload.read(cfg.max_upload_bytes + 1)
        if len(data) > cfg.max_upload_bytes:
            return _too_large(cfg)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_search_upload, results, data, suffix, k, modality)


def _media_routes(app: Any, index: Any, roots: list[Path], cfg: ServeConfig) -> None:
    from fastapi.responses import FileResponse, Response

    @app.get("/media/{root}/{rel:path}")
    def media(root: str, rel: str) -> Any:
        path = _resolve(index, roots, root, rel)
        if path is None:
            return Response(status_code=404)
        return FileResponse(path)

    @app.get("/thumb/{root}/{rel:path}")
    def thumb(root: str, rel: str) -> Any:
        path = _resolve(index, roots, root, rel)
        png = _thumbnail(path, cfg.thumb_size) if path is not None else None
        if png is None:
            return Response(status_code=404)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


def _too_large(cfg: ServeConfig) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": f"upload larger than {cfg.max_upload_bytes} bytes"}, status_code=413)


def _search_upload(results: Any, data: bytes, suffix: str, k: int, modality: list[str] | None) -> Any:
    fd, name = tempfile.mkstemp(suffix=suffix, prefix="xmodal-query-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return results(Path(name), k, modality)
    finally:
        os.unlink(name)


def _resolve(index: Any, roots: list[Path], root: str, rel: str) -> "Path | None":
    """The indexed file ``roots[root]/rel``, or None if it is not one (traversal, unknown, missing)."""
    if not root.isdigit() or not int(root) < len(roots) or "\x00" in rel:
        return None
    base = roots[int(root)]
    try:
        path = (base / rel).resolve()
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(base) or not path.is_file():
        return None
    row = index.store.row_by_path(str(path))
    if row is None or Path(row.root) != base:
        return None
    return path


def _thumbnail(path: Path, size: int) -> "bytes | None":
    from PIL import Image

    from xmodal.modalities import MODALITIES, modality_of

    try:
        img = MODALITIES.get(modality_of(str(path))).still(path)
    except Exception:  # noqa: BLE001 - an unreadable file has no thumbnail
        return None
    if img is None:
        return None
    scale = size / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _hit_json(hit: Any, roots: list[Path]) -> dict[str, Any]:
    from xmodal.modalities import MODALITIES

    root = roots.index(Path(hit.root)) if Path(hit.root) in roots else -1
    rel = quote(os.path.relpath(hit.path, hit.root))
    out = {"path": hit.path, "name": Path(hit.path).name, "modality": hit.modality, "score": round(hit.score, 4),
           "duration": hit.duration, "url": f"/media/{root}/{rel}"}
    if hit.modality in MODALITIES and MODALITIES.get(hit.modality).visual:
        out["thumb"] = f"/thumb/{root}/{rel}"
    return out


def run_server(app: Any, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` with uvicorn (blocking)."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError('xmodal serve needs uvicorn: pip install -e ".[index]"') from None
    uvicorn.run(app, host=host, port=port, log_level="warning")
