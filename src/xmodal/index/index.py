"""``Index``: a persistent cross-modal vector index of media files (FAISS + SQLite in one folder).

Folder layout::

    INDEX/index.sqlite       rows (path, root, modality, duration, mtime, size, hash) + vectors: the truth
    INDEX/ann.<modality>.faiss   one FAISS index per modality (ids = row ids), derived from the rows
    INDEX/ann.json           which kind each FAISS index is (flat / ivf), its parameters, the generation

A FAISS file is used only when ``ann.json`` says it was written for the store's current generation;
otherwise (a killed run, an older build) it is rebuilt from the rows on load. Both files are
replaced atomically, so a crash at any point leaves a loadable index.

Example::

    index = xmodal.Index.build(["media/"], model="runs/a/model", out="media.index")
    hits = index.search("a red circle moving left", k=5, modality="video")
    index = xmodal.Index.load("media.index"); index.add(["more/"]); index.save()
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xmodal.errors import CheckpointError, ConfigError
from xmodal.index import ann as ann_lib
from xmodal.index.build import MEDIA, BuildConfig, BuildReport, merge_rows, run
from xmodal.index.store import DB_FILE, Row, Store

ANN_META = "ann.json"
IN_MEMORY = "<in-memory model>"


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

    def __init__(self, folder: str | Path, store: Store, model: Any = None, ann_cfg: ann_lib.AnnConfig | None = None):
        self.folder = Path(folder)
        self.store = store
        self._model = model
        self.ann_cfg = ann_cfg or ann_lib.AnnConfig()
        self.anns: dict[str, Any] = {}  # modality -> FAISS index
        self.params: dict[str, dict[str, Any]] = {}  # modality -> recorded kind and parameters
        self._lock = threading.Lock()  # one query through the model at a time

    # ---------------------------------------------------------------- create / open
    @classmethod
    def build(cls, sources: Sequence[str | Path], model: Any, out: str | Path,
              config: BuildConfig | None = None, ann_cfg: ann_lib.AnnConfig | None = None) -> "Index":
        """Index (or bring up to date) the media files of folders/manifests ``sources`` into ``out``.

        ``model``: a name or checkpoint folder for :func:`xmodal.load`, or an XModel."""
        index = cls._open(out, model, ann_cfg, create=True)
        index.last_report = index.add(sources, config)
        index.save()
        return index

    @classmethod
    def create(cls, folder: str | Path, model: Any = None, ann_cfg: ann_lib.AnnConfig | None = None) -> "Index":
        """Open ``folder`` as an index, creating an empty one if there is none (e.g. to merge shards into)."""
        return cls._open(folder, model, ann_cfg, create=True)

    @classmethod
    def load(cls, folder: str | Path, model: Any = None, ann_cfg: ann_lib.AnnConfig | None = None) -> "Index":
        """Open an index folder; ``model`` overrides the recorded one (needed for in-memory models)."""
        return cls._open(folder, model, ann_cfg, create=False)

    @classmethod
    def _open(cls, folder: str | Path, model: Any, ann_cfg: Any, create: bool) -> "Index":
        folder = Path(folder)
        if not create and not (folder / DB_FILE).is_file():
            raise CheckpointError(f"{folder}: not an xmodal index (no {DB_FILE})")
        index = cls(folder, Store(folder), None, ann_cfg)
        index._bind_model(model)
        index._load_anns()
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
        """The XModel (loaded on first use from the recorded name)."""
        if self._model is None:
            raise ConfigError(f"{self.folder}: no model recorded for this index; pass model=")
        if isinstance(self._model, str):
            from xmodal.api import load

            self._model = load(self._model)
            self._model.eval()
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
        report = run(self.store, model, list(sources), config or BuildConfig())
        for modality in report.changed_modalities:
            self._rebuild(modality)
        return report

    def merge(self, shards: Sequence[str | Path]) -> int:
        """Copy the rows of shard indexes (built with ``shard="i/n"``) into this one; returns rows copied."""
        stores = []
        for folder in shards:
            s = Store(folder) if (Path(folder) / DB_FILE).is_file() else None
            if s is None:
                raise CheckpointError(f"{folder}: not an xmodal index (no {DB_FILE})")
            if self.store.get_meta("model") not in (None, s.get_meta("model")):
                raise ConfigError(f"{folder}: built with model {s.get_meta('model')!r}, "
                                  f"not {self.store.get_meta('model')!r}")
            if self.store.get_meta("model") is None:
                self.store.set_meta(model=s.get_meta("model"), embed_dim=s.get_meta("embed_dim"))
            stores.append(s)
        n = merge_rows(self.store, stores)
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
        for modality, index in self.anns.items():
            ann_lib.save_ann(index, self.folder / f"ann.{modality}.faiss")
        meta = {"generation": self.store.generation, "modalities": self.params}
        tmp = self.folder / f"{ANN_META}.tmp{os.getpid()}"
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, self.folder / ANN_META)

    def _load_anns(self) -> None:
        meta_file = self.folder / ANN_META
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        fresh = meta.get("generation") == self.store.generation
        for modality in self.store.modalities():
            file = self.folder / f"ann.{modality}.faiss"
            params = meta.get("modalities", {}).get(modality)
            if fresh and params and file.is_file():
                self.anns[modality] = ann_lib.load_ann(file)
                self.params[modality] = params
                if params.get("kind") == "ivf":
                    self.anns[modality].nprobe = params["nprobe"]
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
        from xmodal.tasks.embed import embed

        if isinstance(query, Path):
            from xmodal.modalities import modality_of

            modality = modality or modality_of(str(query))
            items = [str(query)]
        else:
            modality, items = "text", [str(query)]
        model = self.model
        if modality not in model.modalities:
            raise ConfigError(f"model has no {modality} tower (it has {model.modalities})")
        with self._lock:
            out = embed(model, modality, items, on_error="raise", progress=False)
        return out.vectors[0].numpy().astype(np.float32)

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
                scores, ids = self.anns[m].search(vec, min(k, self.anns[m].ntotal))
                scored += [(float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0]
        scored = sorted(scored, reverse=True)[:k]
        rows = self.store.rows(i for _, i in scored)
        return [_hit(rows[i], s) for s, i in scored if i in rows]

    def close(self) -> None:
        self.store.close()


def _hit(row: Row, score: float) -> Hit:
    return Hit(id=row.id, path=row.path, root=row.root, modality=row.modality, score=score, duration=row.duration)
