"""``xmodal.exporters`` (``xmodal.export``): a transferred model in formats that load without xmodal.

``export("runs/lora/model", to="transformers", out="exported")`` loads the transfer folder, checks that
the format can hold it (else one line naming the formats that can), writes the export and its model
card (``README.md``). Formats, one file each: ``transformers``, ``peft``, ``onnx``.
"""

from __future__ import annotations

from pathlib import Path

from xmodal.errors import ExportError
from xmodal.exporters import to_onnx, to_peft, to_transformers  # noqa: F401  (registers the formats)
from xmodal.exporters.base import EXPORTERS, Exporter  # noqa: F401
from xmodal.strategies.base import VideoModel
from xmodal.strategies.card import card_text, run_record, write_card
from xmodal.strategies.checkpoint import load_transfer, read_transfer_meta


def formats_for(vm: VideoModel) -> list[str]:
    """The export formats that can hold ``vm``."""
    return [name for name in EXPORTERS.names() if EXPORTERS.get(name).problem(vm) is None]


def check_format(vm: VideoModel, to: str) -> None:
    """An ExportError naming why ``to`` cannot hold ``vm`` and which formats can; nothing when it can."""
    problem = EXPORTERS.get(to).problem(vm)
    if problem is not None:
        works = " or ".join(f"--to {name}" for name in formats_for(vm))
        raise ExportError(f"strategy {vm.strategy!r} cannot be exported to {to}: {problem}; export it with {works}")


def export(path: str | Path, to: str, out: str | Path) -> Path:
    """Export the transfer folder ``path`` (``RUN/model``) to the format ``to`` in the folder ``out``
    (created), with a model card; returns ``out``."""
    path, out = Path(path), Path(out)
    meta = read_transfer_meta(path)
    exporter = EXPORTERS.get(to)
    vm = load_transfer(path)
    check_format(vm, to)
    out.mkdir(parents=True, exist_ok=True)
    notes, load = exporter.export(vm, meta, out)
    text = card_text(meta, f"xmodal export ({to}): {vm.strategy} for {vm.task}", load,
                     [*notes, f"exported from: `{path}`"], run_record(path))
    write_card(out, text)
    return out
