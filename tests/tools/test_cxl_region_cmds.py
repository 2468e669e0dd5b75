"""``cxl create-region`` / ``enable-region`` / ``disable-region`` /
``destroy-region`` end to end on the emulated kernel (cxl/region.c v81
semantics), plus the flows of ndctl's test/cxl-create-region.sh,
cxl-destroy-region.sh (ram part) and cxl-xor-region.sh, and a few runs
through the real ``cxlemu exec`` CLI, including kill -9 halfway through a
create-region."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from cxltest_support import boot, cxl, cxl_list_all, r, run
from cxltest_support import cxl_json as js
from cxlemu.tools.cxl import region as reg

SZ_256M = 256 << 20
SZ_1G = 1 << 30


def snapshot(b) -> str:
    """Everything `cxl list -vvv` shows (regions, decoders with DPA and mode,
    ports, memdevs, mailbox info) plus the iomem map."""
    return cxl_list_all(b) + b.read("/proc/iomem")


def record_writes(b, monkeypatch) -> list[tuple[str, bytes]]:
    """Every successful sysfs write the tools make, flushes excluded."""
    seen: list[tuple[str, bytes]] = []
    orig = b.write

    def write(path, data):
        orig(path, data)
        if not path.endswith("/flush"):
            seen.append((path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1],
                         data if isinstance(data, bytes) else data.encode()))
    monkeypatch.setattr(b, "write", write)
    return seen


# ---------------------------------------------------------------------------
# pure helpers (region.c to_csv, util/size.h ALIGN_DOWN)
# ---------------------------------------------------------------------------

def test_to_csv_joins_arguments_region_c():
    assert reg.to_csv([]) == (None, 0)
    assert reg.to_csv(["mem0", "mem1"]) == ("mem0,mem1", 2)
    # every token of argument i gets a comma while i + 1 < token count
    assert reg.to_csv(["mem0,mem1"]) == ("mem0,mem1,", 2)
    assert reg.to_csv(["mem0 mem1", "mem2"]) == ("mem0,mem1,mem2,", 3)
    assert reg.to_csv(["mem0", "mem1", "mem2"]) == ("mem0,mem1,mem2", 3)
    assert reg.to_csv(["mem0", "mem1 mem2"]) == ("mem0,mem1,mem2,", 3)
    assert reg.to_csv([","]) == ("", 0)


def test_align_down_size_h_vectors():
    assert reg.align_down(0x80000000, SZ_1G) == 0x80000000
    assert reg.align_down(0x90000000, 0x20000000) == 0x80000000
    # not a power of two: the bit-mask arithmetic of util/size.h, not a round-down
    assert reg.align_down(0xC0000000, 3 * SZ_256M) == 0xA0000000


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1 << 50), st.integers(8, 40))
def test_align_down_is_round_down_for_powers_of_two(x, shift):
    a = 1 << shift
    assert reg.align_down(x, a) == (x // a) * a


# ---------------------------------------------------------------------------
# create-region: the sysfs write sequence of libcxl
# ---------------------------------------------------------------------------

def test_create_ram_x2_write_order_and_json(b, monkeypatch):
    writes = record_writes(b, monkeypatch)
    rc, out, err = cxl(b, "create-region", "-d", "decoder0.1", "-m", "mem0", "mem1",
                       "-t", "ram", "-w", "2", "-g", "4096", "-s", "512M")
    assert (rc, err) == (0, "cxl region: cmd_create_region: created 1 region\n")
    ep_writes = [w for w in writes if "bind" not in w[0]]
    assert ep_writes == [
        ("decoder0.1/create_ram_region", b"region1\0"),
        ("region1/interleave_granularity", b"4096\n\0"),
        ("region1/interleave_ways", b"2\n\0"),
        ("region1/size", b"0x20000000\n\0"),
        ("decoder5.1/dpa_size", b"0\n\0"),          # mode "none" -> clear, then set it
        ("decoder5.1/mode", b"ram\0"),
        ("decoder5.1/dpa_size", b"0x10000000\n\0"),
        ("region1/target0", b"decoder5.1\0"),
        ("decoder7.0/dpa_size", b"0\n\0"),
        ("decoder7.0/mode", b"ram\0"),
        ("decoder7.0/dpa_size", b"0x10000000\n\0"),
        ("region1/target1", b"decoder7.0\0"),
        ("region1/commit", b"1\n\0"),
    ]
    assert writes[-1] == ("cxl_region/bind", b"region1\0")
    jregion = json.loads(out)
    assert jregion == {
        "region": "region1", "resource": 0xF050000000, "size": 512 << 20, "type": "ram",
        "interleave_ways": 2, "interleave_granularity": 4096, "decode_state": "commit",
        "mappings": [{"position": 1, "memdev": "mem1", "decoder": "decoder7.0"},
                     {"position": 0, "memdev": "mem0", "decoder": "decoder5.1"}],
    }
    # what it printed is what cxl list -R -T shows for it
    assert js(b, "list", "-R", "-T", "-r", "region1") == [jregion]
    assert r(b, "region1/commit") == "1" and b.islink("/sys/bus/cxl/devices/region1/driver")


def test_create_pmem_x1_writes_uuid_and_defaults(b, monkeypatch):
    u = "0b0d9b7e-8d1c-4a57-9b8c-7f0bda5e5a11"
    writes = record_writes(b, monkeypatch)
    rc, out, err = cxl(b, "create-region", "-d", "decoder0.2", "-m", "mem2", "-U", u)
    assert rc == 0, err
    names = [w[0] for w in writes]
    assert names[:5] == ["decoder0.2/create_pmem_region", "region2/interleave_granularity",
                         "region2/interleave_ways", "region2/uuid", "region2/size"]
    assert ("region2/uuid", u.encode() + b"\0") in writes
    # type from the decoder (pmem), size = pmem capacity, granularity = the root's (256)
    assert ("region2/interleave_granularity", b"256\n\0") in writes
    assert ("region2/size", b"0x40000000\n\0") in writes
    j = json.loads(out)
    assert (j["type"], j["size"], j["interleave_ways"]) == ("pmem", SZ_1G, 1)
    assert r(b, "region2/uuid") == u


def test_create_region_default_size_is_clamped_to_the_free_window(b):
    # min(ram) 1G x 2 = 2G, decoder0.1 has 2G free: no clamp; a second one gets nothing
    rc, out, err = cxl(b, "create-region", "-d", "decoder0.1", "-m", "mem2", "mem3", "-s", "1G")
    assert rc == 0, err
    rc, out, err = cxl(b, "create-region", "-d", "decoder0.1", "-m", "mem6", "mem7")
    assert rc == 0, err
    # 1G left of the window: ALIGN_DOWN(1G, 512M) = 1G, not the 2G default
    assert json.loads(out)["size"] == SZ_1G


def test_create_region_json_is_human_on_a_tty(b):
    out, err = io.StringIO(), io.StringIO()
    from cxlemu.tools.runner import run_tool
    rc = run_tool("cxl", ["create-region", "-d", "decoder0.5", "-m", "mem10"], b,
                  stdout=out, stderr=err, isatty=True)
    assert rc == 0, err.getvalue()
    j = json.loads(out.getvalue())
    assert j["resource"] == "0xf1d0000000" and j["size"] == "256.00 MiB (268.44 MB)"


def test_memdevs_are_ordered_as_given_and_positional_lists_split(b):
    # mem0 and mem4 share a switch below host bridge 0: either order is valid,
    # and the positions follow the command line, not the topology walk
    for order in (["mem4 mem0"], ["mem0,mem4"]):
        rc, out, err = cxl(b, "create-region", "-d", "decoder0.0", "-m", *order, "-s", "512M")
        assert rc == 0, err
        j = json.loads(out)
        maps = {m["position"]: m["memdev"] for m in j["mappings"]}
        assert maps == dict(enumerate(order[0].replace(",", " ").split()))
        assert cxl(b, "destroy-region", "-f", j["region"])[0] == 0


def test_region_ids_are_reused_after_destroy(b):
    rc, out, _ = cxl(b, "create-region", "-d", "decoder0.1", "-m", "mem0", "mem1", "-s", "512M")
    first = json.loads(out)["region"]
    assert cxl(b, "destroy-region", "-f", first)[0] == 0
    rc, out, _ = cxl(b, "create-region", "-d", "decoder0.1", "-m", "mem0", "mem1", "-s", "512M")
    assert json.loads(out)["region"] == first == "region1"


# ---------------------------------------------------------------------------
# bad input: the real message, exit 1, and nothing changed
# ---------------------------------------------------------------------------

BAD_INPUT = [
    # invalid ways (parse_create_options / validate_ways, then the kernel's ways check)
    (["-d", "decoder0.1", "-m", "mem0", "mem1", "-w", "0"],
     "cxl region: parse_create_options: Invalid interleave ways: 0\n"),
    (["-d", "decoder0.1", "-m", "mem0", "mem1", "-w", "3"],
     "cxl region: validate_ways: Interleave ways 3 is greater than number of memdevs specified: 2\n"),
    (["-d", "decoder0.1", "-m", "mem0", "mem1", "mem2"],
     "cxl region: create_region: region1: set_interleave_ways failed: Invalid argument\n"),
    # invalid granularity (parse_create_options, cxl_region_determine_granularity, kernel)
    (["-d", "decoder0.1", "-m", "mem0", "mem1", "-g", "0"],
     "cxl region: parse_create_options: Invalid interleave granularity: 0\n"),
    (["-d", "decoder0.1", "-m", "mem0", "mem1", "-g", "512"],
     "cxl region: cxl_region_determine_granularity: region1: For an x2 root, only root "
     "decoder granularity (4096) permitted\n"),
    (["-d", "decoder0.2", "-m", "mem0", "-g", "3"],
     "cxl region: create_region: region2: set_interleave_granularity failed: Invalid argument\n"),
    # a size beyond the free capacity of the window, or not a multiple of the ways
    (["-d", "decoder0.1", "-m", "mem0", "mem1", "-s", "64G"],
     "cxl region: create_region: decoder0.1: region size 0x1000000000 exceeds max available "
     "space (0x80000000)\n"),
    (["-d", "decoder0.1", "-m", "mem0", "mem1", "-s", "1001"],
     "cxl region: parse_create_options: size (1001) is not an integral multiple of "
     "interleave-ways (2)\n"),
    # a memdev given twice
    (["-d", "decoder0.1", "-m", "mem0", "mem0"],
     "cxl region: validate_ways: Interleave ways 2 is greater than number of memdevs specified: 1\n"),
    # a decoder of the wrong type
    (["-d", "decoder5.0", "-m", "mem0"],
     "cxl region: collect_memdevs: no active memdevs found: decoder: decoder5.0 filter: mem0\n"),
    (["-d", "decoder1.0", "-m", "mem0"],
     "cxl region: create_region_validate_config: decoder1.0 not found in CXL topology\n"),
    (["-d", "decoder0.2", "-m", "mem0", "-t", "ram"],
     "cxl region: validate_decoder: decoder0.2 is not volatile capable\n"),
    # an unknown memdev; a uuid that is not allowed or not valid
    (["-d", "decoder0.1", "-m", "mem99"],
     "cxl region: collect_memdevs: no active memdevs found: decoder: decoder0.1 filter: mem99\n"),
    (["-d", "decoder0.1", "-m", "mem0", "mem1", "-t", "ram", "-U", "5f0c6d2a-1b8e-4c7d-9a3e-2f4b6c8d0e1f"],
     # the C format string has no newline: the summary follows on the same line
     "cxl region: parse_create_options: can't set UUID for ram / volatile regions"),
    (["-d", "decoder0.3", "-m", "mem0", "mem1", "-U", "not-a-uuid"],
     # usage.c error() adds its own newline to one that is already there
     "  Error: failed to parse uuid: 'not-a-uuid'\n\n"),
]

# more validation messages (region.c), checked without the state snapshot
MESSAGES = [
    (["-d", "decoder0.1", "-m", "mem0", "mem1", "-w", "1"],
     "cxl region: validate_ways: Interleave ways 1 is less than number of memdevs specified: 2\n"),
    (["-d", "decoder0.1", "-m", "mem0", "mem1", "-s", "12x"],
     "cxl region: parse_create_options: Invalid size: 12x\n"),
    (["-d", "decoder0.1", "-m", "mem0", "mem1", "-t", "pmem"],
     "cxl region: validate_decoder: decoder0.1 is not pmem capable\n"),
    (["-d", "decoder0.1", "-m", "mem0", "mem1", "-t", "nvram"],
     "cxl region: parse_create_options: unsupported type: nvram\n"),
    (["-d", "decoder9.9", "-m", "mem0"],
     "cxl region: collect_memdevs: no active memdevs found: decoder: decoder9.9 filter: mem0\n"),
    (["-m", "mem0"], "cxl region: parse_create_options: no root decoder specified\n"),
    (["-d", "decoder0.1", "mem0"],
     "cxl region: parse_create_options: must specify option for target object types (-m)\n"),
]


@pytest.fixture(scope="module")
def shared():
    """One machine for all the bad-input cases: each must leave it exactly
    as it found it, so any leak also breaks the cases that follow."""
    m = boot("cxl-test")
    return m, snapshot(m)


@pytest.mark.parametrize("argv,message", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_create_region_bad_input_changes_nothing(shared, argv, message):
    b, before = shared
    rc, out, err = cxl(b, "create-region", *argv)
    assert (rc, out) == (1, "")
    assert err == message + "cxl region: cmd_create_region: created 0 regions\n"
    assert snapshot(b) == before


@pytest.mark.parametrize("argv,message", MESSAGES, ids=[" ".join(a) for a, _ in MESSAGES])
def test_create_region_validation_messages(shared, argv, message):
    b, _ = shared
    assert cxl(b, "create-region", *argv) == \
        (1, "", message + "cxl region: cmd_create_region: created 0 regions\n")


def test_create_region_on_a_memdev_with_no_free_decoder_changes_nothing(b):
    """mem0's eight endpoint decoders all in use (region.c cxl_memdev_find_decoder)."""
    # the rest of mem0's ram (256M is region0's): 2 x1 regions and one x2
    for _ in range(2):
        assert cxl(b, "create-region", "-d", "decoder0.0", "-m", "mem0", "-s", "256M")[0] == 0
    assert cxl(b, "create-region", "-d", "decoder0.1", "-m", "mem0", "mem1", "-s", "512M")[0] == 0
    for _ in range(4):                                  # and its pmem, in 256M slices
        assert cxl(b, "create-region", "-d", "decoder0.2", "-m", "mem0", "-s", "256M")[0] == 0
    before = snapshot(b)
    rc, out, err = cxl(b, "create-region", "-d", "decoder0.1", "-m", "mem0", "mem1", "-s", "512M")
    assert rc == 1
    assert err == ("cxl region: cxl_memdev_find_decoder: could not get a free decoder for mem0\n"
                   "cxl region: cmd_create_region: created 0 regions\n")
    assert snapshot(b) == before


