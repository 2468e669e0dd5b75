"""``cxl list`` (v81) end to end on the emulator: key order, nesting,
filters and their cross effects, -u, -i, disabled objects, usage errors,
empty results, the cxl-test auto region, and the mailbox options
(cxl/list.c, cxl/filter.c, cxl/json.c, util/json.c; contract §1)."""

from __future__ import annotations

import io
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxltest_support import boot
from cxlemu.sysfs.backend import DirectoryBackend, render
from cxlemu.tools.common.util_json import human_size_text
from cxlemu.tools.runner import run_tool

PRESETS = ["biscuitos-a", "biscuitos-b", "biscuitos-c", "cxl-test", "cxl-test-xor",
           "seed-003-window"]

# v81 emission order of each object kind (cxl/json.c, cxl/filter.c)
ORDER = {
    "memdev": ["memdev", "pmem_size", "pmem_qos_class", "ram_size", "ram_qos_class", "health",
               "alert_config", "serial", "numa_node", "host", "firmware_version", "state",
               "partition_info", "firmware", "media_errors"],
    "bus": ["bus", "provider", "nr_dports", "dports", "ports:*", "endpoints:*", "decoders:*",
            "regions:*", "memdevs:*"],
    "port": ["port", "host", "parent_dport", "depth", "state", "decoders_committed", "nr_dports",
             "dports", "ports:*", "endpoints:*", "decoders:*", "memdevs:*"],
    "endpoint": ["endpoint", "host", "parent_dport", "depth", "state", "decoders_committed",
                 "memdev", "decoders:*"],
    "decoder": ["decoder", "resource", "size", "interleave_ways", "interleave_granularity",
                "region", "state", "dpa_resource", "dpa_size", "mode", "max_available_extent",
                "pmem_capable", "volatile_capable", "accelmem_capable", "qos_class",
                "nr_targets", "targets", "regions:*"],
    "region": ["region", "resource", "size", "type", "interleave_ways", "interleave_granularity",
               "decode_state", "state", "media_errors", "mappings", "daxregion",
               "qos_class_mismatch"],
    "dport": ["dport", "alias", "id"],
    "target": ["target", "alias", "position", "id"],
}


def run(b, *args, env=None):
    out, err = io.StringIO(), io.StringIO()
    rc = run_tool("cxl", list(args), b, env=env, stdout=out, stderr=err, isatty=False)
    return rc, out.getvalue(), err.getvalue()


def lst(b, *args):
    rc, out, err = run(b, "list", *args)
    assert rc == 0, err
    return json.loads(out) if out else None


def _check(obj, errors: list, path="$"):
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            _check(x, errors, f"{path}[{i}]")
        return
    if not isinstance(obj, dict):
        return
    keys = list(obj)
    kind = keys[0] if keys and keys[0] in ORDER else None
    if kind is not None:
        canon = ORDER[kind]
        idx = []
        for k in keys:
            norm = re.sub(r":.*", ":*", k)
            if norm not in canon:
                errors.append(f"{path}: unexpected key {k!r} in {kind}")
                continue
            idx.append(canon.index(norm))
            if ":" in k:
                assert k.split(":", 1)[1] == obj[kind], f"{path}: {k} nested under {obj[kind]}"
                assert obj[k], f"{path}: empty child array {k}"
        if idx != sorted(idx):
            errors.append(f"{path}: key order {keys}")
    for k, v in obj.items():
        _check(v, errors, f"{path}.{k}")


@pytest.fixture(scope="module")
def cxltest():
    return boot("cxl-test")


@pytest.mark.parametrize("preset", PRESETS)
def test_key_order_and_nesting_every_preset(preset):
    b = boot(preset)
    errors: list[str] = []
    for args in (["-vvi"], ["-M", "-R", "-T", "-D", "-i"], ["-vv", "-u"]):
        _check(lst(b, *args), errors)
    assert errors == []
    # -M lists exactly the enabled memdevs (they are reached through endpoints)
    names = [n for n in b.listdir("/sys/bus/cxl/devices") if re.fullmatch(r"mem\d+", n)]
    enabled = {n for n in names if b.islink(f"/sys/bus/cxl/devices/{n}/driver")}
    listed = lst(b, "-M") or []
    assert {m["memdev"] for m in listed} == enabled


def test_default_lists_memdevs_and_regions(cxltest):
    out = lst(cxltest)
    assert [list(x) for x in out] == [["memdevs"], ["regions"]]
    assert sorted(m["memdev"] for m in out[0]["memdevs"]) == sorted(f"mem{i}" for i in range(11))
    assert [r["region"] for r in out[1]["regions"]] == ["region0"]


