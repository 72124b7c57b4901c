"""``xmodal list [KIND] [PATTERN]``, the ``--list`` flags, and flags whose choices are a registry's names.

Everything here reads the registries (:mod:`xmodal.catalog`): a new strategy, encoder, fusion, loss,
modality or backbone shows up in ``--help``, ``--list`` and ``xmodal list`` without a CLI change.
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

KINDS = ("backbones", "strategies", "tasks", "encoders", "fusions", "losses", "modalities")  # `xmodal list KIND`


class HelpFormatter(argparse.HelpFormatter):
    """Argparse's formatter, except that line breaks in a help text are kept (one component per line)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        lines: list[str] = []
        for part in text.splitlines():
            lines.extend(super()._split_lines(part, width) or [""])
        return lines


def registry_option(p: argparse.ArgumentParser, flag: str, kind: str, what: str, **kwargs: Any) -> None:
    """A flag whose choices are the names registered in ``kind``, its help one line per component; an
    unknown name is a usage error worded like the registry's ("unknown strategy 'x'; known: ...")."""
    from xmodal.catalog import REGISTRIES, components
    from xmodal.errors import UnknownNameError

    def known(name: str) -> str:
        try:
            REGISTRIES[kind].get(name)
        except UnknownNameError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return name

    found = components(kind)
    lines = [f"{what} (`xmodal list {kind}` shows their settings):"]
    lines += [f"- {c.name}: {c.description}" for c in found]
    p.add_argument(flag, type=known, choices=[c.name for c in found], metavar="NAME", help="\n".join(lines), **kwargs)


def format_components(kind: str, pattern: str | None = None, fields: bool = True) -> str:
    """The components of ``kind`` matching ``pattern``: name, description, facts and config fields."""
    from xmodal.catalog import components, kind_of

    found = components(kind, pattern)
    lines = [f"{kind_of(kind)} ({len(found)}):"]
    width = max((len(c.name) for c in found), default=0)
    for c in found:
        facts = "".join(f" [{_fact(k, v)}]" for k, v in c.facts.items())
        lines.append(f"  {c.name:<{width}}  {c.description}{facts}")
        for f in c.fields() if fields else []:
            note = f"  # {f.comment}" if f.comment else ""
            lines.append(f"      {f.name}: {f.type} = {f.default!r}{note}")
    return "\n".join(lines)


def _fact(key: str, value: object) -> str:
    if key == "frozen":
        return "backbone frozen: trains on cached features" if value else "backbone tuned"
    return f"{key} {value}"


def list_action(*kinds: str) -> type[argparse.Action]:
    """An argparse action (like ``--version``) that prints ``kinds`` with their settings and exits."""

    class ListAction(argparse.Action):
        def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
            kwargs.setdefault("help", f"list the registered {' and '.join(kinds)} with their settings, and exit")
            super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

        def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
            print("\n\n".join(format_components(k) for k in kinds))
            parser.exit()

    return ListAction


def list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", nargs="?", choices=KINDS, metavar="KIND",
                   help=f"one of {', '.join(KINDS)} (default: every kind, names and descriptions only)")
    p.add_argument("pattern", nargs="?", metavar="PATTERN", help="only names matching this glob, e.g. '*probe*'")


def list_command(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(KINDS)
    print("\n\n".join(format_components(k, args.pattern, fields=bool(args.kind)) for k in kinds))
    return 0


COMMANDS = {  # name -> (flags, handler, help)
    "list": (list_args, list_command, "list the registered backbones, strategies, encoders, fusions, losses, modalities"),
}
