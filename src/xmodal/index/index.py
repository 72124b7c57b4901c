"""``Index``: a persistent cross-modal vector index of media files (FAISS + SQLite in one folder).

Folder layout::

    INDEX/index.sqlite       rows (path, root, modality, duration, mtime, size, hash) + vectors: the truth
    INDEX/ann.<modality>.faiss   one FAISS index per modality (ids = row ids), derived from the rows
    INDEX/ann.json           which kind each FAISS index is (flat / ivf / ivfpq), its parameters, the generation

The ANN settings (:class:`~xmodal.index.AnnConfig`: the kind built past ``exact_max``, PQ sizes...)
are recorded in the store; an index opened without ``ann_cfg`` keeps them (an update or a repair
rebuilds the same kind), one opened with different ones rebuilds its FAISS files with those. An
``ivfpq`` index with ``rerank`` re-scores its shortlist with the vectors read from ``index.sqlite``.

A FAISS file is used only when ``ann.json`` says it was written for the store's current generation;
otherwise (a killed run, an older build) it is rebuilt from the rows on load. Both files are
replaced atomically, so a crash at any point leaves a loadable index. Every file is checked on load
(:mod:`xmodal.index.verify`): a damaged one is a one-line error naming it, with the way out
(``Index.repair`` / ``xmodal index --repair`` rebuilds the FAISS files from the rows).

Example::

    index = xmodal.Index.build(["media/"], model="runs/a/model", out="media.index")
    hits = index.search("a red circle moving left", k=5, modality="video")
    index = xmodal.Index.load("media.index"); index.add(["more/"]); index.save()
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xmodal.config import from_dict, to_dict
from xmodal.errors import CheckpointError, ConfigError
from xmodal.index import ann as ann_lib
from xmodal.index import pq, verify
from xmodal.index.build import MEDIA, BuildConfig, BuildReport, merge_rows, run
from xmodal.index.store import DB_FILE, Row, Store
from xmodal.index.verify import ANN_META
IN_MEMORY = "<in-memory model>"
ANN_CONFIG_KEY = "ann_config"  # store meta key of the recorded AnnConfig


@dataclass
class Hit:
    id: int  # row id
    path: str  # absolute path of the file
    root: str  # the indexed root folder it lies in
    modality: str  # "image", "video" or "audio"
    score: float  # cosine similarity to the query
    duration: float | None  # seconds (videos, audio)


class Index:
    """Vectors of media files in one model's shared space, searchable by text or by example."""

    def __init__(self, folder: str | Path, store: Store, model: Any = None, ann_cfg: ann_lib.AnnConfig | None = None,
                 backend: str = "torch"):
        self.folder = Path(folder)
        self.store = store
        self._model = model
        self.backend = backend  # how the model runs: "torch", or "onnx" (its towers exported to FOLDER/onnx, onnxruntime)
        self.ann_cfg = ann_cfg or ann_lib.AnnConfig()
        self.anns: dict[str, Any] = {}  # modality -> FAISS index
        self.params: dict[str, dict[str, Any]] = {}  # modality -> recorded kind and parameters
        self._lock = threading.Lock()  # one query through the model at a time

    # ---------------------------------------------------------------- create / open
    @classmethod
    def build(cls, sources: Sequence[str | Path], model: Any, out: str | Path,
              config: BuildConfig | None = None, ann_cfg: ann_lib.AnnConfig | None = None, backend: str = "torch") -> "Index":
        """Index (or bring up to date) the media files of folders/manifests ``sources`` into ``out``.

        ``model``: a name, checkpoint or transfer folder for :func:`xmodal.load`, or a loaded model; ``backend``:
        ``torch`` or ``onnx`` (the model's encoders exported and run by onnxruntime, same vectors to 1e-4)."""
        index = cls._open(out, model, ann_cfg, create=True, backend=backend)
        index.last_report = index.add(sources, config)
        index.save()
        return index

    @classmethod
    def create(cls, folder: str | Path, model: Any = None, ann_cfg: ann_lib.AnnConfig | None = None) -> "Index":
        """Open ``folder`` as an index, creating an empty one if there is none (e.g. to merge shards into)."""
        return cls._open(folder, model, ann_cfg, create=True)

    @classmethod
    def load(cls, folder: str | Path, model: Any = None, ann_cfg: ann_lib.AnnConfig | None = None,
             backend: str = "torch") -> "Index":
        """Open an index folder; ``model`` overrides the recorded one (needed for in-memory models); ``backend``
        as in :meth:`build`, for the queries."""
        return cls._open(folder, model, ann_cfg, create=False, backend=backend)

    @classmethod
    def _open(cls, folder: str | Path, model: Any, ann_cfg: Any, create: bool, backend: str = "torch") -> "Index":
        folder = Path(folder)
        if not create and not (folder / DB_FILE).is_file():
            raise CheckpointError(f"{folder}: not an xmodal index (no {DB_FILE})")
        verify.check_sqlite_file(folder)
        try:
            store = Store(folder)
            index = cls(folder, store, None, _settle_ann_cfg(store, ann_cfg), backend)
            index._bind_model(model)
            index._load_anns()
        except sqlite3.DatabaseError as exc:
            raise verify.damaged_store(folder, exc) from None
        return index

    @classmethod
    def repair(cls, folder: str | Path, ann_cfg: ann_lib.AnnConfig | None = None) -> "Index":
        """Rebuild the FAISS files and ``ann.json`` of ``folder`` from its rows (a CheckpointError if the
        rows themselves are damaged: then only building the index again from the media helps)."""
        folder = Path(folder)
        if not (folder / DB_FILE).is_file():
            raise CheckpointError(f"{folder}: not an xmodal index (no {DB_FILE})")
        problem = verify.integrity_problem(folder)
        if problem:
            raise verify.damaged_store(folder, problem)
        for file in [folder / ANN_META, *folder.glob("ann.*.faiss")]:
            file.unlink()
        index = cls._open(folder, None, ann_cfg, create=False)
        index.save()
        return index

    def _bind_model(self, model: Any) -> None:
        recorded = self.store.get_meta("model")
        if model is None:
            if recorded is None or recorded == IN_MEMORY:
                self._model = None
                return
            model = recorded
        name = model if isinstance(model, str) else IN_MEMORY
        if isinstance(model, str) and Path(model).exists():
            name = str(Path(model).resolve())
        if self.store.count() and recorded not in (None, IN_MEMORY) and name not in (recorded, IN_MEMORY):
            raise ConfigError(f"{self.folder}: index was built with model {recorded!r}, not {name!r}; "
                              "use that model or a new index folder")
        self._model = model
        if recorded is None or (recorded == IN_MEMORY and name != IN_MEMORY):
            self.store.set_meta(model=name)

    @property
    def model(self) -> Any:
        """The model (loaded on first use from the recorded name), on the index's ``backend``."""
        from xmodal.exporters.runtime import OnnxEmbedder, with_backend

        if self._model is None:
            raise ConfigError(f"{self.folder}: no model recorded for this index; pass model=")
        if isinstance(self._model, str):
            import xmodal.strategies.embedder  # noqa: F401  (registers transfer folders with xmodal.load)
            from xmodal.api import load

            self._model = load(self._model)
            self._model.eval()
        if self.backend != "torch" and not isinstance(self._model, OnnxEmbedder):
            self._model = with_backend(self._model, self.backend, self.folder / "onnx")
        return self._model

    @property
    def embed_dim(self) -> int:
        dim = self.store.get_meta("embed_dim")
        return int(dim) if dim is not None else self.model.embed_dim

    # ---------------------------------------------------------------- write
    def add(self, sources: Sequence[str | Path], config: BuildConfig | None = None) -> BuildReport:
        """Embed new and changed files of ``sources``, drop deleted ones; updates the search index."""
        model = self.model
        dim = self.store.get_meta("embed_dim")
        if dim is not None and int(dim) != model.embed_dim:
            raise ConfigError(f"{self.folder}: index vectors are {dim}-d, the model gives {model.embed_dim}-d")
        self.store.set_meta(embed_dim=model.embed_dim)
        try:
            report = run(self.store, model, list(sources), config or BuildConfig())
        except sqlite3.DatabaseError as exc:
            raise verify.damaged_store(self.folder, exc) from None
        for modality in report.changed_modalities:
            self._rebuild(modality)
        return report

    @classmethod
    def merged(cls, shards: Sequence[str | Path], out: str | Path, model: Any = None,
               ann_cfg: ann_lib.AnnConfig | None = None) -> "Index":
        """Merge shard indexes into ``out``: into the index there, or into a new one that appears only
        when complete (built in a temporary sibling folder, its files moved in last; nothing on failure)."""
        out = Path(out)
        if (out / DB_FILE).is_file():
            index = cls.create(out, model, ann_cfg)
            index.merge(shards)
            index.save()
            return index
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.merging-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            index = cls.create(tmp, model, ann_cfg)
            index.merge(shards)
            index.save()
            index.close()
            out.mkdir(exist_ok=True)
            for file in sorted(tmp.iterdir(), key=lambda f: (f.name == DB_FILE, f.name)):  # the rows last
                os.replace(file, out / file.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls.load(out, model, ann_cfg)

    def merge(self, shards: Sequence[str | Path]) -> int:
        """Copy the rows of shard indexes (built with ``shard="i/n"``) into this one; returns rows copied.
        Every shard is opened and checked before anything is written."""
        stores = [_open_shard(Path(folder)) for folder in shards]
        try:
            model = self.store.get_meta("model")
            for folder, s in zip(shards, stores):
                theirs = s.get_meta("model")
                if model is not None and theirs != model:
                    raise ConfigError(f"{folder}: built with model {theirs!r}, not {model!r}")
                model = theirs
            if self.store.get_meta("model") is None and stores:
                self.store.set_meta(model=model, embed_dim=stores[0].get_meta("embed_dim"))
            n = merge_rows(self.store, stores)
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(f"a shard's {DB_FILE} is damaged ({exc}); {verify.rebuild_hint()}") from None
        finally:
            for s in stores:
                s.close()
        for modality in self.store.modalities():
            self._rebuild(modality)
        return n

    def _rebuild(self, modality: str) -> None:
        ids, vecs = self.store.vectors(modality, self.embed_dim)
        if len(ids) == 0:
            self.anns.pop(modality, None)
            self.params.pop(modality, None)
            return
        self.anns[modality], self.params[modality] = ann_lib.build_ann(ids, vecs, self.ann_cfg)

    def save(self) -> None:
        """Write the FAISS files and ``ann.json`` (atomically) for the store's current generation."""
        files = {}
        for modality, index in self.anns.items():
            ann_lib.save_ann(index, self.folder / f"ann.{modality}.faiss")
            files[modality] = verify.file_record(self.folder / f"ann.{modality}.faiss")
        meta = {"generation": self.store.generation, "modalities": self.params, "files": files}
        tmp = self.folder / f"{ANN_META}.tmp{os.getpid()}"
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, self.folder / ANN_META)

    def _load_anns(self) -> None:
        meta = verify.read_ann_meta(self.folder)
        fresh = meta.get("generation") == self.store.generation
        for modality in self.store.modalities():
            file = self.folder / f"ann.{modality}.faiss"
            params = meta.get("modalities", {}).get(modality)
            if fresh and params and file.is_file():
                self.anns[modality] = verify.load_checked(self.folder, modality, meta, self.store.count(modality),
                                                          self.embed_dim)
                self.params[modality] = params
            else:
                self._rebuild(modality)

    # ---------------------------------------------------------------- read
    def __len__(self) -> int:
        return self.store.count()

    def stats(self) -> dict[str, Any]:
        """Counts per modality and the recorded FAISS parameters."""
        return {"folder": str(self.folder), "model": self.store.get_meta("model"), "count": len(self),
                "modalities": {m: {"count": self.store.count(m), **self.params.get(m, {})} for m in self.anns},
                "roots": self.roots()}

    def roots(self) -> list[str]:
        return sorted({r[0] for r in self.store.db.execute("SELECT DISTINCT root FROM files")})

    def query_vector(self, query: Any, modality: str | None = None) -> np.ndarray:
        """``[D]`` unit vector of a query: ``str`` = text, ``Path`` = a media file, array = a vector."""
        if isinstance(query, np.ndarray) or hasattr(query, "numpy"):
            vec = np.asarray(query, dtype=np.float32).reshape(-1)
            return vec / max(float(np.linalg.norm(vec)), 1e-12)
        if not isinstance(query, Path):
            return self.text_vectors([str(query)])[0]
        from xmodal.modalities import modality_of

        return self._vectors(modality or modality_of(str(query)), [str(query)])[0]

    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """``[N, D]`` unit vectors of text queries, embedded together (one forward pass per 64)."""
        return self._vectors("text", list(texts))

    def _vectors(self, modality: str, items: list[str]) -> np.ndarray:
        from xmodal.tasks.embed import embed

        model = self.model
        if modality not in model.modalities:
            raise ConfigError(f"model has no {modality} tower (it has {model.modalities})")
        with self._lock:
            out = embed(model, modality, items, on_error="raise", progress=False)
        return out.vectors.numpy().astype(np.float32)

    def search(self, query: Any, k: int = 10, modality: str | Sequence[str] | None = None,
               query_modality: str | None = None) -> list[Hit]:
        """Top-``k`` files by cosine similarity to ``query`` (text, ``Path`` of a file, or a vector),
        optionally only of ``modality`` (one name or several)."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        wanted = [modality] if isinstance(modality, str) else list(modality or MEDIA)
        unknown = [m for m in wanted if m not in MEDIA]
        if unknown:
            raise ConfigError(f"unknown modality filter {unknown}; choose from {list(MEDIA)}")
        vec = self.query_vector(query, query_modality)[None]
        scored: list[tuple[float, int]] = []
        for m in wanted:
            if m in self.anns:
                scores, ids = pq.search(self.anns[m], vec, k, self.params[m].get("rerank", 0), self._fetch)
                scored += [(float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0]
        scored = sorted(scored, reverse=True)[:k]
        try:
            rows = self.store.rows(i for _, i in scored)
        except sqlite3.DatabaseError as exc:
            raise verify.damaged_store(self.folder, exc) from None
        return [_hit(rows[i], s) for s, i in scored if i in rows]

    def _fetch(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of rows ``ids`` (what an ivfpq index re-ranks with)."""
        try:
            return self.store.vectors_by_id(ids, self.embed_dim)
        except sqlite3.DatabaseError as exc:
            raise verify.damaged_store(self.folder, exc) from None

    def close(self) -> None:
        self.store.close()