def test_auto_region_with_targets_reverse_mapping_order(cxltest):
    (region,) = lst(cxltest, "-R", "-T")
    assert region == {
        "region": "region0", "resource": 0xF010000000, "size": 512 << 20, "type": "ram",
        "interleave_ways": 2, "interleave_granularity": 4096, "decode_state": "commit",
        "mappings": [{"position": 1, "memdev": "mem4", "decoder": "decoder12.0"},
                     {"position": 0, "memdev": "mem0", "decoder": "decoder5.0"}]}
    (region,) = lst(cxltest, "-R")
    assert "mappings" not in region


def test_memdev_filters(cxltest):
    one = lambda *a: [m["memdev"] for m in lst(cxltest, *a)]  # noqa: E731
    assert one("-m", "mem0") == ["mem0"]
    assert one("-m", "0") == ["mem0"]
    assert one("-m", "cxl_mem.0") == ["mem0"]
    assert sorted(one("-m", "mem1,mem3")) == ["mem1", "mem3"]
    assert sorted(one("-m", "mem1 mem3")) == ["mem1", "mem3"]
    assert one("-s", "5") == ["mem5"] == one("-s", "0x5")
    assert sorted(one("-M", "-m", "all")) == sorted(f"mem{i}" for i in range(11))
    rc, out, err = run(cxltest, "list", "-m", "mem0", "-s", "5")   # AND across options
    assert (rc, out, err) == (0, "[\n]\n", "  Warning: no matching devices found\n\n")


def test_bus_port_endpoint_filters(cxltest):
    for ident in ("root0", "0", "cxl_test", "all"):
        assert lst(cxltest, "-b", ident) == [{"bus": "root0", "provider": "cxl_test"}]
    ports = lst(cxltest, "-p", "port1")                      # implicit -P and -S
    assert [p["port"] for p in ports] == ["port1"] and "ports:port1" not in ports[0]
    (port1,) = lst(cxltest, "-P", "-p", "port1")             # ancestry: children nest
    assert sorted(p["port"] for p in port1["ports:port1"]) == ["port4", "port8"]
    (port1,) = lst(cxltest, "-P", "-p", "port1", "-S")
    assert "ports:port1" not in port1
    assert lst(cxltest, "-p", "cxl_host_bridge.0")[0]["port"] == "port1"
    # every non-root, non-endpoint port is a "switch" to libcxl; matching
    # children still nest under a matching parent (single only stops ancestry)
    switches = lst(cxltest, "-p", "switch")
    assert sorted(s["port"] for s in switches) == ["port1", "port2", "port3"]
    assert sorted(c["port"] for s in switches for c in s.get(f"ports:{s['port']}", [])) == \
        ["port10", "port16", "port4", "port6", "port8"]
    out = lst(cxltest, "-P", "-p", "root")                   # -p root with -P implies -B
    assert out[0]["bus"] == "root0" and "ports:root0" in out[0]
    out = lst(cxltest, "-P", "-p", "endpoint")               # ... and endpoint implies -E
    assert sorted(e["host"] for e in out) == sorted(f"mem{i}" for i in range(11))
    (ep,) = lst(cxltest, "-e", "endpoint5")
    assert ep["endpoint"] == "endpoint5" and ep["host"] == "mem0" and ep["depth"] == 3
    assert lst(cxltest, "-e", "mem0") == [ep]


def test_decoder_and_region_filters(cxltest):
    names = lambda out: [d["decoder"] for d in out]  # noqa: E731
    assert names(lst(cxltest, "-d", "root")) == [f"decoder0.{i}" for i in range(6)]
    assert names(lst(cxltest, "-d", "0.1")) == ["decoder0.1"] == names(lst(cxltest, "-d", "decoder0.1"))
    assert names(lst(cxltest, "-d", "endpoint")) == ["decoder5.0", "decoder12.0"]
    n_ep_decoders = sum(1 for n in cxltest.listdir("/sys/bus/cxl/devices")
                        if re.fullmatch(r"decoder\d+\.\d+", n)
                        and cxltest.read(f"/sys/bus/cxl/devices/{n}/devtype").strip() == "cxl_decoder_endpoint")
    assert len(lst(cxltest, "-d", "endpoint", "-i")) == n_ep_decoders
    assert [r["region"] for r in lst(cxltest, "-r", "0")] == ["region0"]
    # v81: root decoders match a region filter through their child regions
    out = lst(cxltest, "-D", "-r", "region0")
    found = {d["decoder"] for c in out for d in next(iter(c.values()))}
    assert {"decoder0.0", "decoder5.0", "decoder12.0"} <= found
    # decoder filter -> memdevs reachable through the decoder's targets
    mems = sorted(m["memdev"] for m in lst(cxltest, "-M", "-d", "decoder0.0"))
    assert mems == ["mem0", "mem2", "mem4", "mem6"]
    mems = sorted(m["memdev"] for m in lst(cxltest, "-M", "-p", "port2"))
    assert mems == ["mem1", "mem3", "mem5", "mem7"]


