"""Conformance of cxlemu's region, memdev, port and bus commands with the
REAL Debian ``cxl`` (76.1), run on a rendered cxl-test tree in a private
mount namespace.

A rendered tree is static: writing a sysfs attribute there only changes a
file, so the real binary cannot create, enable or destroy anything.  What
it can do, and what is compared here byte for byte (exit code, stdout,
stderr), is everything that happens before the first state-changing
write: option parsing and usage errors, argument validation, lookups and
the refusals that only read sysfs (an active region, ports and buses with
enabled memdevs, DPA accounting).

v76.1 vs v81 differences, each pinned by a test:

* usage texts: v81 adds ``-b/--bus`` to the memdev commands, ``-U/--uuid``
  and ``-Q/--enforce-qos`` to create-region and ``-f/--force`` to
  disable-region (and the commands set-alert-config, wait-sanitize and
  update-firmware);
* create-region in v76.1 exits 0 after a failure found past option parsing
  (it falls through to the region-action loop); v81 exits 1.  The messages
  are the same;
* v76.1 does not derive the region type from the root decoder (it always
  assumes pmem), so a ram-only decoder reports ``is not pmem capable``;
* the ``exceeds max available space`` message gained ``(%#lx)`` in v81;
* a user granularity on an interleaved root decoder is rejected by v81 in
  ``cxl_region_determine_granularity``;
* ``disable-bus`` counts the RCH memdev below the root (mem10) in v81 only.
"""

from __future__ import annotations

import io

import pytest

from cxltest_support import boot, render_machine, require_real_tools, run_real
from cxlemu.sysfs.backend import DirectoryBackend
from cxlemu.tools.runner import run_tool

pytestmark = pytest.mark.conformance


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    require_real_tools("cxl")
    return render_machine(boot("cxl-test"), tmp_path_factory.mktemp("render-cxl-test"))


def real(tree: str, argv: list[str]) -> tuple[int, str, str]:
    p = run_real(tree, "cxl", *argv, mknod=False)        # ours reads the same rendered files
    return p.returncode, p.stdout, p.stderr


