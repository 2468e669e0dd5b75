"""The ``cxl`` tool (cxl/cxl.c, v81 command table).

Each subcommand lives in its own module and is registered in
:data:`COMMANDS` by name; commands not registered yet answer
"'<cmd>' is not implemented by cxlemu" (exit 1).  To add one, write
``cmd_<name>(argv, ctx) -> int`` in a new module (argv[0] is the command
name, as in C) and add it to :func:`commands`.
"""

from __future__ import annotations

from typing import Callable

from cxlemu.tools.common.command import (CXL_COMMANDS_V81, CXL_HELP_SUBCOMMANDS, CommandContext,
                                         CommandFn, Tool, make_tool)

__all__ = ["commands", "build_tool", "tool_main"]


def _lazy(module: str, func: str) -> CommandFn:
    """Import a command module on first use (keeps ``cxl version`` cheap)."""
    def run(argv: list[str], ctx: CommandContext) -> int:
        import importlib
        fn: Callable[[list[str], CommandContext], int] = getattr(
            importlib.import_module(module), func)
        return fn(argv, ctx)
    run.__name__ = func
    return run


def commands() -> dict[str, CommandFn]:
    """Implemented subcommands, by name (must be in the v81 table)."""
    return {
        "list": _lazy("cxlemu.tools.cxl.list", "cmd_list"),
    }


def build_tool() -> Tool:
    return make_tool("cxl", CXL_COMMANDS_V81, commands(),
                     help_subcommands=CXL_HELP_SUBCOMMANDS)


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    """Runner entry point: ``argv`` excludes the program name."""
    return build_tool().run(argv, ctx)
