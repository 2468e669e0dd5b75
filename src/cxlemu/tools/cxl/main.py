"""The ``cxl`` tool (cxl/cxl.c, v81 command table).

Each subcommand lives in its own module and is registered in
:data:`COMMANDS` by name; commands not registered yet answer
"'<cmd>' is not implemented by cxlemu" (exit 1).  To add one, write
``cmd_<name>(argv, ctx) -> int`` in a new module (argv[0] is the command
name, as in C) and add it to :func:`commands`.
"""

from __future__ import annotations


from cxlemu.tools.common.command import (CXL_COMMANDS_V81, CXL_COMMANDS_V84_EXTRA, CXL_HELP_SUBCOMMANDS,
                                         CommandContext, CommandFn, Tool, lazy_command, make_tool)

__all__ = ["commands", "build_tool", "tool_main"]


def commands() -> dict[str, CommandFn]:
    """Implemented subcommands, by name (must be in the v81 table)."""
    region, memdev = "cxlemu.tools.cxl.region", "cxlemu.tools.cxl.memdev"
    table = {
        "list": lazy_command("cxlemu.tools.cxl.list", "cmd_list"),
        "disable-memdev": lazy_command(memdev, "cmd_disable_memdev"),
        "enable-memdev": lazy_command(memdev, "cmd_enable_memdev"),
        "reserve-dpa": lazy_command(memdev, "cmd_reserve_dpa"),
        "free-dpa": lazy_command(memdev, "cmd_free_dpa"),
        "set-alert-config": lazy_command(memdev, "cmd_set_alert_config"),
        "wait-sanitize": lazy_command(memdev, "cmd_wait_sanitize"),
        "set-partition": lazy_command(memdev, "cmd_set_partition"),
        "disable-port": lazy_command("cxlemu.tools.cxl.port", "cmd_disable_port"),
        "enable-port": lazy_command("cxlemu.tools.cxl.port", "cmd_enable_port"),
        "disable-bus": lazy_command("cxlemu.tools.cxl.bus", "cmd_disable_bus"),
        "create-region": lazy_command(region, "cmd_create_region"),
        "enable-region": lazy_command(region, "cmd_enable_region"),
        "disable-region": lazy_command(region, "cmd_disable_region"),
        "destroy-region": lazy_command(region, "cmd_destroy_region"),
        "monitor": lazy_command("cxlemu.tools.cxl.monitor", "cmd_monitor"),
        "inject-media-poison": lazy_command("cxlemu.tools.cxl.poison", "cmd_inject_media_poison"),
        "clear-media-poison": lazy_command("cxlemu.tools.cxl.poison", "cmd_clear_media_poison"),
    }
    table.update(_label_commands())
    return table


def _label_commands() -> dict[str, CommandFn]:
    """read-labels / write-labels / zero-labels from :mod:`.labels` (a
    colleague's module), when it is present; imported on first use like the
    others."""
    import importlib.util
    if importlib.util.find_spec("cxlemu.tools.cxl.labels") is None:
        return {}
    labels = "cxlemu.tools.cxl.labels"
    return {"read-labels": lazy_command(labels, "cmd_read_labels"),
            "write-labels": lazy_command(labels, "cmd_write_labels"),
            "zero-labels": lazy_command(labels, "cmd_zero_labels")}


def build_tool() -> Tool:
    return make_tool("cxl", CXL_COMMANDS_V81 + CXL_COMMANDS_V84_EXTRA, commands(),
                     help_subcommands=CXL_HELP_SUBCOMMANDS)


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    """Runner entry point: ``argv`` excludes the program name."""
    return build_tool().run(argv, ctx)