def ours(tree: str, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = run_tool("cxl", argv, DirectoryBackend(tree), stdout=out, stderr=err, isatty=False)
    return rc, out.getvalue(), err.getvalue()


IDENTICAL = [
    # create-region: validation before any write
    "create-region", "create-region -d decoder0.1 mem0", "create-region -d decoder0.1 -m mem99",
    "create-region -d decoder0.1 -m mem0,mem1 -t foo", "create-region -d decoder0.1 -m mem0,mem1 -s 12x",
    "create-region -d decoder0.1 -m mem0 mem1 -w 0", "create-region -d decoder0.1 -m mem0 mem1 -w 3",
    "create-region -d decoder0.1 -m mem0 mem1 -w 1", "create-region -d decoder0.1 -m mem0 mem0",
    "create-region -d decoder0.1 -m mem0 mem1 -g 0", "create-region -d decoder0.1 -m mem0 mem1 -s 1001",
    "create-region -d decoder9.9 -m mem0 mem1", "create-region -d decoder5.0 -m mem0",
    "create-region -d decoder0.1 -w two",
    # enable / disable / destroy
    "destroy-region region0", "destroy-region", "destroy-region region99", "enable-region region0",
    "enable-region all", "enable-region -b root7 all", "destroy-region -x", "destroy-region -h",
    "enable-region -h",
    # memdevs
    "disable-memdev foo mem99", "enable-memdev mem0", "enable-memdev -S 0x0", "enable-memdev mem1 all",
    "enable-memdev 0 3", "reserve-dpa mem0 -s 100T", "reserve-dpa mem0 -t foo",
    "reserve-dpa mem0 -d decoder5.3", "reserve-dpa mem0 -s 10x", "free-dpa mem0 -d 7",
    "free-dpa mem1", "set-partition mem0 -t foo",
    # ports and buses
    "disable-port port1", "disable-port port99", "disable-port root0", "disable-port -e endpoint5",
    "enable-port port1", "enable-port -e endpoint5", "disable-port", "enable-port --foo",
    "disable-port -h", "enable-port -h", "disable-bus", "disable-bus foo", "disable-bus root9",
    "disable-bus -h",
]


@pytest.mark.parametrize("cmd", IDENTICAL)
def test_same_output_and_exit_code_as_real_binary(tree, cmd):
    argv = cmd.split()
    assert ours(tree, argv) == real(tree, argv)


_BUS = "    -b, --bus <bus name>  Limit operation to the specified bus\n"
_CREATE = ("    -U, --uuid <region uuid>\n                          uuid for the new region "
           "(default: autogenerate)\n", "    -Q, --enforce-qos     enforce qos_class match\n")
_DISABLE = ("    -f, --force           attempt to offline memory before disabling the region\n",)

# command -> the help lines only v81 has
USAGE_WITH_V81_OPTIONS = {
    "disable-memdev": (_BUS,), "disable-memdev foo": (_BUS,), "disable-memdev foo bar": (_BUS,),
    "enable-memdev -S zz": (_BUS,), "reserve-dpa -h": (_BUS,), "free-dpa -h": (_BUS,),
    "set-partition -h": (_BUS,), "create-region -h": _CREATE, "create-region --bogus": _CREATE,
    "disable-region -h": _DISABLE,
}


@pytest.mark.parametrize("cmd", sorted(USAGE_WITH_V81_OPTIONS))
def test_usage_is_real_usage_plus_v81_options(tree, cmd):
    argv = cmd.split()
    rc_o, out_o, err_o = ours(tree, argv)
    rc_r, out_r, err_r = real(tree, argv)
    assert rc_o == rc_r == 129 and out_o == out_r == ""
    for text in USAGE_WITH_V81_OPTIONS[cmd]:
        assert text in err_o
        err_o = err_o.replace(text, "")
    assert err_o == err_r


# create-region failures found after option parsing: same messages; v76.1
# exits 0 (the quirk v77 fixed), v81 exits 1
V76_EXIT_QUIRK = [
    "create-region -d decoder0.2 -m mem0 -t ram",
    "create-region -d decoder0.1 -m mem0 mem1 -t pmem",
]


@pytest.mark.parametrize("cmd", V76_EXIT_QUIRK)
def test_create_region_failure_exit_code_is_v81(tree, cmd):
    argv = cmd.split()
    rc_o, out_o, err_o = ours(tree, argv)
    rc_r, out_r, err_r = real(tree, argv)
    assert (out_o, err_o) == (out_r, err_r)
    assert err_o.endswith("cxl region: cmd_create_region: created 0 regions\n")
    assert (rc_r, rc_o) == (0, 1)


def test_v81_derives_the_region_type_and_reports_the_extent(tree):
    argv = "create-region -d decoder0.1 -m mem0 mem1 -s 64G".split()
    rc_r, _, err_r = real(tree, argv)
    rc_o, _, err_o = ours(tree, argv)
    # v76.1 assumes pmem; v81 takes ram from the (ram-only) decoder and gets further
    assert err_r == ("cxl region: validate_decoder: decoder0.1 is not pmem capable\n"
                     "cxl region: cmd_create_region: created 0 regions\n")
    assert err_o == ("cxl region: create_region: decoder0.1: region size 0x1000000000 exceeds max "
                     "available space (0x80000000)\ncxl region: cmd_create_region: created 0 regions\n")
    argv = "create-region -d decoder0.3 -m mem0 mem1 -s 64G".split()
    assert real(tree, argv)[2] == ("cxl region: create_region: decoder0.3: region size 0x1000000000 "
                                   "exceeds max available space\n"
                                   "cxl region: cmd_create_region: created 0 regions\n")
    assert ours(tree, argv)[2] == ("cxl region: create_region: decoder0.3: region size 0x1000000000 "
                                   "exceeds max available space (0x80000000)\n"
                                   "cxl region: cmd_create_region: created 0 regions\n")


def test_disable_bus_counts_the_rch_memdev_in_v81(tree):
    argv = ["disable-bus", "root0"]
    rc_r, _, err_r = real(tree, argv)
    rc_o, _, err_o = ours(tree, argv)
    assert rc_r == rc_o == 1
    tail = ("cxl bus: action_disable: See 'cxl list -M -b root0' to see impacted devices\n"
            "cxl bus: cmd_disable_bus: disabled 0 bus\n")
    assert err_r == "cxl bus: action_disable: root0 hosts 10 memdevs which are part of an active region\n" + tail
    assert err_o == "cxl bus: action_disable: root0 hosts 11 memdevs which are part of an active region\n" + tail
