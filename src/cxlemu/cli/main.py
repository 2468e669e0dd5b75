"""The ``cxlemu`` command: create, inspect and drive emulated CXL machines."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from cxlemu._version import __version__

if TYPE_CHECKING:
    import argparse
    from types import SimpleNamespace

EPILOG = """examples:
  cxlemu demo
  cxlemu create box --topology biscuitos-b
  cxlemu exec box -- cxl list -vvv
  cxlemu shell box
"""


#: Commands defined here (not by a plugin) whose run needs no other subcommand:
#: for them the plugins' parsers are not built (cxlemu exec b -- cxl list starts
#: faster; issue 13).  ``start`` is not one: it serves every command line.
CORE_ONLY_COMMANDS = frozenset({"exec"})


def build_parser(plugins: bool = True) -> "argparse.ArgumentParser":
    """The ``cxlemu`` parser; ``plugins=False``: only the commands defined in
    this module (enough to parse and run a command of CORE_ONLY_COMMANDS)."""
    import argparse

    from cxlemu.cli import commands as c
    p = argparse.ArgumentParser(prog="cxlemu", description=__doc__.replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"cxlemu {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    add("topologies", c.cmd_topologies, "list the built-in topologies")
    sp = add("topology", c.cmd_topology, "print a built-in topology as TOML "
                                          "(topology generate --devices N ...: a generated one)")
    sp.add_argument("preset")
    sp.add_argument("generate_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    sp = add("create", c.cmd_create, "create and boot a machine")
    sp.add_argument("name")
    sp.add_argument("--topology", "-t", required=True, help="a preset name or a TOML file")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set",
                    help="override a topology field (dotted path, arrays by index: numa.0.memory=4G)")
    add("ls", c.cmd_ls, "list machines")
    sp = add("rm", c.cmd_rm, "remove machines and their media")
    sp.add_argument("names", nargs="+")
    sp = add("show", c.cmd_show, "machine summary as JSON (devices, media files, windows, regions)")
    sp.add_argument("name")
    sp.add_argument("--json", action="store_true", help="JSON even on a terminal (tables there otherwise)")
    sp = add("exec", c.cmd_exec, "run a tool (cxl, ndctl, daxctl, numactl, lspci, dd, cat, ls) on a machine")
    sp.add_argument("name", help=MACHINE_HELP)
    sp.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = EXEC_HELP
    sp = add("shell", c.cmd_shell, "a subshell whose PATH has the machine's tools")
    sp.add_argument("name", help=MACHINE_HELP)
    sp.add_argument("-c", dest="command", metavar="COMMAND",
                    help="run one command line in that environment and exit with its status (like sh -c)")
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = SHELL_HELP
    sp = add("iomem", c.cmd_iomem, "the machine's /proc/iomem")
    sp.add_argument("name")
    sp = add("dmesg", c.cmd_dmesg, "the machine's kernel log")
    sp.add_argument("name")
    sp = add("acpi", c.cmd_acpi, "decode the machine's ACPI tables (CEDT, SRAT, HMAT, FACP)")
    sp.add_argument("name")
    sp.add_argument("table", nargs="?", default="CEDT")
    sp.add_argument("--raw", metavar="FILE", help="write the binary table to FILE")
    sp = add("sysfs", c.cmd_sysfs, "render, read or write the machine's sysfs")
    sp.add_argument("name", help=MACHINE_HELP)
    sp.add_argument("action", choices=["render", "read", "write", "ls"],
                    help="render OUTDIR | read PATH... | write PATH VALUE | ls [PATH...]")
    sp.add_argument("args", nargs="*", help="the action's arguments")
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = SYSFS_HELP
    sp = add("reboot", c.cmd_reboot, "reboot: volatile memory is lost, persistent memory survives")
    sp.add_argument("name")
    sp = add("power-fail", c.cmd_power_fail, "cut the power: unflushed stores are lost unless eADR")
    sp.add_argument("name")
    sp = add("translate", c.cmd_translate, "translate HPA <-> (region, position, memdev, DPA)")
    sp.add_argument("name")
    sp.add_argument("kind", choices=["hpa", "dpa"])
    sp.add_argument("args", nargs="+")
    sp = add("demo", c.cmd_demo, "narrate the seed's DEVDAX walkthrough on topology B")
    sp.add_argument("--keep", action="store_true", help="keep the demo machine")
    sp = add("start", c.cmd_start, "run the machine as a process: commands talk to it, no load/save each time")
    sp.add_argument("name")
    sp.add_argument("--foreground", "-f", action="store_true", help="serve in this terminal until Ctrl-C")
    sp = add("stop", c.cmd_stop, "stop the machine process (its state is saved; cxlemu start resumes it)")
    sp.add_argument("name")
    sp = add("status", c.cmd_status, "is the machine running: pid, socket, uptime, journal, mounts")
    sp.add_argument("name")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--check", action="store_true", help="also check the kernel model's invariants (fsck)")
    # subcommands contributed by other modules: each has register(add) -> None
    import importlib
    for mod in PLUGINS if plugins else ():
        try:
            importlib.import_module(mod).register(add)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    return p


MACHINE_HELP = "the machine (see: cxlemu ls)"

EXEC_HELP = """\
COMMAND is one of the bundled tools, run on the machine with the same arguments
as the real tool: cxl, ndctl, daxctl, numactl, lspci, dd (if=/of= a host file,
/dev/mem or /dev/daxX.Y), and cat, ls, readlink, tree for the machine's /sys,
/proc and /dev (other paths go to the host's binaries).  Any other COMMAND runs
on the host with the machine's tools first in PATH.

examples:
  cxlemu exec box -- cxl list -M -u
  cxlemu exec box -- cat /sys/bus/cxl/devices/mem0/serial
  cxlemu exec box -- sh -c 'cxl list -R | jq .'
"""

SHELL_HELP = """\
In the shell, cxl, ndctl, daxctl, numactl, lspci and dd act on the machine;
cat, ls, readlink and tree act on its /sys, /proc and /dev and pass every
other path (and stdin: cxl list | cat) to the host's binaries.  The prompt is
(cxlemu:NAME) $.

examples:
  cxlemu shell box
  cxlemu shell box -c 'cxl list -M | grep serial'
"""

SYSFS_HELP = """\
actions:
  render OUTDIR      write /sys, /proc and /dev as real files into OUTDIR (new or empty)
  read PATH...       print attributes (binary ones such as CDAT as bytes)
  write PATH VALUE   write VALUE and a newline, as echo VALUE > PATH does
  ls [PATH...]       list directories (default /sys)

examples:
  cxlemu sysfs box read /sys/bus/cxl/devices/mem0/pmem/size
  cxlemu sysfs box render /tmp/box && ls /tmp/box/sys/bus/cxl/devices
"""

PLUGINS = (
    "cxlemu.cli.mm_commands",      # memory blocks, allocations, nodes (volatile memory / hotplug)
    "cxlemu.cli.pmem_commands",    # persistent memory helpers
    "cxlemu.cli.real_commands",    # real, mount, umount: the machine's /sys, /proc, /dev for real programs
    "cxlemu.cli.run_commands",     # workloads, runs, traces (tiering)
    "cxlemu.cli.ras_commands",     # RAS: cxlemu fault (media errors, health, link down)
    "cxlemu.cli.draw",             # cxlemu draw: graphviz picture / rich tree of the topology
    "cxlemu.cli.rack_commands",    # racks, the fabric manager, the host policy agent (issue 11)
    "cxlemu.cli.scenario_commands",  # seed 002: zswap's unwanted migration, aggregating CXL nodes (DAMON helper)
)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else list(argv)
    # The client fast path: a command for a running machine goes to its process
    # before anything heavy is imported (machine/client.py).
    from cxlemu.machine import client
    rc = client.maybe_forward(args_in)
    if rc is not None:
        return rc
    return _main(args_in, startup=argv is None)


def _parse_exec_quickly(args_in: list[str]) -> "SimpleNamespace | None":
    """``exec NAME -- COMMAND [ARGS...]`` parsed exactly as build_parser()'s
    parser parses it (NAME, then everything after the first ``--``), without
    importing argparse and building the parser, which cost more than the rest
    of starting ``cxlemu exec b -- cxl list`` (issue 13); None for any other
    shape of command line (argparse decides those)."""
    if len(args_in) < 3 or args_in[0] != "exec" or args_in[2] != "--" or args_in[1].startswith("-"):
        return None
    from types import SimpleNamespace

    from cxlemu.cli.commands import cmd_exec
    return SimpleNamespace(command="exec", name=args_in[1], argv=args_in[3:], fn=cmd_exec)


def _gc_frozen(fn, *a, **kw):
    """fn(*a, **kw) in a command-line process (cxlemu ...) that is about to
    import the commands and the machine model: thousands of objects that live
    as long as the process.  The cyclic garbage collector is paused meanwhile
    and those objects are then frozen (gc.freeze: never scanned again), which
    spares a few dozen collections that would find no garbage (issue 13: a
    command's start-up time).  Not for in-process callers (tests, the API):
    freezing would keep their garbage alive."""
    import gc
    was = gc.isenabled()
    gc.disable()
    try:
        return fn(*a, **kw)
    finally:
        gc.freeze()
        if was:
            gc.enable()


def _main(args_in: list[str], parser: "argparse.ArgumentParser | None" = None, *, startup: bool = False) -> int:
    """Parse and run one command (the machine process calls this with its
    parser built once; ``startup``: this process was started to run it)."""
    args = None
    extra: list[str] = []
    if parser is None:
        args = _gc_frozen(_parse_exec_quickly, args_in) if startup else _parse_exec_quickly(args_in)
    if args is None:
        if parser is None:
            plugins = not (args_in and args_in[0] in CORE_ONLY_COMMANDS)
            parser = _gc_frozen(build_parser, plugins=plugins) if startup else build_parser(plugins=plugins)
        args, extra = parser.parse_known_args(args_in)
        if extra and not getattr(args, "_allow_unknown", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args._extra = extra
    args._startup = startup
    # a command that runs command lines (start --foreground serves the machine
    # in process) gets this dispatcher rather than importing it (cli/main.py
    # imports the commands)
    args._run_command = lambda argv: _main(argv, parser)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 1
    from cxlemu.machine import client
    from cxlemu.machine.paths import MachineError, MachineRunning
    from cxlemu.topology.schema import TopologyError
    try:
        return int(args.fn(args) or 0)
    except MachineRunning as e:
        # the machine was started after the fast path looked: send the command there
        rc = None
        fds = client.stdio_fds()
        if client.serving.get() is None and fds is not None:
            from cxlemu.machine.store import Store
            rc = client.run(str(Store().path(e.name)), args_in, fds=fds)
        if rc is None:
            print(f"cxlemu: {e}", file=sys.stderr)
            return 1
        return rc
    except TopologyError as e:
        print(f"cxlemu: topology error: {e.field}: {e.reason}", file=sys.stderr)
        return 2
    except MachineError as e:
        print(f"cxlemu: {e}", file=sys.stderr)
        return getattr(e, "exit_status", 1)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except OSError as e:           # a host file or directory the command was pointed at
        where = f"{e.filename}: " if e.filename else ""
        print(f"cxlemu: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except Exception as e:         # never a traceback from user input (CXLEMU_DEBUG=1 shows it)
        import os
        if os.environ.get("CXLEMU_DEBUG"):
            raise
        print(f"cxlemu: internal error: {type(e).__name__}: {e} (CXLEMU_DEBUG=1 shows the traceback; "
              f"please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
