"""Tests for cxlemu.tools.common.command (cxl/cxl.c, ndctl/ndctl.c,
daxctl/daxctl.c, util/main.c, util/help.c behaviour)."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.tools.common.command import (
    CXL_COMMANDS_V76, CXL_COMMANDS_V81, CXL_HELP_SUBCOMMANDS,
    DAXCTL_COMMANDS_V81, DAXCTL_HELP_SUBCOMMANDS, MAN_NO_ENTRY_EXIT,
    NDCTL_COMMANDS_V81, NDCTL_HELP_SUBCOMMANDS, Command, CommandContext, Tool,
    make_tool,
)
from cxlemu.tools.common.jsonc import display_json
from cxlemu.tools.common.log import (
    LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_NOTICE, Log, file_sink, log_priority,
    standard_sink,
)
from cxlemu.tools.common.parse_options import (
    error_text, parse_options, usage_with_options,
)
from cxlemu.tools.common.util_json import UTIL_JSON_HUMAN

from .test_parse_options import (
    CXL_LIST_OPTIONS, CXL_LIST_USAGE, DAXCTL_LIST_OPTIONS, DAXCTL_LIST_USAGE,
    NDCTL_LIST_OPTIONS, NDCTL_LIST_USAGE,
)

# ---------------------------------------------------------------------------
# golden texts from the Debian v76.1 binaries
# ---------------------------------------------------------------------------

# captured with: cxl; echo $?  -> exit 1, stderr ''
CXL_NO_COMMAND_STDOUT = """\

 usage: cxl [--version] [--help] COMMAND [ARGS]


 See 'cxl help COMMAND' for more information on a specific command.
 cxl --list-cmds to see all available commands

