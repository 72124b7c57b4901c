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
before they are read in full. Every request must name an allowed Host (the loopback names, plus
``allow_hosts``), and a request carrying an Origin must come from an allowed host too; anything else
is a 403, so a web page the user visits cannot drive the server (DNS rebinding, cross-origin POST).
Responses name files by their path relative to their indexed root and a root number, never by an
absolute path; error messages are stripped of folders. Handlers are plain functions run by the
server's thread pool; text queries of concurrent requests are embedded together
(:class:`~xmodal.serve.batch.TextBatcher`), so load is served in batches.
"""

import asyncio
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from xmodal.errors import ConfigError, XmodalError
from xmodal.serve.batch import TextBatcher
from xmodal.serve.guard import HostGuard, allowed_names, scrub

STATIC = Path(__file__).parent / "static"
UPLOAD_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".mp4", ".webm", ".mkv", ".avi", ".mov",
                   ".wav", ".flac", ".ogg", ".mp3"}
MAX_REL_CHARS = 4096  # a longer media path is a 404 without touching the file system


@dataclass
class ServeConfig:
    max_upload_bytes: int = 20_000_000  # largest query upload accepted, bytes (larger: 413)
    max_k: int = 100  # most results one query may ask for
    thumb_size: int = 160  # longest side of thumbnails, pixels
    allow_hosts: list[str] = field(default_factory=list)  # Host names accepted besides localhost/127.0.0.1/[::1]
    batch_wait_ms: float = 20.0  # a text batch stays open while queries arrive less than this apart (10x at most)
    max_batch: int = 64  # most text queries embedded in one forward pass


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
    app.add_middleware(HostGuard, allowed=allowed_names(cfg.allow_hosts))
    roots = [Path(r) for r in index.roots()]
    batcher = TextBatcher(index.text_vectors, cfg.batch_wait_ms, cfg.max_batch)
    app.state.text_batcher = batcher
    app.router.on_shutdown.append(batcher.close)

    def results(query: Any, k: int, modality: list[str] | None, query_modality: str | None = None,
                names: dict[str, str] | None = None) -> Any:
        """Search results (query: a vector or an uploaded file) as JSON; a user error is a 400 whose
        message names no folder."""
        try:
            hits = index.search(query, k=max(1, min(k, cfg.max_k)), modality=modality or None,
                                query_modality=query_modality)
        except XmodalError as exc:
            return _error(exc, names)
        return JSONResponse({"results": [_hit_json(h, roots) for h in hits]})

    @app.get("/", response_class=HTMLResponse)
    def page() -> Any:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/api/stats")
    def stats() -> Any:  # counts and index parameters; no model path, folder or roots
        full = index.stats()
        sizes = batcher.batches
        return {"count": full["count"], "roots": len(roots), "modalities": full["modalities"],
                "text_batches": {"recent": len(sizes), "mean_size": round(sum(sizes) / max(1, len(sizes)), 2)}}

    _search_routes(app, results, batcher, cfg)
    _media_routes(app, index, roots, cfg)
    return app


def _error(exc: XmodalError, names: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": scrub(str(exc), names)}, status_code=400)


def _search_routes(app: Any, results: Any, batcher: TextBatcher, cfg: ServeConfig) -> None:
    fa = _fastapi()
    from fastapi.responses import JSONResponse

    @app.get("/api/search")
    async def search_text(q: str, k: int = 12, modality: list[str] | None = fa.Query(None)) -> Any:
        """Awaits its vector from the text batcher (no thread held while waiting), then searches."""
        if not q.strip():
            return JSONResponse({"error": "empty query"}, status_code=400)
        try:
            _check_modalities(modality)
            vector = await asyncio.wrap_future(batcher.submit(q))
        except XmodalError as exc:
            return _error(exc)
        return results(vector, k, modality)

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

        return await run_in_threadpool(_search_upload, results, data, suffix, k, modality, upload.filename or "")


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


def _check_modalities(modality: list[str] | None) -> None:
    """An unknown modality filter is refused before the query is embedded."""
    from xmodal.index.build import MEDIA

    unknown = [m for m in modality or [] if m not in MEDIA]
    if unknown:
        raise ConfigError(f"unknown modality filter {unknown}; choose from {list(MEDIA)}")


def _search_upload(results: Any, data: bytes, suffix: str, k: int, modality: list[str] | None,
                   filename: str) -> Any:
    fd, name = tempfile.mkstemp(suffix=suffix, prefix="xmodal-query-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return results(Path(name), k, modality, names={name: Path(filename).name or f"upload{suffix}"})
    finally:
        os.unlink(name)


def _resolve(index: Any, roots: list[Path], root: str, rel: str) -> "Path | None":
    """The indexed file ``roots[root]/rel``, or None if it is not one (traversal, unknown, missing, absurd)."""
    if not root.isdigit() or not int(root) < len(roots) or "\x00" in rel or len(rel) > MAX_REL_CHARS \
            or rel.startswith(("/", "\\")):
        return None
    base = roots[int(root)]
    try:
        path = (base / rel).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            return None
    except (OSError, RuntimeError, ValueError):
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
    out = {"id": hit.id, "root": root, "path": os.path.relpath(hit.path, hit.root), "name": Path(hit.path).name,
           "modality": hit.modality, "score": round(hit.score, 4),
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
