"""Tests for cxlemu.tools.common.parse_options (util/parse-options.c).

Golden texts below were captured from the Debian v76.1 binaries installed
here (the parse-options code is identical in v81: ``git diff v76.1 v81 --
util/parse-options.c`` is empty).  Each constant names the exact command
used; the text is stderr, the exit code is in the ``*_RC`` constant.
The option tables are transcribed from the same binaries' usage output.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.tools.common.parse_options import (
    OPT_ARGUMENT, OPT_BIT, OPT_BOOLEAN, OPT_BOOLEAN_SET, OPT_CALLBACK,
    OPT_CALLBACK_DEFAULT, OPT_CALLBACK_NOOPT, OPT_END, OPT_FILENAME,
    OPT_GROUP, OPT_INCR, OPT_INTEGER, OPT_LONG, OPT_SET_PTR, OPT_SET_UINT,
    OPT_STRING, OPT_U64, OPT_UINTEGER, OPT__VERBOSITY, PARSE_OPT_HIDDEN,
    PARSE_OPT_KEEP_ARGV0, PARSE_OPT_KEEP_DASHDASH, PARSE_OPT_KEEP_UNKNOWN,
    PARSE_OPT_NO_INTERNAL_HELP, PARSE_OPT_NONEG, PARSE_OPT_OPTARG,
    PARSE_OPT_STOP_AT_NON_OPTION, CommandExit, Option, OptType, UsageError,
    error_text, parse_options, parse_options_usage_text, strtol, strtoull,
    usage_with_options, usage_with_options_text, warning_text,
)

# ---------------------------------------------------------------------------
# option tables of the v76.1 binaries (cxl/list.c, cxl/region.c,
# daxctl/list.c, ndctl/list.c)
# ---------------------------------------------------------------------------

CXL_LIST_USAGE = ["cxl list [<options>]"]
CXL_LIST_OPTIONS = [
    OPT_STRING("m", "memdev", "memdev_filter", "memory device name(s)",
               "filter by CXL memory device name(s)"),
    OPT_STRING("s", "serial", "serial_filter", "memory device serial(s)",
               "filter by CXL memory device serial number(s)"),
    OPT_BOOLEAN("M", "memdevs", "memdevs", "include CXL memory device info"),
    OPT_STRING("b", "bus", "bus_filter", "bus device name",
               "filter by CXL bus device name(s)"),
    OPT_BOOLEAN("B", "buses", "buses", "include CXL bus info"),
    OPT_STRING("p", "port", "port_filter", "port device name",
               "filter by CXL port device name(s)"),
    OPT_BOOLEAN("P", "ports", "ports", "include CXL port info"),
    OPT_BOOLEAN("S", "single", "single", "skip listing descendant objects"),
    OPT_STRING("e", "endpoint", "endpoint_filter", "endpoint device name",
               "filter by CXL endpoint device name(s)"),
    OPT_BOOLEAN("E", "endpoints", "endpoints", "include CXL endpoint info"),
    OPT_STRING("d", "decoder", "decoder_filter", "decoder device name",
               "filter by CXL decoder device name(s) / class"),
    OPT_BOOLEAN("D", "decoders", "decoders", "include CXL decoder info"),
    OPT_BOOLEAN("T", "targets", "targets",
                "include CXL target data with decoders, ports, or regions"),
    OPT_STRING("r", "region", "region_filter", "region name",
               "filter by CXL region name(s)"),
    OPT_BOOLEAN("R", "regions", "regions", "include CXL regions"),
    OPT_BOOLEAN("i", "idle", "idle", "include disabled devices"),
    OPT_BOOLEAN("u", "human", "human", "use human friendly number formats"),
    OPT_BOOLEAN("H", "health", "health", "include memory device health information"),
    OPT_BOOLEAN("I", "partition", "partition",
                "include memory device partition information"),
    OPT_BOOLEAN("A", "alert-config", "alert_config",
                "include alert configuration information"),
    OPT_INCR("v", "verbose", "verbose", "increase output detail"),
    OPT_BOOLEAN(0, "debug", "debug", "debug list walk"),
    OPT_END(),
]

CXL_CREATE_REGION_USAGE = ["cxl create-region <target0> ... [<options>]"]
CXL_CREATE_REGION_OPTIONS = [
    OPT_STRING("b", "bus", "bus", "bus name", "Limit operation to the specified bus"),
    OPT_STRING("d", "decoder", "root_decoder", "root decoder name",
               "Limit to / use the specified root decoder"),
    OPT_BOOLEAN(0, "debug", "debug", "turn on debug"),
    OPT_STRING("s", "size", "size", "size in bytes or with a K/M/G etc. suffix",
               "total size desired for the resulting region."),
    OPT_INTEGER("w", "ways", "ways",
                "number of memdevs participating in the regions interleave set"),
    OPT_INTEGER("g", "granularity", "granularity", "granularity of the interleave set"),
    OPT_STRING("t", "type", "type", "region type", "region type - 'pmem' or 'ram'"),
    OPT_BOOLEAN("m", "memdevs", "memdevs", "non-option arguments are memdevs"),
    OPT_BOOLEAN("u", "human", "human", "use human friendly number formats"),
    OPT_END(),
]

DAXCTL_LIST_USAGE = ["daxctl list [<options>]"]
DAXCTL_LIST_OPTIONS = [
    OPT_STRING("r", "region", "region", "region-id", "filter by region"),
    OPT_STRING("d", "dev", "dev", "dev-id", "filter by dax device instance name"),
    OPT_BOOLEAN("D", "devices", "devs", "include dax device info"),
    OPT_BOOLEAN("R", "regions", "regions", "include dax region info"),
    OPT_BOOLEAN("M", "mappings", "mappings", "include dax mappings info"),
    OPT_BOOLEAN("i", "idle", "idle", "include idle devices"),
    OPT_BOOLEAN("u", "human", "human", "use human friendly number formats "),
    OPT_END(),
]

NDCTL_LIST_USAGE = ["ndctl list [<options>]"]
NDCTL_LIST_OPTIONS = [
    OPT_STRING("b", "bus", "bus", "bus-id", "filter by bus"),
    OPT_STRING("r", "region", "region", "region-id", "filter by region"),
    OPT_STRING("d", "dimm", "dimm", "dimm-id", "filter by dimm"),
    OPT_STRING("n", "namespace", "namespace", "namespace-id", "filter by namespace id"),
    OPT_STRING("m", "mode", "mode", "namespace-mode", "filter by namespace mode"),
    OPT_STRING("t", "type", "type", "region-type", "filter by region-type"),
    OPT_STRING("U", "numa-node", "numa_node", "numa node", "filter by numa node"),
    OPT_BOOLEAN("B", "buses", "buses", "include bus info"),
    OPT_BOOLEAN("D", "dimms", "dimms", "include dimm info"),
    OPT_BOOLEAN("F", "firmware", "firmware", "include firmware info"),
    OPT_BOOLEAN("H", "health", "health", "include dimm health"),
    OPT_BOOLEAN("R", "regions", "regions", "include region info"),
    OPT_BOOLEAN("N", "namespaces", "namespaces", "include namespace info (default)"),
    OPT_BOOLEAN("X", "device-dax", "dax", "include device-dax info"),
    OPT_BOOLEAN("C", "capabilities", "capabilities", "include region capability info"),
    OPT_BOOLEAN("i", "idle", "idle", "include idle devices"),
    OPT_BOOLEAN("c", "configured", "configured",
                "include configured namespaces, disabled or not"),
    OPT_BOOLEAN("M", "media-errors", "media_errors", "include media errors"),
    OPT_BOOLEAN("u", "human", "human", "use human friendly number formats "),
    OPT_INCR("v", "verbose", "verbose", "increase output detail"),
    OPT_END(),
]

TABLES = {
    ("cxl", "list"): (CXL_LIST_OPTIONS, CXL_LIST_USAGE),
    ("cxl", "create-region"): (CXL_CREATE_REGION_OPTIONS, CXL_CREATE_REGION_USAGE),
    ("daxctl", "list"): (DAXCTL_LIST_OPTIONS, DAXCTL_LIST_USAGE),
    ("ndctl", "list"): (NDCTL_LIST_OPTIONS, NDCTL_LIST_USAGE),
}


def run_parse(cmd: str, args: list[str], options=None, usage=None, **kw):
    """Return (exit_code, stdout, stderr, parsed-or-None)."""
    try:
        parsed = parse_options([cmd, *args], options, usage, **kw)
    except CommandExit as e:
        return e.exit_code, e.stdout, e.stderr, None
    return 0, "", "", parsed


# ---------------------------------------------------------------------------
# golden outputs (stderr) of the real v76.1 binaries
# ---------------------------------------------------------------------------

# captured with: cxl list --bogus; echo $?  ->  exit 129, stdout ''
CXL_LIST_BOGUS_RC = 129
CXL_LIST_BOGUS = """\
  Error: unknown option `bogus'

 usage: cxl list [<options>]

    -m, --memdev <memory device name(s)>
                          filter by CXL memory device name(s)
    -s, --serial <memory device serial(s)>
                          filter by CXL memory device serial number(s)
    -M, --memdevs         include CXL memory device info
    -b, --bus <bus device name>
                          filter by CXL bus device name(s)
    -B, --buses           include CXL bus info
    -p, --port <port device name>
                          filter by CXL port device name(s)
    -P, --ports           include CXL port info
    -S, --single          skip listing descendant objects
    -e, --endpoint <endpoint device name>
                          filter by CXL endpoint device name(s)
    -E, --endpoints       include CXL endpoint info
    -d, --decoder <decoder device name>
                          filter by CXL decoder device name(s) / class
    -D, --decoders        include CXL decoder info
    -T, --targets         include CXL target data with decoders, ports, or regions
    -r, --region <region name>
                          filter by CXL region name(s)
    -R, --regions         include CXL regions
    -i, --idle            include disabled devices
    -u, --human           use human friendly number formats
    -H, --health          include memory device health information
    -I, --partition       include memory device partition information
    -A, --alert-config    include alert configuration information
    -v, --verbose         increase output detail
        --debug           debug list walk

"""

# captured with: cxl list -Z; echo $?  ->  exit 129, stdout ''
CXL_LIST_Z_RC = 129
CXL_LIST_Z = """\
  Error: unknown switch `Z'

 usage: cxl list [<options>]

    -m, --memdev <memory device name(s)>
                          filter by CXL memory device name(s)
    -s, --serial <memory device serial(s)>
                          filter by CXL memory device serial number(s)
    -M, --memdevs         include CXL memory device info
    -b, --bus <bus device name>
                          filter by CXL bus device name(s)
    -B, --buses           include CXL bus info
    -p, --port <port device name>
                          filter by CXL port device name(s)
    -P, --ports           include CXL port info
    -S, --single          skip listing descendant objects
    -e, --endpoint <endpoint device name>
                          filter by CXL endpoint device name(s)
    -E, --endpoints       include CXL endpoint info
    -d, --decoder <decoder device name>
                          filter by CXL decoder device name(s) / class
    -D, --decoders        include CXL decoder info
    -T, --targets         include CXL target data with decoders, ports, or regions
    -r, --region <region name>
                          filter by CXL region name(s)
    -R, --regions         include CXL regions
    -i, --idle            include disabled devices
    -u, --human           use human friendly number formats
    -H, --health          include memory device health information
    -I, --partition       include memory device partition information
    -A, --alert-config    include alert configuration information
    -v, --verbose         increase output detail
        --debug           debug list walk