"""
# captured with: cxl foo; echo $?  -> exit 1, stdout ''
CXL_FOO_STDERR = "Unknown command: 'foo'\n"
# captured with: cxl -x; echo $?  -> exit 129, stdout ''
CXL_X_STDERR = "Unknown option: -x\n\n Usage: cxl [--version] [--help] COMMAND [ARGS]\n"
# captured with: cxl --list-cmds; echo $?  -> exit 0
CXL_LIST_CMDS_V76 = """\
version
list
help
zero-labels
read-labels
write-labels
disable-memdev
enable-memdev
reserve-dpa
free-dpa
disable-port
enable-port
set-partition
disable-bus
create-region
enable-region
disable-region
destroy-region
monitor
"""
# captured with: cxl help --bogus; echo $?  -> exit 129
CXL_HELP_BOGUS_STDERR = "  Error: unknown option `bogus'\n\n usage: cxl help [command]\n\n\n"
# captured with: ndctl --list-cmds  (create-nfit is filtered out)
NDCTL_LIST_CMDS = "".join(f"{c}\n" for c in NDCTL_COMMANDS_V81 if c != "create-nfit")


def _list_command(options, usages):
    """A stand-in "list" that parses like the real one and lists nothing."""
    def cmd_list(argv, ctx):
        values, args = parse_options(argv, options, usages)
        for a in args:
            ctx.stderr.write(error_text(f'unknown parameter "{a}"\n'))
        if args:
            usage_with_options(usages, options)
        if values.get("single") and not values.get("port_filter"):
            usage_with_options(usages, options, error_text(
                "-S/--single expects a port filter: -p/--port=\n"))
        out, err = display_json([], UTIL_JSON_HUMAN if values.get("human") else 0)
        ctx.stderr.write(err)
        ctx.stdout.write(out)
        return 0
    return cmd_list


def cxl_v76() -> Tool:
    return make_tool("cxl", CXL_COMMANDS_V76,
                     {"list": _list_command(CXL_LIST_OPTIONS, CXL_LIST_USAGE)},
                     version="76.1", help_subcommands=CXL_HELP_SUBCOMMANDS)


def ndctl_v76() -> Tool:
    return make_tool("ndctl", NDCTL_COMMANDS_V81,
                     {"list": _list_command(NDCTL_LIST_OPTIONS, NDCTL_LIST_USAGE)},
                     version="76.1", help_subcommands=NDCTL_HELP_SUBCOMMANDS)


def daxctl_v76() -> Tool:
    return make_tool("daxctl", DAXCTL_COMMANDS_V81,
                     {"list": _list_command(DAXCTL_LIST_OPTIONS, DAXCTL_LIST_USAGE)},
                     version="76.1", help_subcommands=DAXCTL_HELP_SUBCOMMANDS)


TOOLS = {"cxl": cxl_v76, "ndctl": ndctl_v76, "daxctl": daxctl_v76}


def run_tool(tool: Tool, argv, **kw):
    out, err = io.StringIO(), io.StringIO()
    rc = tool.main(argv, {}, stdout=out, stderr=err, **kw)
    return rc, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------------
# behaviour
# ---------------------------------------------------------------------------


def test_no_command_prints_main_usage_on_stdout_exit_1():
    assert run_tool(cxl_v76(), []) == (1, CXL_NO_COMMAND_STDOUT, "")


def test_unknown_command_and_option():
    assert run_tool(cxl_v76(), ["foo"]) == (1, "", CXL_FOO_STDERR)
    assert run_tool(cxl_v76(), ["-x"]) == (129, "", CXL_X_STDERR)
    assert run_tool(cxl_v76(), ["--foo", "list"])[0] == 129
    # only the first word is examined for global options
    assert run_tool(cxl_v76(), ["foo", "-x"]) == (1, "", CXL_FOO_STDERR)


@pytest.mark.parametrize("argv", [["version"], ["--version"], ["-v"], ["--version", "x"]])
def test_version_forms(argv):
    assert run_tool(cxl_v76(), argv) == (0, "76.1\n", "")


@pytest.mark.parametrize("argv", [["help"], ["--help"], ["-h"]])
def test_help_without_topic_is_main_usage_exit_0(argv):
    assert run_tool(cxl_v76(), argv) == (0, CXL_NO_COMMAND_STDOUT, "")


def test_list_cmds():
    assert run_tool(cxl_v76(), ["--list-cmds"]) == (0, CXL_LIST_CMDS_V76, "")
    assert run_tool(ndctl_v76(), ["--list-cmds"]) == (0, NDCTL_LIST_CMDS, "")
    assert run_tool(cxl_v76(), ["help", "--list-cmds"]) == (130, "list ", "")
    v81 = make_tool("cxl", CXL_COMMANDS_V81, {})
    assert "update-firmware\nset-alert-config\nwait-sanitize\n" in run_tool(v81, ["--list-cmds"])[1]


def test_help_option_errors():
    assert run_tool(cxl_v76(), ["help", "--bogus"]) == (129, "", CXL_HELP_BOGUS_STDERR)
    assert run_tool(cxl_v76(), ["help", "list", "--bogus"]) == (129, "", CXL_HELP_BOGUS_STDERR)


def test_help_topic_prints_command_usage_instead_of_man():
    tool = cxl_v76()
    for argv in (["help", "list"], ["list", "--help"], ["--help", "list"], ["help", "cxl-list"]):
        rc, out, err = run_tool(tool, argv)
        assert rc == 0 and err == ""
        assert out.startswith("\n usage: cxl list [<options>]\n\n    -m, --memdev")
    assert run_tool(tool, ["help", "cxl"]) == (0, CXL_NO_COMMAND_STDOUT, "")


@pytest.mark.parametrize("argv,page", [
    (["help", "foo"], "cxl-foo"), (["help", "version"], "cxl-version"),
    (["help", "--help"], "cxl-help"), (["foo", "--help"], "cxl-foo"),
    (["help", "zero-labels"], "cxl-zero-labels"),   # not implemented here
])
def test_help_without_man_page(argv, page):
    assert run_tool(cxl_v76(), argv) == (MAN_NO_ENTRY_EXIT, "", f"No manual entry for {page}\n")


def test_command_exit_status_and_exceptions():
    def neg(argv, ctx):
        return -6  # -ENXIO

    def boom(argv, ctx):
        ctx.stdout.write("partial\n")
        usage_with_options(["x"], [], error_text("bad\n"))

    seen = {}

    def record(argv, ctx):
        seen["argv"], seen["ctx"] = argv, ctx
        return 0

    tool = Tool("t", "1", [Command("neg", neg), Command("boom", boom),
                           Command("rec", record), Command("nope")])
    assert run_tool(tool, ["neg"]) == (250, "", "")
    assert run_tool(tool, ["boom"]) == (129, "partial\n", "  Error: bad\n\n\n usage: x\n\n\n")
    assert run_tool(tool, ["nope"]) == (1, "", "t: 'nope' is not implemented by cxlemu\n")
    out = io.StringIO()
    rc = tool.main(["rec", "a", "--b"], {"X": "1"}, stdout=out, stderr=io.StringIO(),
                   backend="BACKEND", isatty=True)
    assert rc == 0 and seen["argv"] == ["rec", "a", "--b"]
    ctx = seen["ctx"]
    assert isinstance(ctx, CommandContext)
    assert (ctx.backend, ctx.env, ctx.isatty, ctx.stdout) == ("BACKEND", {"X": "1"}, True, out)
    tool.main(["rec"], {}, stdout=io.StringIO(), stderr=io.StringIO())
    assert seen["ctx"].isatty is False  # StringIO is not a tty


def test_make_tool_rejects_unknown_names():
    with pytest.raises(ValueError):
        make_tool("cxl", CXL_COMMANDS_V81, {"bogus": lambda a, c: 0})
    tool = make_tool("ndctl", NDCTL_COMMANDS_V81, {})
    assert tool.find("create-nfit").man_page is False
    assert tool.find("create-nfit").listed is False
    assert tool.find("list").man_page is True


def test_list_stand_in_matches_cxl_list_behaviour():
    assert run_tool(cxl_v76(), ["list"]) == (0, "[\n]\n",
                                             "  Warning: no matching devices found\n\n")
    assert run_tool(cxl_v76(), ["list", "-u"]) == (0, "", "")
    rc, out, err = run_tool(cxl_v76(), ["list", "foo"])
    assert rc == 129 and err.startswith('  Error: unknown parameter "foo"\n\n\n usage: cxl list')


# ---------------------------------------------------------------------------
# conformance with the installed real binaries
# ---------------------------------------------------------------------------

CONFORMANCE = [
    ("cxl", []), ("cxl", ["foo"]), ("cxl", ["-x"]), ("cxl", ["--foo"]), ("cxl", ["-"]),
    ("cxl", ["--"]), ("cxl", ["version"]), ("cxl", ["--version"]), ("cxl", ["-v"]),
    ("cxl", ["--list-cmds"]), ("cxl", ["help"]), ("cxl", ["--help"]), ("cxl", ["-h"]),
    ("cxl", ["help", "--bogus"]), ("cxl", ["help", "list", "--bogus"]),
    ("cxl", ["help", "--list-cmds"]), ("cxl", ["list", "-Z"]), ("cxl", ["list", "--bogus"]),
    ("cxl", ["list", "-S"]), ("cxl", ["list"]), ("cxl", ["list", "-u"]),
    ("cxl", ["list", "bar"]), ("cxl", ["foo", "-x"]), ("cxl", [""]),
    ("ndctl", []), ("ndctl", ["foo"]), ("ndctl", ["--list-cmds"]), ("ndctl", ["version"]),
    ("ndctl", ["-x"]), ("ndctl", ["list", "--bogus"]), ("ndctl", ["help", "--list-cmds"]),
    ("daxctl", []), ("daxctl", ["foo"]), ("daxctl", ["--list-cmds"]), ("daxctl", ["-v"]),
    ("daxctl", ["-x"]), ("daxctl", ["list", "-x"]), ("daxctl", ["list", "-u"]),
]


def _skip_if_devices(argv, real):
    if argv[:1] == ["list"] and real.stdout.startswith(("{", "[\n ")):
        pytest.skip("this machine has devices to list")


@pytest.mark.conformance
@pytest.mark.parametrize("tool,argv", CONFORMANCE)
def test_matches_real_binary(tool, argv):
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} not installed")
    real = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=20)
    _skip_if_devices(argv, real)
    ours = run_tool(TOOLS[tool](), argv)
    assert ours == (real.returncode, real.stdout, real.stderr)


@pytest.mark.conformance
@pytest.mark.parametrize("argv", [["help", "foo"], ["help", "version"], ["foo", "--help"]])
def test_missing_man_page_matches_real_binary(argv):
    if shutil.which("cxl") is None or shutil.which("man") is None:
        pytest.skip("cxl or man not installed")
    real = subprocess.run(["cxl", *argv], capture_output=True, text=True, timeout=20)
    ours = run_tool(cxl_v76(), argv)
    assert ours == (real.returncode, real.stdout, real.stderr)


# ---------------------------------------------------------------------------
# logging (util/log.c), part of the command infrastructure
# ---------------------------------------------------------------------------


# captured with: cxl create-region -w ""; echo $?  -> exit 1, stdout ''
# (and identically with CXL_REGION_LOG=err: the command forces LOG_INFO)
CXL_CREATE_REGION_NO_DECODER = ("cxl region: parse_create_options: no root decoder specified\n"
                                "cxl region: cmd_create_region: created 0 regions\n")
# captured with: CXL_LIST_LOG=7 cxl list 2>&1 | head -1
CXL_LIST_DEBUG_FIRST_LINE = "cxl list: cmd_list: walk topology\n"


@pytest.mark.parametrize("text,prio", [
    ("7", 7), (" 6 ", 6), ("3\n", 3), ("err", LOG_ERR), ("error", LOG_ERR),
    ("info", LOG_INFO), ("debug", LOG_DEBUG), ("notice", LOG_NOTICE),
    ("warn", 0), ("", 0), ("7x", 0), (" err", 0), ("-1", -1),
])
def test_log_priority_parsing(text, prio):
    assert log_priority(text) == prio


def test_region_style_logging_golden():
    err = io.StringIO()
    rl = Log.init("cxl region", "CXL_REGION_LOG", {"CXL_REGION_LOG": "err"}, err)
    assert rl.priority == LOG_ERR
    rl.priority = LOG_INFO  # what cxl/region.c does after parse_options()
    rl.err("parse_create_options", "no root decoder specified\n")
    rl.info("cmd_create_region", "created 0 regions")  # newline added
    rl.dbg("cmd_create_region", "hidden")
    assert err.getvalue() == CXL_CREATE_REGION_NO_DECODER


def test_list_style_logging_uses_environment():
    err = io.StringIO()
    log = Log.init("cxl list", "CXL_LIST_LOG", {}, err)
    log.dbg("cmd_list", "walk topology\n")
    log.info("cmd_list", "x")
    assert err.getvalue() == ""
    log = Log.init("cxl list", "CXL_LIST_LOG", {"CXL_LIST_LOG": "7"}, err)
    log.dbg("cmd_list", "walk topology\n")
    assert err.getvalue() == CXL_LIST_DEBUG_FIRST_LINE
    assert log.enabled(LOG_DEBUG) and log.debug == log.dbg


def test_log_raw_and_sinks():
    err, out = io.StringIO(), io.StringIO()
    log = Log("libcxl", LOG_DEBUG, err)
    log.err("do_cmd", "no newline", raw=True)
    log.notice("f", "n")
    assert err.getvalue() == "libcxl: do_cmd: no newlinelibcxl: f: n\n"
    err, out = io.StringIO(), io.StringIO()
    mon = Log("cxl/monitor", LOG_INFO, err, standard_sink, out)
    mon.info("f", '{"event":1}')
    mon.err("f", "oops")
    assert (out.getvalue(), err.getvalue()) == ('{"event":1}\n', "oops\n")
    f = io.StringIO()
    flog = Log("cxl/monitor", LOG_INFO, f, file_sink, pid=42, clock_ns=lambda: 12 * 10**9 + 5)
    flog.info("f", "ev")
    flog.notice("f", "note")
    assert f.getvalue() == "[        12.000000005] [42] ev\nnote\n"


@pytest.mark.conformance
def test_debug_log_line_matches_real_cxl_list():
    if shutil.which("cxl") is None:
        pytest.skip("cxl not installed")
    import os
    real = subprocess.run(["cxl", "list"], capture_output=True, text=True, timeout=20,
                          env={**os.environ, "CXL_LIST_LOG": "7"})
    assert real.stderr.startswith(CXL_LIST_DEBUG_FIRST_LINE)
    real = subprocess.run(["cxl", "create-region", "-w", ""], capture_output=True, text=True,
                          timeout=20, env={**os.environ, "CXL_REGION_LOG": "err"})
    if "CXL operation" in real.stderr or real.stdout:
        pytest.skip("this machine has a CXL topology")
    assert (real.returncode, real.stderr) == (1, CXL_CREATE_REGION_NO_DECODER)


# random command lines, compared with the real "cxl list" end to end (on a
# machine without CXL devices the real command lists nothing, so every
# difference is a parsing/usage difference)
_TOKENS = ["-M", "-u", "-Mu", "-vv", "-m", "mem0", "-S", "-p", "port1", "-Z", "--memdev",
           "--memdev=x", "--me", "--no-memdevs", "--no-m", "--human", "--hum=1", "-",
           "--", "foo", "-h", "--reg", "--region", "--regions", "-R", "--no-", "-verbose",
           "--single", "-Sp", "--alert", "-iT", "-Mx", "-s", "--list-opts", "--ports",
           "--no-single", "-mh", "--de", "--=", "-M-", "--bogus=1"]


@pytest.mark.conformance
@settings(max_examples=60, deadline=None)
@given(argv=st.lists(st.sampled_from(_TOKENS), max_size=4))
def test_random_cxl_list_command_lines_match_real_binary(argv):
    exe = shutil.which("cxl")
    if exe is None:
        pytest.skip("cxl not installed")
    real = subprocess.run([exe, "list", *argv], capture_output=True, text=True, timeout=20)
    _skip_if_devices(["list"], real)
    assert run_tool(cxl_v76(), ["list", *argv]) == (real.returncode, real.stdout, real.stderr)


def test_every_lazily_imported_command_resolves():
    """cxl, ndctl and daxctl import a command's module when it runs
    (lazy_command): each named module and function must exist."""
    import importlib

    from cxlemu.tools.cxl.main import commands
    from cxlemu.tools.daxctl.main import IMPLS as DAXCTL
    from cxlemu.tools.ndctl.main import IMPLS as NDCTL
    seen = 0
    for table in (commands(), NDCTL, DAXCTL):
        for name, fn in table.items():
            module, func = fn.target
            assert callable(getattr(importlib.import_module(module), func)), name
            seen += 1
    assert seen >= 40


def test_ndctl_list_does_not_import_the_label_code():
    import subprocess
    import sys
    code = ("import io, sys; from cxlemu.tools.runner import run_tool; from cxlemu.sysfs.backend import "
            "DirectoryBackend; run_tool('ndctl', ['list'], DirectoryBackend('/nonexistent'), env={}, "
            "stdout=io.StringIO(), stderr=io.StringIO(), isatty=False); "
            "print(sorted(m for m in sys.modules if m.startswith('cxlemu.tools.ndctl')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "cxlemu.tools.ndctl.list" in p.stdout and "cxlemu.tools.ndctl.labels" not in p.stdout