def test_memdev_filter_restricts_dports_and_targets(cxltest):
    (bus,) = lst(cxltest, "-B", "-T", "-m", "mem1")
    assert bus["nr_dports"] == 4
    assert [d["dport"] for d in bus["dports"]] == ["cxl_host_bridge.1"]
    decs = lst(cxltest, "-D", "-T", "-d", "decoder0.1", "-m", "mem1")
    assert [t["target"] for t in decs[0]["targets"]] == ["cxl_host_bridge.1"]
    assert decs[0]["nr_targets"] == 2


def test_human_and_unwrap(cxltest):
    raw = lst(cxltest, "-M", "-m", "mem5")[0]
    rc, out, err = run(cxltest, "list", "-M", "-m", "mem5", "-u")
    assert out.startswith("{\n  \"memdev\":\"mem5\",\n")          # unwrapped object
    human = json.loads(out)
    assert human["serial"] == "0x5" and raw["serial"] == 5
    assert human["ram_size"] == human_size_text(raw["ram_size"]) == "1024.00 MiB (1073.74 MB)"
    assert json.loads(run(cxltest, "list", "-m", "mem0", "-u")[1])["serial"] == "0"
    (region,) = [json.loads(run(cxltest, "list", "-R", "-u")[1])]
    assert region["resource"] == "0xf010000000" and region["size"] == "512.00 MiB (536.87 MB)"
    assert region["interleave_ways"] == 2                               # ints stay ints
    rc, out, err = run(cxltest, "list", "-m", "nothing", "-u")
    assert (rc, out, err) == (0, "", "")


def test_idle_shows_disabled_decoders(cxltest):
    busy = lst(cxltest, "-D", "-d", "endpoint")
    assert all("state" not in d for d in busy)
    idle = lst(cxltest, "-D", "-d", "endpoint", "-i")
    disabled = [d for d in idle if d.get("state") == "disabled"]
    assert disabled and all(list(d) == ["decoder", "interleave_ways", "state"] for d in disabled)


def test_disabled_memdev_anon_pass_and_port_state():
    b = boot("cxl-test")
    b.write("/sys/bus/cxl/devices/mem1/driver/unbind", "mem1\0")
    assert "mem1" not in [m["memdev"] for m in lst(b, "-M")]
    out = lst(b, "-M", "-i")
    assert list(out[0]) == ["anon memdevs"]
    (anon,) = out[0]["anon memdevs"]
    assert anon["memdev"] == "mem1" and anon["state"] == "disabled"
    assert list(anon)[-1] == "state"
    assert "mem1" not in [m["memdev"] for m in out[1]["memdevs"]]
    assert lst(b, "-m", "mem1") is None or lst(b, "-m", "mem1") == []
    assert lst(b, "-m", "mem1", "-i")[0]["state"] == "disabled"
    # unbinding a switch port takes its endpoints away, and cxl_detach_ep then
    # deletes the switch port itself (cxl-topology.sh: disable-port removes it)
    b.write("/sys/bus/cxl/devices/port8/driver/unbind", "port8\0")
    (port1,) = lst(b, "-P", "-p", "port1")
    assert [p["port"] for p in port1["ports:port1"]] == ["port4"]
    assert not lst(b, "-P", "-p", "port8", "-i")
    mems = [m["memdev"] for m in lst(b, "-M")]
    assert "mem2" not in mems and "mem6" not in mems
    # a disabled host-bridge port stays (a root child) and hides its subtree without -i
    b.write("/sys/bus/cxl/devices/port2/driver/unbind", "port2\0")
    (p2,) = lst(b, "-P", "-p", "port2", "-i")
    assert p2["state"] == "disabled" and list(p2).index("state") == list(p2).index("depth") + 1
    assert not [p for p in lst(b, "-P") if p.get("port") == "port2"]