def _settle_ann_cfg(store: Store, given: ann_lib.AnnConfig | None) -> ann_lib.AnnConfig:
    """The ANN settings to use: ``given`` (recorded in the store if they differ from the recorded ones,
    which makes the FAISS files stale, so they are rebuilt), else the recorded ones, else the defaults."""
    recorded = store.get_meta(ANN_CONFIG_KEY)
    if given is None:
        return from_dict(ann_lib.AnnConfig, recorded, f"{store.folder / DB_FILE} ({ANN_CONFIG_KEY})") \
            if recorded is not None else ann_lib.AnnConfig()
    if to_dict(given) != recorded:
        store.set_meta(**{ANN_CONFIG_KEY: to_dict(given)})
    return given


def _open_shard(folder: Path) -> Store:
    """The store of a shard index to merge, checked (a one-line error if it is none or is damaged)."""
    if not (folder / DB_FILE).is_file():
        raise CheckpointError(f"{folder}: not an xmodal index (no {DB_FILE})")
    verify.check_sqlite_file(folder)
    try:
        return Store(folder)
    except sqlite3.DatabaseError as exc:
        raise verify.damaged_store(folder, exc) from None


def _hit(row: Row, score: float) -> Hit:
    return Hit(id=row.id, path=row.path, root=row.root, modality=row.modality, score=score, duration=row.duration)