"""

# captured with: cxl list -S; echo $?  ->  exit 129, stdout ''
CXL_LIST_S_RC = 129
CXL_LIST_S = """\
  Error: -S/--single expects a port filter: -p/--port=


 usage: cxl list [<options>]

    -m, --memdev <memory device name(s)>
                          filter by CXL memory device name(s)
    -s, --serial <memory device serial(s)>
                          filter by CXL memory device serial number(s)
    -M, --memdevs         include CXL memory device info
    -b, --bus <bus device name>
                          filter by CXL bus device name(s)
    -B, --buses           include CXL bus info
    -p, --port <port device name>
                          filter by CXL port device name(s)
    -P, --ports           include CXL port info
    -S, --single          skip listing descendant objects
    -e, --endpoint <endpoint device name>
                          filter by CXL endpoint device name(s)
    -E, --endpoints       include CXL endpoint info
    -d, --decoder <decoder device name>
                          filter by CXL decoder device name(s) / class
    -D, --decoders        include CXL decoder info
    -T, --targets         include CXL target data with decoders, ports, or regions
    -r, --region <region name>
                          filter by CXL region name(s)
    -R, --regions         include CXL regions
    -i, --idle            include disabled devices
    -u, --human           use human friendly number formats
    -H, --health          include memory device health information
    -I, --partition       include memory device partition information
    -A, --alert-config    include alert configuration information
    -v, --verbose         increase output detail
        --debug           debug list walk