def test_usage_errors_exit_129(cxltest):
    rc, out, err = run(cxltest, "list", "-S")
    assert rc == 129 and out == ""
    assert err.startswith("  Error: -S/--single expects a port filter: -p/--port=\n\n\n"
                          " usage: cxl list [<options>]\n\n    -m, --memdev <memory device name(s)>\n")
    rc, out, err = run(cxltest, "list", "foo", "bar")
    assert rc == 129
    assert err.startswith('  Error: unknown parameter "foo"\n\n  Error: unknown parameter "bar"\n\n\n usage:')
    rc, out, err = run(cxltest, "list", "-x")
    assert rc == 129 and err.startswith("  Error: unknown switch `x'\n")
    assert "    -L, --media-errors    include media-error information \n" in err


def test_empty_result_warns(cxltest):
    assert run(cxltest, "list", "-R", "-r", "region9") == (
        0, "[\n]\n", "  Warning: no matching devices found\n\n")


def test_mailbox_health_partition_alert_firmware(cxltest):
    rc, out, err = run(cxltest, "list", "-m", "mem0", "-H", "-I", "-A", "-F")
    (md,) = json.loads(out)
    keys = list(md)
    assert keys.index("health") < keys.index("alert_config") < keys.index("serial")
    assert keys.index("host") < keys.index("partition_info") < keys.index("firmware")
    h = md["health"]
    assert h["media_normal"] is True and h["temperature"] == 25 and h["ext_life_used"] == "normal"
    assert list(h)[-3:] == ["dirty_shutdowns", "volatile_errors", "pmem_errors"]
    assert md["partition_info"] == {
        "total_size": 2 << 30, "volatile_only_size": 0, "persistent_only_size": 0,
        "partition_alignment_size": 256 << 20, "active_volatile_size": 1 << 30,
        "active_persistent_size": 1 << 30, "next_volatile_size": 0, "next_persistent_size": 0}
    assert len(md["alert_config"]) == 18
    fw = md["firmware"]
    assert fw["num_slots"] == 3 and fw["active_slot"] == 1 and fw["slot_1_version"] == "mock fw v1 "
    # no memN/firmware/memN loader in the model: libcxl reports and assumes busy
    assert fw["fw_update_in_progress"] is True and fw["remaining_size"] == 0
    assert err == ("libcxl: cxl_fwl_get_status: mem0: failed to get fw loader status "
                   "(No such file or directory)\n"
                   "libcxl: cxl_memdev_fw_update_get_remaining: mem0: failed to get fw loader "
                   "remaining size (No such file or directory)\n")
    human = json.loads(run(cxltest, "list", "-m", "mem0", "-I", "-u")[1])
    assert human["partition_info"]["total_size"] == "2.00 GiB (2.15 GB)"


def test_mailbox_unavailable_on_rendered_tree(tmp_path, cxltest):
    render(cxltest, str(tmp_path))
    d = DirectoryBackend(str(tmp_path))
    rc, out, err = run(d, "list", "-m", "mem3", "-H")
    (md,) = json.loads(out)
    assert "health" not in md and rc == 0
    assert err == (
        "libcxl: do_cmd: failed to validate /dev/cxl/mem3 as a CXL memdev node\n"
        "libcxl: alloc_do_query: mem3: query commands failed: No such device or address\n"
        "libcxl: cxl_cmd_new_generic: mem3: query returned: No such device or address\n")
    # same JSON as on the live emulator for sysfs-only listings
    assert json.loads(run(d, "list", "-m", "mem3", "-vv")[1]) == \
        json.loads(run(cxltest, "list", "-m", "mem3", "-vv")[1])


def test_media_errors_none_listed(cxltest):
    # the machine has a tracefs (docs/ras.md): no poison, no "media_errors" key, no message;
    # a rendered tree without tracefs: tests/tools/test_cxl_ras_cmds.py
    rc, out, err = run(cxltest, "list", "-m", "mem0", "-L")
    assert "media_errors" not in json.loads(out)[0]
    assert err == ""
    assert "cxl list" in cxltest.listdir("/sys/kernel/tracing/instances")   # freed, not destroyed


def test_daxregion_only_when_dax_region_exists(cxltest):
    (region,) = lst(cxltest, "-R", "-X")
    has_dax = cxltest.exists("/sys/bus/cxl/devices/region0/dax_region0")
    assert ("daxregion" in region) == has_dax
    if has_dax:
        dax = region["daxregion"]
        assert dax["id"] == 0 and "path" not in dax
        size = int(cxltest.read("/sys/bus/cxl/devices/region0/dax_region0/dax_region/size"), 0)
        assert dax["size"] == size


