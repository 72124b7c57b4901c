"""Code asks a contract instead of probing (issue #14).

Two guards scan every source file of ``src/xmodal``:

- ``getattr``/``hasattr`` only on foreign objects (transformers models, configs, processors and
  tokenizers, argparse namespaces, ...), never on a tower, strategy, model or modality: those declare
  what code needs (``Encoder``, ``Strategy``, ``ContrastiveLoss``, ``Modality``, ``Backbone``);
- no ``==``/``!=``/``in`` comparison against a string literal that is a registered name of MODALITIES,
  LOSSES, BACKBONES, STRATEGIES, ENCODERS or FUSIONS outside the file that registers that name: code asks
  the component (``MODALITIES.get(m).is_file``), it does not branch on what it is called.

Then the contracts themselves, parametrised over the registries: every registered backbone's towers
declare their width, blocks, sub-layers, final parts, trunk module and token embedding (and those are
the modules that really run), every strategy its learning-rate defaults, every loss whether it uses
the bias, every modality whether its items are files, what it is a sequence of and its spec class.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch import nn

import xmodal
import xmodal.encoders  # noqa: F401  (registers the encoders)
import xmodal.fusion  # noqa: F401  (registers the fusions)
import xmodal.strategies  # noqa: F401  (registers the strategies)
from xmodal.engine.losses import LOSSES, ContrastiveLoss
from xmodal.backbones.base import BACKBONES, Encoder, XModel
from xmodal.encoders.base import ENCODERS
from xmodal.errors import ConfigError
from xmodal.fusion.base import FUSIONS
from xmodal.modalities import MODALITIES, Modality
from xmodal.strategies.base import STRATEGIES, Strategy

SRC = Path(__file__).resolve().parents[1] / "src" / "xmodal"
REGISTRIES = {"MODALITIES": MODALITIES, "LOSSES": LOSSES, "BACKBONES": BACKBONES, "STRATEGIES": STRATEGIES,
              "ENCODERS": ENCODERS, "FUSIONS": FUSIONS}

# First arguments of getattr/hasattr that are foreign objects (source text -> why it is allowed; a path
# limits it to one file). Our own components are never here: they declare what code reads from them.
FOREIGN = {
    "hf": ("a transformers dual encoder: its towers' attribute names come from the Layout of its model type", None),
    "hf_config": ("a transformers config: optional keys differ between model types", None),
    "hf_config.text_config": ("a transformers text sub-config (max_position_embeddings is optional)", None),
    "text_cfg": ("a transformers text sub-config (projection_size is optional)", None),
    "hf_setting": ("a transformers image processor or one of its size dicts (keys differ by processor)", None),
    "tokenizer": ("a transformers tokenizer (model_max_length is optional)", None),
    "args": ("an argparse namespace: subcommands define different options", None),
    "query": ("a search query: a string, a path, a numpy array or anything with .numpy() (a tensor)", None),
    "upload": ("a starlette form field: an UploadFile has .read(), a plain field does not", None),
    "importlib.import_module(_EXPORTS[name])": ("the facade's lazy export of a name from its module", None),
    "cfg": ("WorldConfig's count fields, checked by name in a loop", "experiments/world.py"),
}

# Comparisons against a string that spells a registered name but is a foreign config value:
# (file, literal) -> why. Empty: the one collision found (transformers model_type "siglip", also a loss) was
# replaced by a Layout field, and head kinds ("mean", "transformer"...) spell no registered name.
CONFIG_VALUES: dict[tuple[str, str], str] = {}


def _sources() -> list[tuple[str, ast.AST, str]]:
    return [(str(p.relative_to(SRC)), ast.parse(p.read_text()), p.read_text()) for p in sorted(SRC.rglob("*.py"))]


def _registrations() -> dict[str, set[str]]:
    """Registered name -> files that register it (``<REGISTRY>.register("name", ...)``, also as a decorator)."""
    out: dict[str, set[str]] = {}
    for rel, tree, _ in _sources():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in REGISTRIES
                    and node.args and isinstance(node.args[0], ast.Constant)):
                out.setdefault(node.args[0].value, set()).add(rel)
    return out


def test_every_registered_name_is_found_in_its_registration_file() -> None:
    found = _registrations()
    for registry in REGISTRIES.values():
        for name in registry.names():
            assert found.get(name), f"{registry.kind} {name!r}: no <REGISTRY>.register({name!r}, ...) call found"


def _probes(sources: list[tuple[str, ast.AST, str]]) -> list[str]:
    """``file:line: getattr(first, ...)`` for every getattr/hasattr whose first argument is not in FOREIGN."""
    bad = []
    for rel, tree, text in sources:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
                first = ast.get_source_segment(text, node.args[0])
                reason, only = FOREIGN.get(first, (None, None))
                if reason is None or (only is not None and rel != only):
                    bad.append(f"{rel}:{node.lineno}: {node.func.id}({first}, ...)")
    return bad


def _literals(node: ast.expr) -> list[str]:
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]


def _name_comparisons(sources: list[tuple[str, ast.AST, str]], where: dict[str, set[str]]) -> list[str]:
    """``file:line: comparison`` for every ==, !=, in, not in with a registered name outside its registration file."""
    bad = []
    for rel, tree, text in sources:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare) or not any(
                    isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
                continue
            for literal in {s for operand in [node.left, *node.comparators] for s in _literals(operand)} & set(where):
                if rel not in where[literal] and (rel, literal) not in CONFIG_VALUES:
                    bad.append(f"{rel}:{node.lineno}: {ast.get_source_segment(text, node)}")
    return bad


def test_getattr_and_hasattr_only_on_foreign_objects() -> None:
    bad = _probes(_sources())
    assert not bad, "probing instead of asking a contract (or add a foreign object to FOREIGN, with why):\n" + "\n".join(bad)


def test_no_registry_name_comparison_outside_its_registration_file() -> None:
    bad = _name_comparisons(_sources(), _registrations())
    assert not bad, "compares with a registered name (ask the component's contract instead):\n" + "\n".join(bad)


def test_the_guards_catch_what_they_look_for() -> None:
    code = ('def f(tower, m, args):\n    if m == "text" or "video" in (m,) or m.kind == "mean":\n'
            '        return getattr(tower, "trunk_net", None) or getattr(args, "x")\n')
    sources = [("strategies/x.py", ast.parse(code), code)]
    assert [b.split(": ", 1)[1] for b in _probes(sources)] == ['getattr(tower, ...)']
    where = {"text": {"modalities/text.py"}, "video": {"modalities/video.py"}}
    assert len(_name_comparisons(sources, where)) == 2
    assert _name_comparisons([("modalities/text.py", ast.parse('x = m == "text"'), 'x = m == "text"')], where) == []


# ------------------------------------------------------------------------------- towers of every backbone
def _tiny_hf_models() -> Any:
    """tests/backbones/conftest.py as a module (its ``make_hf_folder`` and ``LOGITS``: one tiny model per kind)."""
    path = Path(__file__).parent / "backbones" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_tiny_hf_models_contracts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HF = _tiny_hf_models()
VIT = {"arch": "vit", "width": 16, "depth": 2, "image_size": 16, "patch_size": 8, "heads": 2}
CONVNET = {"arch": "convnet", "width": 8, "depth": 2, "image_size": 16}
AUDIO_SPEC = {"sample_rate": 8000, "n_mels": 16, "n_fft": 128, "hop_length": 64, "max_seconds": 0.25}


def _lit(text_dir: Path, vision: dict[str, Any]) -> XModel:
    torch.manual_seed(0)
    return xmodal.load("lit", text_model=str(text_dir), vision=vision)


def _bound(text_dir: Path, encoder: str, config: dict[str, Any]) -> XModel:
    from xmodal.backbones.bound import add_tower
    from xmodal.encoders.base import Tower, build_encoder

    base = _lit(text_dir, VIT)
    net, spec, record = build_encoder(encoder, config, AUDIO_SPEC)
    return add_tower(base, "audio", Tower("audio", net, base.embed_dim), spec, record)


def _transferred(text_dir: Path) -> XModel:
    """The adapted towers of a LoRA retrieval transfer of a tiny LiT (what ``xmodal bind --model RUN/model`` adds to)."""
    from xmodal.strategies.embedder import TransferredModel
    from xmodal.strategies.train import TransferConfig, build

    torch.manual_seed(0)
    base = xmodal.load("lit", text_model=str(text_dir), num_frames=2, vision=VIT)
    vm = build(base, TransferConfig(task="retrieve", strategy="lora", options={"rank": 2}), {})
    return TransferredModel(vm.eval()).as_towers()


CASES: dict[str, tuple[str, Callable[[Path, Path], XModel]]] = {  # case -> (backbone, builder(text dir, tmp))
    "lit-vit": ("lit", lambda text, tmp: _lit(text, VIT)),
    "lit-convnet": ("lit", lambda text, tmp: _lit(text, CONVNET)),
    **{f"hf_clip-{kind}": ("hf_clip", lambda text, tmp, kind=kind: xmodal.load(str(HF.make_hf_folder(kind, tmp / kind))))
       for kind in sorted(HF.LOGITS)},
    "bound-audio_transformer": ("bound", lambda text, tmp: _bound(text, "audio_transformer",
                                                                   {"width": 16, "depth": 1, "heads": 2})),
    "bound-audio_cnn": ("bound", lambda text, tmp: _bound(text, "audio_cnn", {"width": 8, "depth": 2})),
    "transferred-lora": ("transferred", lambda text, tmp: _transferred(text)),
}
NO_BLOCKS = {"lit-convnet", "transferred-lora"}  # a ConvNet; a transferred path, used as it is


def test_every_backbone_has_a_tower_case() -> None:
    assert {backbone for backbone, _ in CASES.values()} == set(BACKBONES.names())


def _batch(model: XModel, modality: str) -> dict[str, torch.Tensor]:
    spec = model.spec(modality)
    if modality == "image":  # test data per modality (tests may name modalities; src may not)
        return {"pixel_values": torch.randn(2, 3, spec.size, spec.size, generator=torch.Generator().manual_seed(0))}
    if modality == "text":
        return MODALITIES.get("text").collate(["a photo of a cat", "a dog"], spec)
    if modality == "video":  # a tower of its own (a transferred model's adapted video path)
        size = spec.image.size
        return {"pixel_values": torch.rand(2, spec.num_frames, 3, size, size, generator=torch.Generator().manual_seed(0))}
    from xmodal.modalities.audio import audio_frames

    return {"input_features": torch.randn(2, spec.n_mels, audio_frames(spec)) - 4}


def _inside(parts: list[nn.Module], root: nn.Module) -> bool:
    ids = {id(m) for m in root.modules()}
    return all(id(m) in ids for m in parts)


def _runs(modules: list[nn.Module], fn: Callable[[], Any]) -> set[int]:
    """Indices of ``modules`` whose forward ran during ``fn()``."""
    ran: set[int] = set()
    handles = [m.register_forward_hook(lambda *_, i=i: ran.add(i)) for i, m in enumerate(modules)]
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    return ran


def _check_tower(name: str, tower: nn.Module, model: XModel) -> None:
    assert isinstance(tower, Encoder), name
    assert tower.modality == name and isinstance(tower.embed_dim, int) and isinstance(tower.width, int)
    trunk, head = tower.trunk_module, tower.head_layer
    assert {id(p) for p in tower.parameters()} == {id(p) for p in [*trunk.parameters(), *head.parameters()]}
    assert not any(id(p) in {id(q) for q in trunk.parameters()} for p in head.parameters()), name
    batch = _batch(model, name)
    with torch.no_grad():
        assert tower.trunk(batch).shape == (2, tower.width), name
    blocks, final = tower.blocks(), tower.final_parts()
    assert isinstance(blocks, list) and isinstance(final, list) and _inside(blocks + final, trunk)
    with torch.no_grad():  # the declared blocks and final parts are what the trunk runs
        assert _runs(blocks + final, lambda: tower.trunk(batch)) == set(range(len(blocks + final))), name
    for block in blocks:
        try:
            parts = tower.sublayers(block)
        except ConfigError:
            continue  # post-norm blocks have none
        assert len(parts) == 2 and _inside(list(parts), block)
        with torch.no_grad():
            assert _runs(list(parts), lambda: tower.trunk(batch)) == {0, 1}
    table = tower.token_embedding()
    if MODALITIES.get(name).is_file:
        assert table is None, name
    else:
        assert isinstance(table, nn.Embedding) and _inside([table], trunk)


@pytest.mark.parametrize("case", sorted(CASES))
def test_towers_declare_their_insides(case: str, tiny_text_dir: Path, tmp_path: Path) -> None:
    backbone, build = CASES[case]
    model = build(tiny_text_dir, tmp_path).eval()
    assert model.backbone == backbone
    for name, tower in model.towers.items():
        _check_tower(name, tower, model)
    image = model.tower("image")
    assert bool(image.blocks()) == (case not in NO_BLOCKS)
    if case.startswith("bound-audio_transformer"):
        assert len(model.tower("audio").blocks()) == 1


def test_backbones_declare_whether_a_name_builds_them() -> None:
    for name in BACKBONES.names():
        assert isinstance(BACKBONES.get(name).by_name, bool), name
        assert dataclasses.is_dataclass(BACKBONES.get(name).config_cls), name


def test_a_frames_modality_goes_through_the_tower_of_its_frames(tiny_text_dir: Path) -> None:
    model = _lit(tiny_text_dir, VIT).eval()
    sequences = [m for m in MODALITIES if MODALITIES.get(m).frames_of in model.towers]
    assert sequences and set(sequences) <= set(model.modalities)
    for m in sequences:
        source = MODALITIES.get(m).frames_of
        assert model.tower(m) is model.tower(source) and model.frames_source(m) == source
        frames = torch.randn(2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            per_frame = model.encode(source, {"pixel_values": frames.flatten(0, 1)}).view(2, 3, -1)
            expected = nn.functional.normalize(per_frame.mean(1), dim=-1)
            assert torch.allclose(model.encode(m, {"pixel_values": frames}), expected, atol=1e-6)


# ---------------------------------------------------------------------------------- the other registries
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategies_declare_their_learning_rates(name: str) -> None:
    from types import SimpleNamespace

    from xmodal.strategies.train import TransferConfig, fit_config

    s = STRATEGIES.get(name)
    vm = SimpleNamespace(default_lr=s.default_lr, backbone_lr_scale=s.backbone_lr_scale, task="classify")
    assert isinstance(s, Strategy)
    assert {"default_lr", "backbone_lr_scale"} <= set(vars(type(s))), f"{name}: set both in the class"
    assert s.default_lr is None or (isinstance(s.default_lr, float) and 0 < s.default_lr < 1)
    assert isinstance(s.backbone_lr_scale, float) and 0 < s.backbone_lr_scale <= 1
    fit = fit_config(TransferConfig(strategy=name), vm)
    assert fit.lr == (s.default_lr if s.default_lr is not None else TransferConfig().fit.lr)
    assert fit.lr_scales["base."] == s.backbone_lr_scale
    assert fit_config(TransferConfig(strategy=name, lr=0.5), vm).lr == 0.5


@pytest.mark.parametrize("name", LOSSES.names())
def test_losses_declare_whether_they_use_the_bias(name: str) -> None:
    loss = LOSSES.get(name)
    assert isinstance(loss, ContrastiveLoss) and isinstance(loss.uses_bias, bool)
    a = nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    b = nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    scale = torch.tensor(2.0)
    moved = not torch.equal(loss(a, b, scale, torch.tensor(0.0)), loss(a, b, scale, torch.tensor(-3.0)))
    assert moved == loss.uses_bias


def test_clip_and_siglip_loss_functions_are_still_importable() -> None:
    from xmodal.alignment import clip_loss, siglip_loss

    a = nn.functional.normalize(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    scale, bias = torch.tensor(1.0), torch.tensor(0.5)
    assert torch.equal(clip_loss(a, a, scale), LOSSES.get("clip")(a, a, scale))
    assert torch.equal(siglip_loss(a, a, scale, bias), LOSSES.get("siglip")(a, a, scale, bias))


@pytest.mark.parametrize("name", MODALITIES.names())
def test_modalities_declare_their_items(name: str, tmp_path: Path) -> None:
    mod = MODALITIES.get(name)
    assert isinstance(mod, Modality)
    assert isinstance(mod.is_file, bool) and isinstance(mod.visual, bool)
    assert mod.frames_of is None or (mod.frames_of in MODALITIES and mod.frames_of != name)
    assert mod.spec_cls is None or dataclasses.is_dataclass(mod.spec_cls)
    missing = tmp_path / f"missing{mod.extensions[0]}"
    if not mod.visual:
        assert mod.still(missing) is None
    if not mod.is_file:
        assert mod.duration(missing) is None and not mod.visual