def test_failed_target_deletes_the_region_but_keeps_the_dpa(b):
    """v81 region.c create_region(): after a failure only the region is
    deleted (``out: cxl_region_delete``); the DPA given to the endpoint
    decoders stays allocated, as on Linux.  mem0 and mem4 are both below host
    bridge 0, so mem4 cannot take position 1 of the x2 window (region.c
    cxl_region_attach_position)."""
    rc, out, err = cxl(b, "create-region", "-d", "decoder0.1", "-m", "mem0", "mem4", "-t", "ram",
                       "-w", "2", "-g", "4096", "-s", "512M")
    assert (rc, out) == (1, "")
    assert err == ("cxl region: create_region: region1: failed to set target1 to mem4\n"
                   "cxl region: cmd_create_region: created 0 regions\n")
    assert [x["region"] for x in js(b, "list", "-R", "-i")] == ["region0"]
    for dec in ("decoder5.1", "decoder12.1"):
        assert (int(r(b, f"{dec}/dpa_size"), 16), r(b, f"{dec}/mode"), r(b, f"{dec}/region")) == \
            (SZ_256M, "ram", "")
    # free-dpa gives it back, and the region can then be built with mem1
    assert cxl(b, "free-dpa", "mem0", "mem4")[0] == 0
    assert int(r(b, "decoder5.1/dpa_size"), 16) == 0
    rc, out, err = cxl(b, "create-region", "-d", "decoder0.1", "-m", "mem0", "mem1", "-s", "512M")
    assert rc == 0, err


