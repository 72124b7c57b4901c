"""What is registered, by name: backbones, strategies, encoders, fusions, losses and modalities.

``list_models()``, ``list_strategies()``, ... return sorted names, optionally filtered by a glob
(timm-style: ``list_strategies("*probe*")``). :func:`components` adds a one-line description of each
(a strategy's or a task's ``paper``; else the docstring of its config class, of the component itself or of its
module) and the fields of its config dataclass with defaults and comments, which ``xmodal list`` and
the ``--list`` flags print. :func:`strategy_config` checks a strategy's options without any data.

This module sits above the packages whose registries it reads (``xmodal.layers``), so the library
never imports it; the facade (``xmodal.list_*``) and the CLI do.
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import inspect
import io
import re
import textwrap
import tokenize
from dataclasses import dataclass, field
from typing import Any, Callable

from xmodal.engine.losses import LOSSES
from xmodal.backbones import BACKBONES
from xmodal.config import from_dict
from xmodal.encoders import ENCODERS
from xmodal.errors import ConfigError
from xmodal.fusion import FUSIONS
from xmodal.modalities import MODALITIES
from xmodal.registry import Registry
from xmodal.strategies import STRATEGIES
from xmodal.tasks import TASKS

def _no_facts(obj: Any) -> dict[str, Any]:
    return {}


def _no_paper(obj: Any) -> str:
    return ""


@dataclass(frozen=True)
class Kind:
    """What a registry's contract says about its entries, for listings."""

    registry: Registry[Any]  # the registry
    config: Callable[[Any], type | None]  # an entry's config (or spec) dataclass, None if it takes none
    facts: Callable[[Any], dict[str, Any]] = _no_facts  # an entry's attributes worth a word in a listing
    paper: Callable[[Any], str] = _no_paper  # the method or protocol it follows ("" when the contract has none)


KINDS: dict[str, Kind] = {  # plural kind (``xmodal list KIND``) -> its registry and contract
    "backbones": Kind(BACKBONES, lambda b: b.config_cls),
    "strategies": Kind(STRATEGIES, lambda s: s.config_cls, lambda s: {"frozen": s.frozen}, lambda s: s.paper),
    "tasks": Kind(TASKS, lambda t: t.config_cls, paper=lambda t: t.paper),
    "encoders": Kind(ENCODERS, lambda e: e.config_cls, lambda e: {"modality": e.modality}),
    "fusions": Kind(FUSIONS, lambda f: None),  # every fusion takes the shared FusionParams
    "losses": Kind(LOSSES, lambda f: None),
    "modalities": Kind(MODALITIES, lambda m: m.spec_cls, lambda m: {"is_file": m.is_file}),
}
REGISTRIES: dict[str, Registry[Any]] = {kind: k.registry for kind, k in KINDS.items()}
BY_REFERENCE: dict[str, str] = {  # backbones ``xmodal.load`` does not build from their name alone, and how to load them
    "hf_clip": "loaded by hub name or folder, e.g. load('openai/clip-vit-base-patch32')",
    "bound": "written by `xmodal bind`; loaded from its checkpoint folder",
    "transferred": "the base of what `xmodal bind --model RUN/model` writes; loaded from that checkpoint folder",
}


@dataclass(frozen=True)
class ConfigField:
    name: str  # field name, dotted inside a nested config (``head.kind``)
    type: str  # annotation as written
    default: Any  # default value (a nested config's fields are listed instead of it)
    comment: str  # the field's source comment, "" if none


@dataclass(frozen=True)
class Component:
    kind: str  # plural registry kind, e.g. "strategies"
    name: str  # registered name
    description: str  # one line
    config: type | None  # config dataclass (spec dataclass for a modality), None if it takes none
    facts: dict[str, Any] = field(default_factory=dict)  # e.g. {"frozen": True}, {"modality": "audio"}

    def fields(self) -> list[ConfigField]:
        return config_fields(self.config) if self.config is not None else []