"""

# captured with: cxl create-region --bogus; echo $?  ->  exit 129, stdout ''
CXL_CREATE_REGION_BOGUS_RC = 129
CXL_CREATE_REGION_BOGUS = """\
  Error: unknown option `bogus'

 usage: cxl create-region <target0> ... [<options>]

    -b, --bus <bus name>  Limit operation to the specified bus
    -d, --decoder <root decoder name>
                          Limit to / use the specified root decoder
        --debug           turn on debug
    -s, --size <size in bytes or with a K/M/G etc. suffix>
                          total size desired for the resulting region.
    -w, --ways <n>        number of memdevs participating in the regions interleave set
    -g, --granularity <n>
                          granularity of the interleave set
    -t, --type <region type>
                          region type - 'pmem' or 'ram'
    -m, --memdevs         non-option arguments are memdevs
    -u, --human           use human friendly number formats

"""

# captured with: daxctl list --bogus; echo $?  ->  exit 129, stdout ''
DAXCTL_LIST_BOGUS_RC = 129
DAXCTL_LIST_BOGUS = """\
  Error: unknown option `bogus'

 usage: daxctl list [<options>]

    -r, --region <region-id>
                          filter by region
    -d, --dev <dev-id>    filter by dax device instance name
    -D, --devices         include dax device info
    -R, --regions         include dax region info
    -M, --mappings        include dax mappings info
    -i, --idle            include idle devices
    -u, --human           use human friendly number formats\x20

"""

# captured with: daxctl list -x; echo $?  ->  exit 129, stdout ''
DAXCTL_LIST_X_RC = 129
DAXCTL_LIST_X = """\
  Error: unknown switch `x'

 usage: daxctl list [<options>]

    -r, --region <region-id>
                          filter by region
    -d, --dev <dev-id>    filter by dax device instance name
    -D, --devices         include dax device info
    -R, --regions         include dax region info
    -M, --mappings        include dax mappings info
    -i, --idle            include idle devices
    -u, --human           use human friendly number formats\x20

"""

# captured with: ndctl list --bogus; echo $?  ->  exit 129, stdout ''
NDCTL_LIST_BOGUS_RC = 129
NDCTL_LIST_BOGUS = """\
  Error: unknown option `bogus'

 usage: ndctl list [<options>]

    -b, --bus <bus-id>    filter by bus
    -r, --region <region-id>
                          filter by region
    -d, --dimm <dimm-id>  filter by dimm
    -n, --namespace <namespace-id>
                          filter by namespace id
    -m, --mode <namespace-mode>
                          filter by namespace mode
    -t, --type <region-type>
                          filter by region-type
    -U, --numa-node <numa node>
                          filter by numa node
    -B, --buses           include bus info
    -D, --dimms           include dimm info
    -F, --firmware        include firmware info
    -H, --health          include dimm health
    -R, --regions         include region info
    -N, --namespaces      include namespace info (default)
    -X, --device-dax      include device-dax info
    -C, --capabilities    include region capability info
    -i, --idle            include idle devices
    -c, --configured      include configured namespaces, disabled or not
    -M, --media-errors    include media errors
    -u, --human           use human friendly number formats\x20
    -v, --verbose         increase output detail