# ---------------------------------------------------------------------------
# enable / disable / destroy
# ---------------------------------------------------------------------------

def test_destroy_active_region_without_force_is_refused(shared):
    b, before = shared
    rc, out, err = cxl(b, "destroy-region", "region0")
    assert (rc, out) == (1, "")
    assert err == ("cxl region: destroy_region: region0 active. Disable it or use --force\n"
                   "cxl region: decoder_region_action: region0: failed: Device or resource busy\n"
                   "cxl region: region_action: one or more failures, last failure: Device or "
                   "resource busy\n"
                   "cxl region: cmd_destroy_region: destroyed 0 regions\n")
    assert snapshot(b) == before


@pytest.mark.parametrize("cmd,past", [("enable-region", "enabled"), ("disable-region", "disabled"),
                                      ("destroy-region", "destroyed")])
def test_unknown_region_is_a_zero_count(shared, cmd, past):
    b, before = shared
    summary = f"cxl region: cmd_{cmd.replace('-', '_')}: {past} 0 regions\n"
    assert cxl(b, cmd, "region99") == (0, "", summary)
    assert cxl(b, cmd) == (0, "", summary)
    assert snapshot(b) == before


def test_destroy_writes_reset_clear_free_delete(b, monkeypatch):
    rc, out, _ = cxl(b, "create-region", "-d", "decoder0.1", "-m", "mem0", "mem1", "-s", "512M")
    assert cxl(b, "disable-region", "region1") == (0, "", "cxl region: cmd_disable_region: "
                                                        "disabled 1 region\n")
    writes = record_writes(b, monkeypatch)
    assert cxl(b, "destroy-region", "region1") == (0, "", "cxl region: cmd_destroy_region: "
                                                        "destroyed 1 region\n")
    assert writes == [
        ("region1/commit", b"0\n\0"),
        ("region1/target0", b"\0"), ("decoder5.1/dpa_size", b"0\n\0"),
        ("region1/target1", b"\0"), ("decoder7.0/dpa_size", b"0\n\0"),
        ("decoder0.1/delete_region", b"region1\0"),
    ]
    assert not b.exists("/sys/bus/cxl/devices/region1")


