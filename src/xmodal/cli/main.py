"""``xmodal`` command line: thin subcommands over the library API.

Each subcommand parses its flags, calls one library function, and prints what it did. Errors that
a user can act on (bad files, bad configs, bad checkpoints) are printed as one line, exit status 2.
Under torchrun (``torchrun --nproc-per-node N -m xmodal align ...``) every process joins one process
group (``engine/distributed.py``); only rank 0 prints, shows progress and writes files.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from xmodal.cli import bind_commands, commands, embed_commands, index_commands, listing, transfer_commands
from xmodal.cli.common import check_out

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]
SUBCOMMANDS: dict[str, Command] = {  # name -> (define its flags, run it, one line of help), in --help order
    **commands.COMMANDS, **bind_commands.COMMANDS, **index_commands.COMMANDS, **embed_commands.COMMANDS,
    **transfer_commands.COMMANDS,
    **listing.COMMANDS,
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``xmodal`` parser; with ``command``, only that subcommand's flags are defined (the others are
    listed by name), so that a command imports only the registries its own flags read."""
    parser = argparse.ArgumentParser(prog="xmodal", description="Cross-modal transfer learning on CLIP-family backbones.")
    parser.add_argument("--version", action="version", version=f"xmodal {__import__('xmodal').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_args, run, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=listing.HelpFormatter)
        if command is None or command == name:
            add_args(p)
        p.set_defaults(run=run)
    return parser


def _join_ranks() -> None:
    """Under torchrun: join the process group; the ranks but 0 print nothing to stdout and show no bars."""
    from xmodal.engine import distributed

    if distributed.setup() and not distributed.is_main():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
        os.environ["XMODAL_PROGRESS"] = "0"


def main(argv: list[str] | None = None) -> int:
    from xmodal.engine import distributed
    from xmodal.engine.progress import quiet_library_bars
    from xmodal.errors import XmodalError

    _join_ranks()
    quiet_library_bars()  # before transformers is imported
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    try:
        args = build_parser(command).parse_args(argv)
    except SystemExit as exc:  # --help, --version, --list, or a usage error that argparse printed
        return int(exc.code or 0)
    try:
        check_out(args)  # before any work: an --out that names a file would fail at the very end
        return int(args.run(args) or 0)
    except XmodalError as exc:
        where = "" if distributed.is_main() else f" (rank {distributed.rank()})"
        print(f"xmodal {command}{where}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xmodal {command}: interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.teardown()


if __name__ == "__main__":
    sys.exit(main())