def test_verbose_levels(cxltest):
    out = lst(cxltest, "-v")          # everything nests under the one bus
    assert [list(x) for x in out] == [["bus", "provider", "nr_dports", "dports", "ports:root0",
                                       "endpoints:root0", "decoders:root0"]]
    (region,) = out[0]["decoders:root0"][0]["regions:decoder0.0"]
    assert region["mappings"][0]["position"] == 1
    (ep10,) = out[0]["endpoints:root0"]
    assert ep10["memdev"]["memdev"] == "mem10" and ep10["depth"] == 1
    rc, out3, err = run(cxltest, "list", "-vvv", "-m", "mem0")
    assert '"health":{' in out3 and '"partition_info":{' in out3
    assert "tracefs" not in err and '"media_errors"' not in out3     # -vvv implies -L; nothing poisoned


def test_debug_and_other_commands(cxltest):
    rc, out, err = run(cxltest, "list", "-m", "mem0", "--debug")
    assert err.startswith("cxl list: cmd_list: walk topology\n"
                          "cxl list: cxl_filter_walk: walk memdevs\n"
                          "libcxl: __sysfs_device_parse: base: '/sys/bus/cxl/devices' dev: 'mem'\n")
    assert run(cxltest, "version") == (0, "81\n", "")
    assert run(cxltest, "create-region") == (1, "", "cxl region: parse_create_options: no root decoder "
                                                   "specified\ncxl region: cmd_create_region: created 0 regions\n")
    assert run(cxltest, "update-firmware") == (1, "", "cxl: 'update-firmware' is not implemented by cxlemu\n")
    rc, out, err = run(cxltest, "frobnicate")
    assert (rc, err) == (1, "Unknown command: 'frobnicate'\n")


@settings(max_examples=15, deadline=None)
@given(st.sets(st.integers(0, 10), min_size=1, max_size=5), st.sampled_from([",", " "]),
       st.sampled_from(["mem{}", "{}", "cxl_mem.{}"]))
def test_memdev_filter_selects_exactly_the_named_set(cxltest, ids, sep, form):
    # cxl_mem.10 does not exist (mem10 is the RCH device cxl_rcd.10)
    expect = {f"mem{i}" for i in ids if not (form == "cxl_mem.{}" and i == 10)}
    out = lst(cxltest, "-m", sep.join(form.format(i) for i in sorted(ids))) or []
    assert {m["memdev"] for m in out} == expect


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10), st.sampled_from(["{}", "{:#x}", "{:#o}"]))
def test_serial_filter_parses_any_c_base(cxltest, serial, fmt):
    (md,) = lst(cxltest, "-s", fmt.format(serial).replace("0o", "0"))
    assert md["memdev"] == f"mem{serial}" and md["serial"] == serial


def test_memdev_by_decoder_filter_asks_each_decoder_once(monkeypatch):
    """``cxl list -M -d decoderX`` on N memdevs: the decoders that pass the
    filter are found once per listing, not once per memdev (it was
    memdevs x decoders: 13.6 s on large-fabric, the C tool 8 s), with the
    same memdevs listed; a write by the library drops what was kept."""
    from cxlemu.tools.cxl import filter as f
    from cxlemu.tools.libcxl import CxlContext
    b = boot("biscuitos-c")
    calls = []
    orig = f.decoder_filter
    monkeypatch.setattr(f, "decoder_filter", lambda dec, ident: calls.append(dec.devname) or orig(dec, ident))
    out = lst(b, "-M", "-d", "decoder0.0")
    assert sorted(m["memdev"] for m in out) == [f"mem{i}" for i in range(8)]
    assert calls and len(calls) == len(set(calls))               # each decoder asked once
    ctx = CxlContext(b)
    n = []
    assert f._kept(ctx, ("k",), lambda: n.append(1) or 1) == 1 and f._kept(ctx, ("k",), lambda: 2) == 1
    ctx.io.flush()                                                # waits for probing: kept
    assert f._kept(ctx, ("k",), lambda: 3) == 1
    with pytest.raises(OSError):
        ctx.io.write_attr("/sys/bus/cxl/devices/mem0/no_such", "1")   # a write, even failed: recomputed
    assert f._kept(ctx, ("k",), lambda: 4) == 4