def test_enable_disable_cycle_filters_and_counts(b):
    names = []
    for _ in range(2):
        rc, out, err = cxl(b, "create-region", "-d", "decoder0.1", "-m", "mem0", "mem1", "-s", "512M")
        assert rc == 0, err
        names.append(json.loads(out)["region"])
    rc, out, err = cxl(b, "disable-region", "-d", "decoder0.1", "all")
    assert (rc, err) == (0, "cxl region: cmd_disable_region: disabled 2 regions\n")
    assert [x.get("state") for x in js(b, "list", "-R", "-i")] == [None, "disabled", "disabled"]
    # -b with a non-matching bus selects nothing; ids work as identifiers
    assert cxl(b, "enable-region", "-b", "root7", "1")[2] == "cxl region: cmd_enable_region: enabled 0 regions\n"
    assert cxl(b, "enable-region", names[0][6:], names[1])[2] == \
        "cxl region: cmd_enable_region: enabled 2 regions\n"
    # enabling an enabled region is counted as a success
    assert cxl(b, "enable-region", "region0")[2] == "cxl region: cmd_enable_region: enabled 1 region\n"
    # DPA is freed last-allocated first (hdm.c cxl_dpa_free): destroy in
    # reverse creation order, one command each, as test/cxl-create-region.sh does
    for name in reversed(names):
        rc, _, err = cxl(b, "destroy-region", "-f", "-d", "decoder0.1", name)
        assert (rc, err) == (0, "cxl region: cmd_destroy_region: destroyed 1 region\n")
    assert [x["region"] for x in js(b, "list", "-R", "-i")] == ["region0"]