"""


# ---------------------------------------------------------------------------
# golden comparisons
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("tool,cmd,args,rc,text", [
    ("cxl", "list", ["--bogus"], CXL_LIST_BOGUS_RC, CXL_LIST_BOGUS),
    ("cxl", "list", ["-Z"], CXL_LIST_Z_RC, CXL_LIST_Z),
    ("cxl", "create-region", ["--bogus"], CXL_CREATE_REGION_BOGUS_RC,
     CXL_CREATE_REGION_BOGUS),
    ("daxctl", "list", ["--bogus"], DAXCTL_LIST_BOGUS_RC, DAXCTL_LIST_BOGUS),
    ("daxctl", "list", ["-x"], DAXCTL_LIST_X_RC, DAXCTL_LIST_X),
    ("ndctl", "list", ["--bogus"], NDCTL_LIST_BOGUS_RC, NDCTL_LIST_BOGUS),
])
def test_unknown_option_golden(tool, cmd, args, rc, text):
    options, usage = TABLES[(tool, cmd)]
    code, out, err, _ = run_parse(cmd, args, options, usage)
    assert (code, out, err) == (rc, "", text)
    assert code == 129


def test_cxl_list_single_without_port_golden():
    # cxl/list.c: error("-S/--single expects a port filter: -p/--port=\n")
    # followed by usage_with_options(); same text in v76.1 and v81.
    code, _, _, parsed = run_parse("list", ["-S"], CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert code == 0 and parsed.values["single"] and parsed.values["port_filter"] is None
    with pytest.raises(UsageError) as ei:
        usage_with_options(CXL_LIST_USAGE, CXL_LIST_OPTIONS,
                           error_text("-S/--single expects a port filter: -p/--port=\n"))
    assert ei.value.exit_code == CXL_LIST_S_RC == 129
    assert ei.value.stderr == CXL_LIST_S


def test_unknown_parameter_pattern_matches_cxl_list_foo():
    # "cxl list foo" (v76.1) prints the error, a blank line, then usage
    text = error_text('unknown parameter "foo"\n') + \
        usage_with_options_text(CXL_LIST_USAGE, CXL_LIST_OPTIONS)
    assert text.startswith('  Error: unknown parameter "foo"\n\n\n usage: cxl list [<options>]\n\n')
    assert text.endswith("        --debug           debug list walk\n\n")


# ---------------------------------------------------------------------------
# messages of individual parse errors (texts observed with cxl list)
# ---------------------------------------------------------------------------

USAGE_HEAD = "\n usage: cxl list [<options>]\n\n"
M_LINE = ("    -m, --memdev <memory device name(s)>\n"
          "                          filter by CXL memory device name(s)\n")


@pytest.mark.parametrize("args,err", [
    (["-m"], "  Error: switch `m' requires a value\n" + USAGE_HEAD + M_LINE),
    (["--memdev"], "  Error: option `memdev' requires a value\n" + USAGE_HEAD + M_LINE),
    (["--me"], "  Error: Ambiguous option: me (could be --memdev or --memdevs)\n" + USAGE_HEAD),
    (["--de"], "  Error: Ambiguous option: de (could be --decoders or --debug)\n" + USAGE_HEAD),
    (["--mem=x"], "  Error: Ambiguous option: mem=x (could be --memdev or --memdevs)\n"
     + USAGE_HEAD),
    (["--no-"], "  Error: Ambiguous option: no- (could be --no-verbose or --no-debug)\n"
     + USAGE_HEAD),
    # parse_options_usage() picks the first long name that prefixes the
    # argument, so --memdevs=1 shows the --memdev line
    (["--memdevs=1"], "  Error: option `memdevs' takes no value\n" + USAGE_HEAD + M_LINE),
    (["--no-memdevs=1"], "  Error: option `no-memdevs' takes no value\n" + USAGE_HEAD + M_LINE),
    (["--no-memdev=x"], "  Error: option `no-memdev' takes no value\n" + USAGE_HEAD + M_LINE),
    (["-verbose"], "  Error: did you mean `--verbose` (with two dashes ?)\n"),
])
def test_cxl_list_parse_error_texts(args, err):
    code, out, text, _ = run_parse("list", args, CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert (code, out, text) == (129, "", err)


def test_unknown_switch_inside_bundle():
    code, _, err, _ = run_parse("list", ["-Mux"], CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert code == 129 and err.startswith("  Error: unknown switch `x'\n\n usage:")


def test_dash_inside_bundle_reports_empty_long_option():
    # "cxl list -M-" prints "unknown option `'" (argv[0] is rewritten to "--")
    code, _, err, _ = run_parse("list", ["-M-"], CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert code == 129 and err.startswith("  Error: unknown option `'\n\n usage:")


def test_numeric_errors_create_region():
    w_line = ("    -w, --ways <n>        number of memdevs participating in the "
              "regions interleave set\n")
    head = "\n usage: cxl create-region <target0> ... [<options>]\n\n"
    code, _, err, _ = run_parse("create-region", ["-w", "abc"],
                                CXL_CREATE_REGION_OPTIONS, CXL_CREATE_REGION_USAGE)
    assert (code, err) == (129, "  Error: switch `w' expects a numerical value\n" + head + w_line)
    code, _, err, _ = run_parse("create-region", ["--ways=1x"],
                                CXL_CREATE_REGION_OPTIONS, CXL_CREATE_REGION_USAGE)
    assert (code, err) == (129, "  Error: option `ways' expects a numerical value\n" + head + w_line)


@pytest.mark.parametrize("args", [["-h"], ["-Mh"], ["--help"], ["-vh"]])
def test_dash_h_prints_usage_exit_129(args):
    code, out, err, _ = run_parse("list", args, CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert code == 129 and out == ""
    assert err == usage_with_options_text(CXL_LIST_USAGE, CXL_LIST_OPTIONS)
    assert err.startswith("\n usage: cxl list [<options>]\n\n    -m, --memdev")


def test_short_value_may_be_h():
    # the 'h' check only applies where an option letter is expected
    code, _, _, p = run_parse("list", ["-mh"], CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert code == 0 and p.values["memdev_filter"] == "h"


def test_list_opts_and_list_cmds():
    code, out, err, _ = run_parse("list", ["--list-opts"], CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert code == 130 and err == ""
    assert out == ("--memdev --serial --memdevs --bus --buses --port --ports --single "
                   "--endpoint --endpoints --decoder --decoders --targets --region "
                   "--regions --idle --human --health --partition --alert-config "
                   "--verbose --debug ")
    code, out, err, _ = run_parse("list", ["--list-cmds"], CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert (code, out, err) == (130, "", "")
    code, out, _, _ = run_parse("help", ["--list-cmds"], [], ["x"], subcommands=["list", "b"])
    assert (code, out) == (130, "list b ")


def test_help_all_shows_hidden():
    opts = [OPT_BOOLEAN("a", "alpha", "a", "shown"),
            Option(OptType.BOOLEAN, "z", "zeta", "z", help="secret", flags=PARSE_OPT_HIDDEN)]
    _, _, err, _ = run_parse("x", ["-h"], opts, ["x"])
    assert "secret" not in err
    _, _, err, _ = run_parse("x", ["--help-all"], opts, ["x"])
    assert "    -z, --zeta            secret\n" in err


# ---------------------------------------------------------------------------
# successful parsing
# ---------------------------------------------------------------------------


def test_values_defaults_and_mixed_positionals():
    code, _, _, p = run_parse("create-region", ["mem0", "-d", "decoder0.0", "mem1",
                                                "--ways=2", "-g256", "-mu", "mem2"],
                              CXL_CREATE_REGION_OPTIONS, CXL_CREATE_REGION_USAGE)
    assert code == 0
    assert p.args == ["mem0", "mem1", "mem2"]
    assert p.values == {
        "bus": None, "root_decoder": "decoder0.0", "debug": False, "size": None,
        "ways": 2, "granularity": 256, "type": None, "memdevs": True, "human": True,
    }
    values, args = p  # unpacks like a tuple
    assert values is p.values and args == p.args


def test_initial_values_kept():
    _, _, _, p = run_parse("create-region", ["-m"], CXL_CREATE_REGION_OPTIONS,
                           CXL_CREATE_REGION_USAGE, values={"ways": -1, "extra": 5})
    assert p.values["ways"] == -1 and p.values["extra"] == 5 and p.values["memdevs"]


def test_incr_and_negation():
    _, _, _, p = run_parse("list", ["-vvv", "--verbose"], CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert p.values["verbose"] == 4
    _, _, _, p = run_parse("list", ["-vv", "--no-verbose", "-v"], CXL_LIST_OPTIONS,
                           CXL_LIST_USAGE)
    assert p.values["verbose"] == 1
    _, _, _, p = run_parse("list", ["-u", "--no-human", "-m", "a", "--no-memdev"],
                           CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert p.values["human"] is False and p.values["memdev_filter"] is None


def test_last_value_wins_and_forms():
    _, _, _, p = run_parse("list", ["-m", "mem0", "-mfoo", "--memdev=bar"],
                           CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert p.values["memdev_filter"] == "bar"
    _, _, _, p = run_parse("list", ["--memdev", "--bogus"], CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert p.values["memdev_filter"] == "--bogus"
    _, _, _, p = run_parse("list", ["--memdev="], CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert p.values["memdev_filter"] == ""
    _, _, _, p = run_parse("list", ["-m="], CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert p.values["memdev_filter"] == "="


def test_abbreviations():
    _, _, _, p = run_parse("list", ["--memdevs", "--alert", "--deb", "--sing",
                                    "--region=r1", "--no-hum"], CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    v = p.values
    assert v["memdevs"] and v["alert_config"] and v["debug"] and v["single"]
    assert v["region_filter"] == "r1" and v["human"] is False


def test_double_dash_ends_options():
    _, _, _, p = run_parse("list", ["-M", "--", "-x", "--bogus"], CXL_LIST_OPTIONS,
                           CXL_LIST_USAGE)
    assert p.args == ["-x", "--bogus"] and p.values["memdevs"]
    _, _, _, p = run_parse("list", ["-", "x"], CXL_LIST_OPTIONS, CXL_LIST_USAGE)
    assert p.args == ["-", "x"]


def test_parse_flags():
    opts = [OPT_BOOLEAN("a", "all", "all", "all")]
    _, _, _, p = run_parse("c", ["x", "-a", "y"], opts, ["c"],
                           flags=PARSE_OPT_STOP_AT_NON_OPTION)
    assert p.args == ["x", "-a", "y"] and p.values["all"] is False
    _, _, _, p = run_parse("c", ["-a", "--", "z"], opts, ["c"], flags=PARSE_OPT_KEEP_DASHDASH)
    assert p.args == ["--", "z"]
    _, _, _, p = run_parse("c", ["x"], opts, ["c"], flags=PARSE_OPT_KEEP_ARGV0)
    assert p.args == ["c", "x"]
    _, _, _, p = run_parse("c", ["-q", "--zz=1", "-aq", "w"], opts, ["c"],
                           flags=PARSE_OPT_KEEP_UNKNOWN)
    assert p.args == ["-q", "--zz=1", "-q", "w"] and p.values["all"]
    code, _, _, p = run_parse("c", ["-h"], opts, ["c"], flags=PARSE_OPT_NO_INTERNAL_HELP)
    assert code == 129  # -h is then simply an unknown switch
    code, _, _, p = run_parse("c", ["--help"], opts, ["c"], flags=PARSE_OPT_NO_INTERNAL_HELP)
    assert code == 129


def test_numeric_kinds_follow_c_conversions():
    opts = [OPT_INTEGER("i", "int", "i", "i"), OPT_UINTEGER("u", "uint", "u", "u"),
            OPT_LONG("l", "long", "l", "l"), OPT_U64("q", "u64", "q", "q")]
    _, _, _, p = run_parse("c", ["-i", "-5", "-u", "-1", "-l", "99999999999999999999",
                                 "-q", "-2"], opts, ["c"])
    assert p.values == {"i": -5, "u": 0xFFFFFFFF, "l": (1 << 63) - 1, "q": (1 << 64) - 2}
    # int truncation of strtol's LONG_MAX, empty string is a valid 0
    _, _, _, p = run_parse("c", ["-i", "4294967297", "--uint=", "--u64= 7"], opts, ["c"])
    assert p.values["i"] == 1 and p.values["u"] == 0 and p.values["q"] == 7
    code, _, err, _ = run_parse("c", ["--int=0x10"], opts, ["c"])
    assert code == 129 and err.startswith("  Error: option `int' expects a numerical value\n")
    _, _, _, p = run_parse("c", ["--no-int"], opts, ["c"], values={"i": 9})
    assert p.values["i"] == 0


def test_other_kinds():
    seen = []

    def cb(state, opt, arg, unset):
        seen.append((opt.long, arg, unset))
        if arg == "bad":
            return state.error("callback says no")
        state.values["cb"] = arg
        return 0

    opts = [
        OPT_BIT("b", "bit", "bits", "bit", 4),
        OPT_SET_UINT("s", "set", "mode", "set", 7),
        OPT_SET_PTR("p", "ptr", "ptr", "ptr", "PTR"),
        OPT_BOOLEAN_SET("A", "arm", "arm", "arm_set", "arm"),
        OPT_CALLBACK("c", "cb", None, "x", "callback", cb),
        OPT_CALLBACK_NOOPT("n", "noopt", None, None, "no arg", cb),
        OPT_CALLBACK_DEFAULT("d", "dflt", None, "x", "dflt", cb, "DEF"),
        OPT_FILENAME("f", "file", "file", "file", "a file"),
        OPT_STRING("o", "opt", "opt", "o", "optional", flags=PARSE_OPT_OPTARG, defval="D"),
        Option(OptType.BOOLEAN, "x", "xx", "xx", help="no neg", flags=PARSE_OPT_NONEG),
        OPT_ARGUMENT("arg", "pass through"),
    ]
    _, _, _, p = run_parse("c", ["-b", "-s", "-p", "-A", "-c", "v", "-n", "-d", "-f", "log",
                                 "-o", "pos", "--arg"], opts, ["c"], prefix="/tmp/")
    v = p.values
    assert (v["bits"], v["mode"], v["ptr"], v["arm"], v["arm_set"]) == (4, 7, "PTR", True, True)
    assert v["file"] == "/tmp/log" and v["opt"] == "D" and v["cb"] == "DEF"
    assert p.args == ["pos", "--arg"]
    assert seen == [("cb", "v", False), ("noopt", None, False), ("dflt", "DEF", False)]
    _, _, _, p = run_parse("c", ["-ofoo", "--no-bit", "--no-ptr", "-f/abs", "-d", "x"],
                           opts, ["c"], values={"bits": 5}, prefix="/tmp/")
    assert p.values["opt"] == "foo" and p.values["bits"] == 1 and p.values["ptr"] is None
    assert p.values["file"] == "/abs" and p.values["cb"] == "x"
    code, _, err, _ = run_parse("c", ["--no-xx"], opts, ["c"])
    assert code == 129 and err.startswith("  Error: option `no-xx' isn't available\n")
    code, _, err, _ = run_parse("c", ["--cb", "bad"], opts, ["c"])
    assert code == 129 and err.startswith("  Error: callback says no\n\n usage: c\n")
    code, _, err, _ = run_parse("c", ["--noopt=1"], opts, ["c"])
    assert code == 129 and "option `noopt' takes no value" in err
    code, _, err, _ = run_parse("c", ["--arg=1"], opts, ["c"])
    assert code == 129 and "option `arg' takes no value" in err


def test_callback_messages_on_success_go_to_stderr():
    import io

    def warn_cb(state, opt, arg, unset):
        state.error(f"odd value {arg}")
        state.values["w"] = arg
        return 0

    opts = [OPT_CALLBACK("w", "warn", "w", "x", "warns", warn_cb)]
    err = io.StringIO()
    values, args = parse_options(["c", "-w", "1", "pos"], opts, ["c"], stderr=err)
    assert (values["w"], args, err.getvalue()) == ("1", ["pos"], "  Error: odd value 1\n")
    code, _, text, _ = run_parse("c", ["-w", "2", "-Q"], opts, ["c"])
    assert code == 129 and text.startswith("  Error: odd value 2\n  Error: unknown switch `Q'\n")


def test_verbosity_callbacks():
    opts = OPT__VERBOSITY("verbosity")
    _, _, _, p = run_parse("c", ["-vv", "-q"], opts, ["c"], values={"verbosity": 0})
    assert p.values["verbosity"] == -1
    _, _, _, p = run_parse("c", ["-qq", "-v"], opts, ["c"], values={"verbosity": 0})
    assert p.values["verbosity"] == 1


def test_option_named_no_x_is_negated_by_bare_x():
    opts = [OPT_BOOLEAN(0, "no-online", "no_online", "don't online")]
    _, _, _, p = run_parse("c", ["--no-online"], opts, ["c"])
    assert p.values["no_online"] is True
    _, _, _, p = run_parse("c", ["--online"], opts, ["c"], values={"no_online": True})
    assert p.values["no_online"] is False
    _, _, _, p = run_parse("c", ["--onl"], opts, ["c"], values={"no_online": True})
    assert p.values["no_online"] is False


# ---------------------------------------------------------------------------
# usage layout
# ---------------------------------------------------------------------------


def test_usage_layout_all_kinds():
    opts = [
        OPT_GROUP("Group header:"),
        OPT_BOOLEAN("a", "all", "a", "short and long"),
        OPT_BOOLEAN("b", None, "b", "short only"),
        OPT_BOOLEAN(0, "cee", "c", "long only"),
        OPT_INTEGER("n", "num", "n", "number"),
        Option(OptType.INTEGER, "o", "opt-num", "o", help="optional number",
               flags=PARSE_OPT_OPTARG),
        Option(OptType.U64, "p", None, "p", help="short optional", flags=PARSE_OPT_OPTARG),
        OPT_STRING("s", "str", "s", None, "no argh"),
        Option(OptType.STRING, "t", "txt", "t", None, "opt no argh", PARSE_OPT_OPTARG),
        Option(OptType.STRING, "u", None, "u", "w", "short opt argh", PARSE_OPT_OPTARG),
        OPT_CALLBACK_NOOPT("x", "exact-24-chars", None, None, "exactly", lambda *a: 0),
        OPT_BOOLEAN("y", "exact-25-charss", "y", "too wide"),
        OPT_GROUP(""),
        OPT_ARGUMENT("raw", "argument"),
    ]
    text = usage_with_options_text(["c one", "c two", "", "free text", ""], opts)
    assert text == (
        "\n usage: c one\n"
        "    or: c two\n"
        "\n"
        "    free text\n"
        "\n"
        "\nGroup header:\n"
        "    -a, --all             short and long\n"
        "    -b                    short only\n"
        "        --cee             long only\n"
        "    -n, --num <n>         number\n"
        "    -o, --opt-num[=<n>]   optional number\n"
        "    -p[<n>]               short optional\n"
        "    -s, --str ...         no argh\n"
        "    -t, --txt[=...]       opt no argh\n"
        "    -u[<w>]               short opt argh\n"
        "    -x, --exact-24-chars  exactly\n"
        "    -y, --exact-25-charss\n"
        "                          too wide\n"
        "\n"
        "        --raw             argument\n"
        "\n"
    )


def test_parse_options_usage_text_lookup():
    text = parse_options_usage_text(CXL_LIST_USAGE, CXL_LIST_OPTIONS, "S", True)
    assert text == USAGE_HEAD + "    -S, --single          skip listing descendant objects\n"
    assert parse_options_usage_text(CXL_LIST_USAGE, CXL_LIST_OPTIONS, "zzz", False) == USAGE_HEAD
    assert parse_options_usage_text(None, CXL_LIST_OPTIONS, "no-idle", False) == \
        "    -i, --idle            include disabled devices\n"


def test_message_helpers():
    assert error_text("x") == "  Error: x\n"
    assert warning_text("no matching devices found\n") == \
        "  Warning: no matching devices found\n\n"
    assert len(error_text("y" * 5000)) == len("  Error: ") + 1023 + 1


def test_option_rejects_long_short_name():
    with pytest.raises(ValueError):
        Option(OptType.BOOLEAN, "ab", "x")


def test_subcommand_usage_is_built_with_ndctl_prefix():
    code, _, err, _ = run_parse("help", ["--bogus"], [], [], subcommands=["a", "b"])
    assert code == 129
    assert err == "  Error: unknown option `bogus'\n\n usage: ndctl help [<options>] {a|b}\n\n\n"


# ---------------------------------------------------------------------------
# C number conversions against the C library itself
# ---------------------------------------------------------------------------

_num_text = st.text(alphabet=" \t+-0123456789abcdefxX8kK", max_size=24)


def _libc():
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library("c")
    if not name:
        pytest.skip("no libc for ctypes")
    libc = ctypes.CDLL(name)
    libc.strtoull.restype = ctypes.c_ulonglong
    libc.strtoull.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
    libc.strtol.restype = ctypes.c_long
    libc.strtol.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
    return libc, ctypes


def _c_call(fn, ctypes, text, base):
    buf = ctypes.create_string_buffer(text.encode())
    end = ctypes.c_char_p()
    val = fn(ctypes.cast(buf, ctypes.c_char_p), ctypes.byref(end), base)
    consumed = ctypes.cast(end, ctypes.c_void_p).value - ctypes.addressof(buf)
    return val, consumed


@pytest.mark.conformance
@settings(max_examples=300, deadline=None)
@given(text=_num_text, base=st.sampled_from([0, 10]))
def test_strtoull_strtol_match_glibc(text, base):
    libc, ctypes = _libc()
    assert strtoull(text, base) == _c_call(libc.strtoull, ctypes, text, base)
    assert strtol(text, base) == _c_call(libc.strtol, ctypes, text, base)


def test_strtoull_known_vectors():
    assert strtoull("  42xyz") == (42, 4)
    assert strtoull("0x1f", 0) == (31, 4)
    assert strtoull("0x", 0) == (0, 1)
    assert strtoull("017", 0) == (15, 3)
    assert strtoull("-1") == ((1 << 64) - 1, 2)
    assert strtoull("99999999999999999999") == ((1 << 64) - 1, 20)
    assert strtoull("  ") == (0, 0)
    assert strtol("-99999999999999999999") == (-(1 << 63), 21)


# ---------------------------------------------------------------------------
# conformance with the installed real binaries
# ---------------------------------------------------------------------------

CONFORMANCE_CASES = [
    ("cxl", "list", a) for a in (
        ["--bogus"], ["-Z"], ["-m"], ["--memdev"], ["--me"], ["--de"], ["--memdevs=1"],
        ["-verbose"], ["-MZ"], ["--list-opts"], ["--list-cmds"], ["--help-all"], ["-Mux"],
        ["--no-"], ["-nohuman"], ["--no-memdevs=1"], ["--no-memdev=x"], ["--mem=x"],
        ["-M-"], ["-h"], ["-Mh"], ["--=x"], ["--no-me"], ["--deb=x"], ["--debug="],
        ["-vh"], ["--h"], ["--he"], ["-s"], ["--alert-config=yes"], ["--no-alert-config="],
    )
] + [
    ("cxl", "create-region", ["-w", "abc"]),
    ("cxl", "create-region", ["--ways=1x"]),
    ("cxl", "create-region", ["--granularity"]),
    ("cxl", "create-region", ["-h"]),
    ("cxl", "create-region", ["--bogus"]),
    ("daxctl", "list", ["-x"]),
    ("daxctl", "list", ["--bogus"]),
    ("daxctl", "list", ["--re"]),
    ("ndctl", "list", ["--bogus"]),
    ("ndctl", "list", ["-Nn"]),
    ("ndctl", "list", ["--n"]),
    ("ndctl", "list", ["-namespace"]),
]


@pytest.mark.conformance
@pytest.mark.parametrize("tool,cmd,args", CONFORMANCE_CASES)
def test_usage_errors_match_real_binary(tool, cmd, args):
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} not installed")
    real = subprocess.run([exe, cmd, *args], capture_output=True, text=True, timeout=20)
    options, usage = TABLES[(tool, cmd)]
    code, out, err, _ = run_parse(cmd, args, options, usage)
    if real.returncode in (129, 130):
        assert (code, out, err) == (real.returncode, real.stdout, real.stderr)
    else:  # the real parser accepted the arguments: so must we
        assert code == 0, err
