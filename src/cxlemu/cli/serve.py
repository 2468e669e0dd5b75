"""The machine process's entry point: ``python -m cxlemu.cli.serve NAME
[--ready-fd FD]`` (what ``cxlemu start NAME`` runs in the background).

The server (machine/server.py) sits on the machine floor and knows nothing of
the commands it serves: this module, on the CLI floor, hands it the CLI as
the runner of forwarded command lines.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


class CliCommands:
    """Runs one forwarded ``cxlemu`` command line (``cli/main.py``'s
    ``_main``) with an argument parser built once, on first use."""

    def __init__(self) -> None:
        self.parser: "argparse.ArgumentParser | None" = None

    def __call__(self, argv: list[str]) -> int:
        from cxlemu.cli.main import _main, build_parser
        if self.parser is None:
            self.parser = build_parser()
        return _main(argv, self.parser)


def run_foreground(name: str, ready_fd: int | None = None) -> int:
    """Serve machine ``name`` with the CLI's commands until stopped."""
    from cxlemu.machine.server import run_foreground as serve
    return serve(name, CliCommands(), ready_fd)


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m cxlemu.cli.serve",
                                 description="serve one cxlemu machine (use: cxlemu start NAME)")
    ap.add_argument("name")
    ap.add_argument("--ready-fd", type=int)
    args = ap.parse_args(argv)
    return run_foreground(args.name, args.ready_fd)


if __name__ == "__main__":   # pragma: no cover
    sys.exit(main())