def _online_dax_memory(b, region: str) -> list[str]:
    dev = js(b, "list", "-X", "-r", region)[0]["daxregion"]["devices"][0]
    node = f"/sys/devices/system/node/node{dev['target_node']}"
    blocks = [n for n in b.listdir(node) if n.startswith("memory") and not n.startswith("memory_")]
    for n in blocks:
        b.write(f"/sys/devices/system/memory/{n}/state", "online_movable")
    return blocks


def test_disable_region_offlines_kmem_memory_first(b):
    """region.c disable_region() (v79+): online system-ram blocks are offlined."""
    if not b.exists("/sys/bus/dax"):
        pytest.skip("no dax bus in this kernel model")
    blocks = _online_dax_memory(b, "region0")
    assert blocks
    dev = js(b, "list", "-X", "-r", "region0")[0]["daxregion"]["devices"][0]
    assert dev["online_memblocks"] == len(blocks)
    seen = []
    orig = b.write

    def write(path, data):
        orig(path, data)
        seen.append(path)
    b.write = write
    assert cxl(b, "disable-region", "region0") == (0, "", "cxl region: cmd_disable_region: "
                                                        "disabled 1 region\n")
    offl = [p for p in seen if p.endswith("/state")]
    assert len(offl) == len(blocks)
    assert seen.index(offl[-1]) < seen.index(next(p for p in seen if p.endswith("driver/unbind")))
    assert js(b, "list", "-R", "-i", "-r", "region0")[0]["state"] == "disabled"