def _names(kind: str, pattern: str | None) -> list[str]:
    names = REGISTRIES[kind].names()
    return [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def list_models(pattern: str | None = None) -> list[str]:
    """Backbones ``xmodal.load(name)`` builds from the name alone (``"lit"``). transformers CLIP-family
    checkpoints (CLIP, SigLIP, MetaCLIP 2, Chinese-CLIP, AltCLIP) are not listed: load them by hub name
    or folder (``xmodal.load("openai/clip-vit-base-patch32")``); saved models load from their folder."""
    return [n for n in _names("backbones", pattern) if n not in BY_REFERENCE]


def list_strategies(pattern: str | None = None) -> list[str]:
    """Registered image-to-video transfer strategies (``xmodal.transfer``, ``TransferConfig.strategy``)."""
    return _names("strategies", pattern)


def list_tasks(pattern: str | None = None) -> list[str]:
    """Registered video tasks (classify, retrieve, ground, qa): what ``xmodal transfer --task`` takes."""
    return _names("tasks", pattern)


def list_encoders(pattern: str | None = None) -> list[str]:
    """Registered encoders for new modalities (``BindConfig.encoder``, ``FuseConfig.encoders``)."""
    return _names("encoders", pattern)


def list_fusions(pattern: str | None = None) -> list[str]:
    """Registered fusions (``FuseConfig.fusion``)."""
    return _names("fusions", pattern)


def list_losses(pattern: str | None = None) -> list[str]:
    """Registered contrastive losses (``AlignConfig.loss``)."""
    return _names("losses", pattern)


def list_modalities(pattern: str | None = None) -> list[str]:
    """Registered modalities (file types a tower can read)."""
    return _names("modalities", pattern)


def kind_of(kind: str) -> str:
    """The plural registry kind for ``kind`` ("strategy" or "strategies"); a ConfigError names the kinds."""
    for plural, registry in REGISTRIES.items():
        if kind in (plural, registry.kind):
            return plural
    raise ConfigError(f"unknown kind {kind!r}; known: {', '.join(REGISTRIES)}")


def components(kind: str, pattern: str | None = None) -> list[Component]:
    """Every registered component of ``kind`` (whose name matches ``pattern``), described."""
    kind = kind_of(kind)
    out = []
    for name in _names(kind, pattern):
        info = KINDS[kind]
        obj = info.registry.get(name)
        config = info.config(obj)
        description = info.paper(obj) or describe(obj, config)
        if kind == "backbones" and name in BY_REFERENCE:
            description = f"{description} ({BY_REFERENCE[name]})"
        out.append(Component(kind, name, description, config, info.facts(obj)))
    return out


def describe(obj: Any, config: type | None = None) -> str:
    """One line about a registered component: the summary of the first docstring written for it: its
    config class's, its own (a leading "Registered as ``name``" dropped), its module's."""
    target = obj if inspect.isclass(obj) or inspect.isroutine(obj) else type(obj)
    module = inspect.getmodule(target)
    for doc in (_own_doc(config), _own_doc(target), module.__doc__ if module else ""):
        line = _summary(doc or "")
        if line:
            return line
    return ""


def _own_doc(target: Any) -> str:
    """The docstring written for a class or function (not inherited, not a dataclass's generated signature)."""
    if target is None:
        return ""
    doc = vars(target).get("__doc__") if inspect.isclass(target) else target.__doc__
    if not doc or (inspect.isclass(target) and doc.startswith(f"{target.__name__}(")):
        return ""
    return doc


def _summary(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line, ````code```` as `code`."""
    text = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    text = re.sub(r"^Registered as (\w+ )?``\w+``[.:]?\s*", "", text).replace("``", "`")
    match = re.match(r"(.+?[.!?])(\s+[A-Z]|$)", text)  # "Gong et al. 2021" does not end a sentence
    return (match.group(1) if match else text).strip()


def config_fields(cls: type, prefix: str = "") -> list[ConfigField]:
    """The fields of config dataclass ``cls``, a nested config's fields dotted (``head.kind``)."""
    comments = field_comments(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if dataclasses.is_dataclass(default):
            out.extend(config_fields(type(default), f"{prefix}{f.name}."))
            continue
        kind = f.type.__name__ if isinstance(f.type, type) else str(f.type)
        out.append(ConfigField(prefix + f.name, kind, default, comments.get(f.name, "")))
    return out


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> the comments written on its lines and the comment-only lines after it."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    notes = {tok.start[0]: tok.string.lstrip("#").strip()
             for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    body = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)).body
    ends = [n.lineno for n in body[1:]] + [source.count("\n") + 2]
    out = {}
    for node, stop in zip(body, ends):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = " ".join(notes[i] for i in range(node.lineno, stop) if i in notes)
    return out


def strategy_config(name: str, options: dict[str, Any] | None = None) -> Any:
    """Strategy ``name``'s config dataclass built from ``options``: an unknown strategy or option is a
    ConfigError naming the known ones, before any data is read."""
    return from_dict(STRATEGIES.get(name).config_cls, dict(options or {}), where=f"{name} options")
