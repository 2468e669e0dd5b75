"""Multi-command front end shared by cxl, ndctl and daxctl (the behaviour of
cxl/cxl.c, ndctl/ndctl.c, daxctl/daxctl.c and util/main.c, util/help.c).

Observable rules reproduced here (checked with the Debian v76.1 binaries):

* Only the *first* argument is inspected for global options:
  ``--version``/``-v`` run the ``version`` command, ``--help``/``-h`` run
  ``help``, ``--list-cmds`` prints the command table (one per line, without
  ndctl's ``create-nfit``/``test``/``bat``) and exits 0; any other
  ``-x``/``--x`` prints ``Unknown option: <arg>`` and ``\\n Usage: <usage>``
  on stderr and exits 129.
* No command: the main usage goes to **stdout**, exit 1.
* ``<tool> <cmd> --help`` (``--help`` exactly as the second word) becomes
  ``<tool> help <cmd>``.
* Unknown command: ``Unknown command: '<x>'`` on stderr, exit 1.
* A command's return value is the exit status modulo 256 (``-ENXIO`` ->
  250).
* ``help`` with no argument prints the main usage on stdout (exit 0);
  ``help <cmd>`` runs ``man <tool>-<cmd>``.  **cxlemu does not run man**:
  it prints the command's usage text (what ``<cmd> -h`` prints) on stdout
  and exits 0, or, when the real tool has no such man page, prints man-db's
  ``No manual entry for <page>`` on stderr and exits 16 like man does.

A command is a callable ``fn(argv, ctx) -> int`` where ``argv[0]`` is the
command name (as in C) and ``ctx`` is a :class:`CommandContext`.  Commands
may raise :class:`~cxlemu.tools.common.parse_options.CommandExit` (for
instance through ``parse_options``/``usage_with_options``) to mimic a C
``exit()``; its pending text is written and its code returned.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import field, replace
from typing import Any, Callable, Mapping, Sequence, TextIO

from .parse_options import CommandExit, parse_options, usage_text

from cxlemu.util.lazydc import dataclass

__all__ = [
    "CommandContext", "Command", "CommandFn", "Tool", "V81_VERSION",
    "MAN_NO_ENTRY_EXIT", "CXL_COMMANDS_V81", "NDCTL_COMMANDS_V81",
    "DAXCTL_COMMANDS_V81", "CXL_COMMANDS_V76", "CXL_COMMANDS_V84_EXTRA", "CXL_HELP_SUBCOMMANDS",
    "NDCTL_HELP_SUBCOMMANDS", "DAXCTL_HELP_SUBCOMMANDS", "NO_MAN_PAGE",
    "make_tool",
]

V81_VERSION = "81"
MAN_NO_ENTRY_EXIT = 16  # man-db: "No manual entry for ..."

# Command tables in the order of the C ``commands[]`` arrays (v81).
CXL_COMMANDS_V81: tuple[str, ...] = (
    "version", "list", "help", "zero-labels", "read-labels", "write-labels",
    "disable-memdev", "enable-memdev", "reserve-dpa", "free-dpa",
    "update-firmware", "set-alert-config", "wait-sanitize", "disable-port",
    "enable-port", "set-partition", "disable-bus", "create-region",
    "enable-region", "disable-region", "destroy-region", "monitor",
)
# Commands newer ndctl releases added that cxlemu implements (v83/v84: the
# poison commands, appended after v81's table).
CXL_COMMANDS_V84_EXTRA: tuple[str, ...] = ("inject-media-poison", "clear-media-poison")
# v76.1 lacks update-firmware, set-alert-config and wait-sanitize.
CXL_COMMANDS_V76: tuple[str, ...] = tuple(
    c for c in CXL_COMMANDS_V81
    if c not in ("update-firmware", "set-alert-config", "wait-sanitize"))
NDCTL_COMMANDS_V81: tuple[str, ...] = (
    "version", "create-nfit", "enable-namespace", "disable-namespace",
    "create-namespace", "destroy-namespace", "read-infoblock",
    "write-infoblock", "check-namespace", "clear-errors", "enable-region",
    "disable-region", "enable-dimm", "disable-dimm", "zero-labels",
    "read-labels", "write-labels", "init-labels", "check-labels",
    "inject-error", "update-firmware", "inject-smart", "wait-scrub",
    "activate-firmware", "start-scrub", "setup-passphrase",
    "update-passphrase", "remove-passphrase", "freeze-security",
    "sanitize-dimm", "load-keys", "wait-overwrite", "list", "monitor", "help",
)
DAXCTL_COMMANDS_V81: tuple[str, ...] = (
    "version", "list", "help", "split-acpi", "migrate-device-model",
    "create-device", "destroy-device", "reconfigure-device", "online-memory",
    "offline-memory", "disable-device", "enable-device",
)
# builtin_help_subcommands[] (only printed by "help --list-cmds")
CXL_HELP_SUBCOMMANDS = ("list",)
NDCTL_HELP_SUBCOMMANDS = ("enable-region", "disable-region", "zero-labels",
                          "enable-namespace", "disable-namespace")
DAXCTL_HELP_SUBCOMMANDS = ("list",)
# Commands without a man page in the real packages.
NO_MAN_PAGE = frozenset({"version", "help", "create-nfit", "split-acpi"})
# Hidden from --list-cmds by util/main.c.
_UNLISTED = frozenset({"create-nfit", "test", "bat"})


@dataclass
class CommandContext:
    """What a command gets besides argv."""

    stdout: TextIO
    stderr: TextIO
    backend: Any = None
    env: Mapping[str, str] = field(default_factory=dict)
    isatty: bool = False


CommandFn = Callable[[list[str], CommandContext], int]


@dataclass(frozen=True)
class Command:
    """An entry of the command table.

    ``fn`` is None for the built-ins ``version`` and ``help``; for any other
    name it marks a command cxlemu does not implement (it then reports that
    and exits 1).
    """

    name: str
    fn: CommandFn | None = None
    man_page: bool = True

    @property
    def listed(self) -> bool:
        return self.name not in _UNLISTED


@dataclass
class Tool:
    """One multi-command program (``cxl``, ``ndctl`` or ``daxctl``)."""

    name: str
    version: str
    commands: Sequence[Command]
    help_subcommands: Sequence[str] = ()

    # ---- texts -----------------------------------------------------------
    @property
    def usage_string(self) -> str:
        return f"{self.name} [--version] [--help] COMMAND [ARGS]"

    @property
    def more_info_string(self) -> str:
        return (f"See '{self.name} help COMMAND' for more information on a "
                f"specific command.\n {self.name} --list-cmds to see all "
                f"available commands")

    def main_usage_text(self) -> str:
        """What ``<tool>`` with no command prints on stdout."""
        return f"\n usage: {self.usage_string}\n\n\n {self.more_info_string}\n\n"

    def list_cmds_text(self) -> str:
        return "".join(f"{c.name}\n" for c in self.commands if c.listed)

    def find(self, name: str) -> Command | None:
        for c in self.commands:
            if c.name == name:
                return c
        return None

    # ---- entry points ------------------------------------------------------
    def main(self, argv: Sequence[str] | None = None,
             env: Mapping[str, str] | None = None, *,
             stdout: TextIO | None = None, stderr: TextIO | None = None,
             backend: Any = None, isatty: bool | None = None) -> int:
        """Run with ``argv`` *without* the program name (``sys.argv[1:]``)."""
        out = stdout if stdout is not None else sys.stdout
        err = stderr if stderr is not None else sys.stderr
        if isatty is None:
            try:
                isatty = out.isatty()
            except (AttributeError, ValueError, io.UnsupportedOperation):
                isatty = False
        ctx = CommandContext(out, err, backend,
                             dict(os.environ) if env is None else env, isatty)
        return self.run(list(sys.argv[1:] if argv is None else argv), ctx)

    def run(self, argv: Sequence[str], ctx: CommandContext) -> int:
        args = list(argv)
        # main_handle_options(): only the first word is looked at
        if args and args[0].startswith("-"):
            first = args[0]
            if first == "-h":
                args[0] = "--help"
            elif first == "-v":
                args[0] = "--version"
            elif first == "--list-cmds":
                ctx.stdout.write(self.list_cmds_text())
                return 0
            elif first not in ("--version", "--help"):
                ctx.stderr.write(f"Unknown option: {first}\n")
                ctx.stderr.write(usage_text(self.usage_string))
                return 129
        if not args:
            ctx.stdout.write(self.main_usage_text())
            return 1
        if args[0].startswith("--"):
            args[0] = args[0][2:]
        # main_handle_internal_command()
        if len(args) > 1 and args[1] == "--help":
            args = ["help", args[0], *args[2:]]
        cmd = self.find(args[0])
        if cmd is None:
            ctx.stderr.write(f"Unknown command: '{args[0]}'\n")
            return 1
        return self._run_builtin(cmd, args, ctx)

    # ---- internals ---------------------------------------------------------
    def _run_builtin(self, cmd: Command, args: list[str], ctx: CommandContext) -> int:
        try:
            if cmd.fn is not None:
                rc = cmd.fn(args, ctx)
            elif cmd.name == "version":
                rc = self._cmd_version(args, ctx)
            elif cmd.name == "help":
                rc = self._cmd_help(args, ctx)
            else:
                ctx.stderr.write(
                    f"{self.name}: '{cmd.name}' is not implemented by cxlemu\n")
                rc = 1
        except CommandExit as e:
            ctx.stdout.write(e.stdout)
            ctx.stderr.write(e.stderr)
            rc = e.exit_code
        return (rc or 0) & 0xFF

    def _cmd_version(self, args: list[str], ctx: CommandContext) -> int:
        ctx.stdout.write(f"{self.version}\n")
        return 0

    def _cmd_help(self, args: list[str], ctx: CommandContext) -> int:
        parsed = parse_options(args, [], [f"{self.name} help [command]"],
                               subcommands=list(self.help_subcommands))
        if not parsed.args:
            ctx.stdout.write(self.main_usage_text())
            return 0
        return self._show_man_page(parsed.args[0], ctx)

    def _show_man_page(self, topic: str, ctx: CommandContext) -> int:
        # util/help.c cmd_to_page(): names already starting with the tool
        # name are used as the page name as is.
        page = topic if topic.startswith(self.name) else f"{self.name}-{topic}"
        if page == self.name:
            ctx.stdout.write(self.main_usage_text())
            return 0
        prefix = f"{self.name}-"
        cmd = self.find(page[len(prefix):]) if page.startswith(prefix) else None
        if cmd is None or not cmd.man_page or cmd.fn is None:
            ctx.stderr.write(f"No manual entry for {page}\n")
            return MAN_NO_ENTRY_EXIT
        # cxlemu substitutes the option summary for the man page: run
        # "<cmd> -h" with captured output and show what it printed.
        cap_out, cap_err = io.StringIO(), io.StringIO()
        sub = replace(ctx, stdout=cap_out, stderr=cap_err)
        try:
            cmd.fn([cmd.name, "-h"], sub)
        except CommandExit as e:
            cap_out.write(e.stdout)
            cap_err.write(e.stderr)
        ctx.stdout.write(cap_out.getvalue() + cap_err.getvalue())
        return 0


def lazy_command(module: str, func: str) -> CommandFn:
    """``module.func``, its module imported on first use: a command line
    imports the one command it runs (``ndctl list`` does not load the label
    and ioctl code of ``read-labels``)."""
    def run(argv: list[str], ctx: CommandContext) -> int:
        import importlib
        fn: CommandFn = getattr(importlib.import_module(module), func)
        return fn(argv, ctx)
    run.__name__ = func
    run.target = (module, func)        # type: ignore[attr-defined]
    return run


def make_tool(name: str, table: Sequence[str], impls: Mapping[str, CommandFn], *,
              version: str = V81_VERSION,
              help_subcommands: Sequence[str] = ()) -> Tool:
    """Build a :class:`Tool` whose command order is ``table`` (one of the
    ``*_COMMANDS_V81`` tuples); ``impls`` maps names to implementations."""
    unknown = set(impls) - set(table)
    if unknown:
        raise ValueError(f"commands not in the {name} table: {sorted(unknown)}")
    cmds = [Command(n, impls.get(n), man_page=n not in NO_MAN_PAGE) for n in table]
    return Tool(name, version, cmds, tuple(help_subcommands))