def test_disable_region_offline_failure_needs_force(b, monkeypatch):
    from cxlemu.tools.libdaxctl.lib import DaxctlMemory
    if not b.exists("/sys/bus/dax"):
        pytest.skip("no dax bus in this kernel model")
    _online_dax_memory(b, "region0")
    monkeypatch.setattr(DaxctlMemory, "offline", lambda self: -16)
    rc, _, err = cxl(b, "disable-region", "region0")
    assert rc == 1
    assert err == ("cxl region: disable_region: region0: unable to offline dax0.0: Device or resource busy\n"
                   "cxl region: decoder_region_action: region0: failed: Device or resource busy\n"
                   "cxl region: region_action: one or more failures, last failure: Device or "
                   "resource busy\n"
                   "cxl region: cmd_disable_region: disabled 0 regions\n")
    assert b.islink("/sys/bus/cxl/devices/region0/driver")
    rc, _, err = cxl(b, "disable-region", "-f", "region0")
    assert rc == 0
    assert err == ("cxl region: disable_region: region0: unable to offline dax0.0: Device or resource busy\n"
                   "cxl region: disable_region: region0: Forcing region disable without successful offline.\n"
                   "cxl region: disable_region: region0: Physical address space has now been permanently "
                   "leaked.\n"
                   "cxl region: disable_region: region0: Leaked address cannot be recovered until a reboot.\n"
                   "cxl region: cmd_disable_region: disabled 1 region\n")
    assert not b.islink("/sys/bus/cxl/devices/region0/driver")


def test_qos_class_mismatch_with_enforce_qos(b, monkeypatch):
    """create_region_validate_qos_class(): -Q compares each memdev's
    qos_class for the region type with the root decoder's (42 in cxl-test);
    here mem0's ram/qos_class reads 7."""
    real_read = b.read_bytes
    monkeypatch.setattr(b, "read_bytes", lambda p: b"7\n" if p.endswith("/mem0/ram/qos_class")
                        else real_read(p))
    rc, out, err = cxl(b, "create-region", "-Q", "-d", "decoder0.1", "-m", "mem0", "mem1")
    assert (rc, err) == (1, "cxl region: create_region_validate_qos_class: decoder0.1 qos_class "
                            "mismatch mem0\ncxl region: cmd_create_region: created 0 regions\n")
    # without -Q the mismatch is allowed, and cxl list flags it
    rc, out, err = cxl(b, "create-region", "-d", "decoder0.1", "-m", "mem0", "mem1", "-s", "512M")
    assert rc == 0, err
    assert json.loads(out)["qos_class_mismatch"] is True


def test_usage_errors_exit_129(b):
    rc, out, err = cxl(b, "create-region", "--bogus")
    assert rc == 129 and err.startswith("  Error: unknown option `bogus'\n\n usage: cxl create-region "
                                        "<target0> ... [<options>]\n")
    rc, out, err = cxl(b, "destroy-region", "-w", "2")
    assert rc == 129 and err.startswith("  Error: unknown switch `w'\n")
    rc, out, err = cxl(b, "create-region", "-d", "decoder0.1", "-w", "two")
    assert rc == 129 and "  Error: switch `w' expects a numerical value" in err


# ---------------------------------------------------------------------------
# ndctl test/*.sh flows
# ---------------------------------------------------------------------------

