"""``xmodal`` command line: thin subcommands over the library API.

Each subcommand parses its flags, calls one library function, and prints what it did. Errors that
a user can act on (bad files, bad configs, bad checkpoints) are printed as one line, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from xmodal.cli import commands, transfer_commands
from xmodal.cli import index_commands
from xmodal.cli import bind_commands

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SUBCOMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {
    "demo": (commands.demo_args, commands.demo, "world -> LiT alignment -> zero-shot -> report, in minutes on a CPU"),
    "world": (commands.world_args, commands.world, "generate the built-in multimodal world (and a preview)"),
    "align": (commands.align_args, commands.align, "contrastively align two towers on a manifest"),
    "zeroshot": (commands.zeroshot_args, commands.zeroshot, "zero-shot classify images or videos from class names"),
    "bind": (bind_commands.bind_args, bind_commands.bind, "bind a new modality (audio, sensor series) to a frozen tower"),
    "fuse": (bind_commands.fuse_args, bind_commands.fuse, "train a fusion classifier; accuracy per modality subset and under noise"),
    "index": (index_commands.index_args, index_commands.index, "build or update a searchable index of media files"),
    "search": (index_commands.search_args, index_commands.search, "search an index by text or by an example file"),
    "serve": (index_commands.serve_args, index_commands.serve, "a local web page to search an index"),
    "transfer": (transfer_commands.transfer_args, transfer_commands.transfer, "transfer an aligned model to video with one strategy"),
    "compare": (transfer_commands.compare_args, transfer_commands.compare, "run many transfer strategies side by side (table + plots)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmodal", description="Cross-modal transfer learning on CLIP-family backbones.")
    parser.add_argument("--version", action="version", version=f"xmodal {__import__('xmodal').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_args, run, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from xmodal.errors import XmodalError

    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except XmodalError as exc:
        print(f"xmodal {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xmodal {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