def _pmem_x1_decoder(b, mem):
    ds = [d["decoder"] for d in js(b, "list", "-b", "cxl_test", "-D", "-d", "root", "-m", mem)
          if d.get("pmem_capable") and d["nr_targets"] == 1]
    return ds[0] if ds else None


def test_cxl_create_region_sh_flow(b):
    """test/cxl-create-region.sh: create_single, create_x1_region per memdev
    (disable/enable cycle, destroy and re-create), create_subregions."""
    decoders = js(b, "list", "-b", "cxl_test", "-D", "-d", "root")
    single = decoders[4]
    assert single.get("pmem_capable") and single["nr_targets"] == 1
    rc, out, err = cxl(b, "create-region", "-d", single["decoder"])
    assert rc == 0, err
    assert cxl(b, "destroy-region", "-f", "-b", "cxl_test", json.loads(out)["region"])[0] == 0

    mems = [m["memdev"] for m in js(b, "list", "-b", "cxl_test", "-M")]
    done = 0
    for mem in mems:
        dec = _pmem_x1_decoder(b, mem)
        if dec is None:
            continue
        rc, out, err = cxl(b, "create-region", "-d", dec, "-m", mem)
        assert rc == 0, err
        region = json.loads(out)["region"]
        assert cxl(b, "disable-region", "--bus=cxl_test", region)[0] == 0
        assert cxl(b, "enable-region", "--bus=cxl_test", region)[0] == 0
        assert cxl(b, "destroy-region", "-f", "-b", "cxl_test", region)[0] == 0
        rc, out, err = cxl(b, "create-region", "-d", dec, "-m", mem)
        assert rc == 0, err
        assert json.loads(out)["region"] == region           # the id is reused
        assert cxl(b, "destroy-region", "-f", "-b", "cxl_test", region)[0] == 0
        done += 1
    assert done == 6

    for mem in mems[1:2]:
        dec = _pmem_x1_decoder(b, mem)
        if dec is None:
            continue
        size = js(b, "list", "-m", mem)[0]["pmem_size"]
        regions = []
        for _ in range(size // SZ_256M):          # back-to-back pmem DPA allocations
            rc, out, err = cxl(b, "create-region", "-d", dec, "-m", mem, "-s", str(SZ_256M))
            assert rc == 0, err
            regions.append(json.loads(out)["region"])
        assert len(set(regions)) == 4
        for region in reversed(regions):
            assert cxl(b, "destroy-region", "-f", "-b", "cxl_test", region)[0] == 0
    assert [x["region"] for x in js(b, "list", "-R", "-i")] == ["region0"]


def test_cxl_destroy_region_sh_ram_flow(b):
    """test/cxl-destroy-region.sh check_destroy_ram (sizes scaled to the
    preset: a 256M slice where the script takes the whole ram capacity)."""
    for mem in [m["memdev"] for m in js(b, "list", "-b", "cxl_test", "-M")]:
        if not js(b, "list", "-m", mem)[0].get("ram_size"):
            continue
        decs = [d["decoder"] for d in js(b, "list", "-b", "cxl_test", "-D", "-d", "root", "-m", mem)
                if d.get("volatile_capable") and d["nr_targets"] == 1
                and d["max_available_extent"] >= SZ_256M]
        if decs:
            break
    rc, out, err = cxl(b, "create-region", "-d", decs[0], "-m", mem, "-s", "256M")
    assert rc == 0, err
    region = json.loads(out)["region"]
    assert cxl(b, "enable-region", region)[0] == 0
    assert cxl(b, "disable-region", region)[0] == 0
    assert cxl(b, "destroy-region", region) == (0, "", "cxl region: cmd_destroy_region: destroyed "
                                                      "1 region\n")
    assert region not in [x["region"] for x in js(b, "list", "-R", "-i")]


def test_cxl_xor_region_sh_flow():
    """test/cxl-xor-region.sh on the cxl-test-xor preset: x1, x2, x4 and x3."""
    b = boot("cxl-test-xor")
    decoders = js(b, "list", "-b", "cxl_test", "-D", "-d", "root")

    def setup(nr_targets: int, per_port: int):
        dec = next(d["decoder"] for d in decoders
                   if d.get("pmem_capable") and d["nr_targets"] == nr_targets)
        targets = {t["position"]: t["target"] for t in js(b, "list", "-T", "-d", dec)[0]["targets"]}
        mems = [js(b, "list", "-M", "-p", targets[p])[k]["memdev"]
                for k in range(per_port) for p in range(nr_targets)]
        return dec, mems

    for nr, per, ways in ((1, 1, 1), (2, 1, 2), (2, 2, 4), (3, 1, 3)):
        dec, mems = setup(nr, per)
        rc, out, err = cxl(b, "create-region", "-d", dec, "-m", " ".join(mems))
        assert rc == 0, err
        j = json.loads(out)
        assert j["interleave_ways"] == ways and j["decode_state"] == "commit"
        assert sorted(m["memdev"] for m in j["mappings"]) == sorted(mems)
        assert cxl(b, "destroy-region", "-f", "-b", "cxl_test", j["region"])[0] == 0
    assert js(b, "list", "-R", "-i") == []


# ---------------------------------------------------------------------------
# through the real CLI (cxlemu exec) and kill -9 halfway
# ---------------------------------------------------------------------------

def _cxlemu(*argv, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "cxlemu", *argv], capture_output=True, text=True,
                          env=env, timeout=120)


def _make_machine(name: str) -> None:
    """What ``cxlemu create NAME --topology cxl-test`` does (in process: the
    commands under test are the ones run through the CLI)."""
    from cxlemu.machine.store import Store
    from cxlemu.topology import presets
    Store().create(name, presets.text("cxl-test"))


def _machine_list(name: str) -> str:
    from cxlemu.machine.store import Store
    with Store().open(name, write=False) as m:
        rc, out, _ = run(m.backend(), "cxl", "list", "-vvv")
    assert rc == 0
    return out


def test_create_and_destroy_through_cxlemu_exec():
    _make_machine("lab")
    p = _cxlemu("exec", "lab", "--", "cxl", "create-region", "-d", "decoder0.1", "-m", "mem0",
                "mem1", "-t", "ram", "-w", "2", "-g", "4096", "-s", "512M")
    assert (p.returncode, p.stderr) == (0, "cxl region: cmd_create_region: created 1 region\n")
    assert json.loads(p.stdout)["region"] == "region1"
    p = _cxlemu("exec", "lab", "--", "cxl", "destroy-region", "-f", "region1")
    assert (p.returncode, p.stderr) == (0, "cxl region: cmd_destroy_region: destroyed 1 region\n")
    assert '"region":"region1"' not in _machine_list("lab")


def _create_writes() -> list[str]:
    """The sysfs writes (flushes included) of the create-region below, in
    order, counted the way the fault hook counts them (successful writes)."""
    b = boot("cxl-test")
    seen: list[str] = []
    orig = b.write

    def write(path, data):
        orig(path, data)
        seen.append(path)
    b.write = write
    assert cxl(b, *KILL_ARGV)[0] == 0
    return seen


KILL_ARGV = ("create-region", "-d", "decoder0.1", "-m", "mem0", "mem1", "-s", "512M")


def test_kill_9_halfway_through_create_region_leaves_no_partial_region():
    writes = _create_writes()
    points = [next(i for i, p in enumerate(writes) if p.endswith("/create_ram_region")) + 1,
              next(i for i, p in enumerate(writes) if p.endswith("/target0")) + 1,
              next(i for i, p in enumerate(writes) if p.endswith("/commit")) + 1]
    _make_machine("lab")
    before = _machine_list("lab")
    for n in points:
        p = _cxlemu("exec", "lab", "--", "cxl", *KILL_ARGV,
                    env_extra={"CXLEMU_FAULT_AFTER_WRITES": str(n)})
        assert p.returncode == -signal.SIGKILL, (n, p.stderr)
        assert _machine_list("lab") == before, n
    # the machine is still consistent: the same command now completes
    p = _cxlemu("exec", "lab", "--", "cxl", *KILL_ARGV,
                env_extra={"CXLEMU_FAULT_AFTER_WRITES": str(len(writes) + 1000)})
    assert p.returncode == 0, p.stderr
    assert '"decode_state":"commit"' in _machine_list("lab").split('"region":"region1"', 1)[1]
