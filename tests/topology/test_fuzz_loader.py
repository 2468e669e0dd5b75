"""The topology loader never raises anything but TopologyError, and a topology
it accepts boots (or is refused by the firmware with FirmwareError): never a
traceback from a topology file (issue 14 #1).

Three fuzzers: raw bytes (binary garbage, other encodings), generated TOML
documents with random sections and values, and mutations of the built-in
presets (values at and beyond the limits of the fields they encode into),
carried through platform construction and a kernel boot.
"""

from __future__ import annotations

import tomllib

from hypothesis import HealthCheck, given, settings, strategies as st

from cxlemu.hw.firmware import FirmwareError
from cxlemu.hw.platform import build_platform
from cxlemu.kernel.kernel import Kernel
from cxlemu.topology import presets
from cxlemu.topology.schema import TopologyError, decode_text, loads

SECTIONS = ("machine", "boot", "numa", "host_bridge", "switch", "device", "window", "firmware_region")
FIELDS = ("name", "id", "parent", "uid", "node", "size", "base", "lsa", "serial", "volatile", "persistent",
          "partitionable", "targets", "granularity", "restrictions", "kernel", "cpus", "memory", "bus",
          "segment", "root_ports", "downstream_ports", "hdm_decoders", "numa_node", "port", "window",
          "devices", "offset", "mode", "xormaps", "arithmetic", "qtg", "cdat", "caps", "port_ids",
          "read_latency", "memory_block_size", "payload_max", "firmware_version", "chbs_base")

scalars = st.one_of(
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.sampled_from([0, 1, 2, 3, 255, 256, 4096, (1 << 32) - 1, 1 << 32, (1 << 46), (1 << 64) - 1]),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["4G", "512M", "99999999999T", "64G", "1P", "0x100000000", "-1", "256", "6.1", "hb0",
                     "sw0", "ram", "pmem", "xor", "modulo", "acpi", "cxl_test", "1.1", "2.0", ""]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.sampled_from(FIELDS), inner,
                                                                         max_size=3)), max_leaves=6)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _toml(doc: dict) -> str:
    out = []
    for sec, val in doc.items():
        if isinstance(val, dict):
            out.append(f"[{sec}]")
            out += [f"{k} = {_toml_value(v)}" for k, v in val.items()]
        else:
            for t in val:
                out.append(f"[[{sec}]]")
                out += [f"{k} = {_toml_value(v)}" for k, v in t.items()]
    return "\n".join(out) + "\n"


def _load_and_boot(text: str) -> None:
    """What ``cxlemu create`` does before saving; only the two clean errors may escape."""
    try:
        topo = loads(text)
        plat = build_platform(topo)
        plat.firmware_boot()
        Kernel(plat).boot()
    except (TopologyError, FirmwareError):
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_raw_bytes_never_traceback(data):
    try:
        loads(decode_text(data, "fuzz.toml"))
    except TopologyError as e:
        assert e.field and e.reason


def test_not_utf8_names_the_byte():
    try:
        decode_text(b"[machine]\nname = \"\xff\"\n", "x.toml")
    except TopologyError as e:
        assert e.field == "x.toml" and "0xff at offset 18, line 2" in e.reason
    else:
        raise AssertionError("accepted")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(SECTIONS + ("bogus",)),
                       st.one_of(st.dictionaries(st.sampled_from(FIELDS), values, max_size=5),
                                 st.lists(st.dictionaries(st.sampled_from(FIELDS), values, max_size=6),
                                          max_size=3)),
                       max_size=6))
def test_generated_documents_never_traceback(doc):
    try:
        loads(_toml(doc))
    except TopologyError as e:
        assert e.field and e.reason


BOUNDARY = st.one_of(
    st.sampled_from([0, 1, 2, 3, 8, 16, 255, 256, 1023, 1024, 65535, 65536, (1 << 32) - 1, 1 << 32,
                     (1 << 46) - (1 << 28), 1 << 46, (1 << 63) - 1, (1 << 64) - 1, 1 << 64, -1]),
    st.integers(min_value=0, max_value=1 << 70).map(lambda x: x),
    st.builds(lambda n, s: f"{n}{s}", st.sampled_from([1, 2, 3, 4, 7, 16, 64, 256, 1000, 99999999999]),
              st.sampled_from(["", "K", "M", "G", "T", "P"])),
    scalars,
)
PRESETS = [n for n in presets.names() if n != "large-fabric"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PRESETS), st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000), BOUNDARY),
                                           min_size=1, max_size=3))
def test_mutated_presets_load_and_boot_or_fail_cleanly(name, edits):
    doc = tomllib.loads(presets.text(name))
    for pick, keypick, value in edits:
        secs = sorted(doc)
        sec = secs[pick % len(secs)]
        tables = [doc[sec]] if isinstance(doc[sec], dict) else doc[sec]
        if not tables:
            continue
        table = tables[pick % len(tables)]
        keys = sorted(table)           # mostly an existing field, sometimes any field
        key = keys[keypick % len(keys)] if keys and keypick % 4 else FIELDS[keypick % len(FIELDS)]
        table[key] = value
    _load_and_boot(_toml(doc))


def test_limits_are_named():
    """The limits the issue met, each refused with the field and the bound."""
    base = presets.text("biscuitos-b")
    cases = [
        (base.replace('size = "4G"', 'size = "99999999999T"'), "window[0].size", "64-bit Window Size"),
        (base.replace('size = "4G"', 'size = "64T"'), "window[0].size", "46-bit physical address space"),
        (base.replace('lsa = "128K"', 'lsa = "64G"'), "device[0].lsa", "LSA Size"),
        (base.replace('lsa = "128K"', 'lsa = "1G"'), "device[0].lsa", "256M"),
        (base.replace("uid = 0", "uid = 0x100000000"), "host_bridge[0].uid", "32-bit"),
        (base.replace("node = 0\ncpus = 2", "node = 5000\ncpus = 2"), "numa[0].node", "MAX_NUMNODES"),
        (base.replace('size = "4G"', 'size = "4G"\nbase = 0'), "window[0].base", "overlaps"),
    ]
    for text, field, words in cases:
        try:
            topo = loads(text)
            build_platform(topo)
        except TopologyError as e:
            assert e.field == field, (field, e)
            assert words in e.reason, (words, e.reason)
        else:
            raise AssertionError(f"accepted: {field}")


def test_devices_without_serial_numbers_may_share_serial_zero():
    """QEMU's cxl-type3 without ``sn=`` has no Device Serial Number: several
    devices read serial 0 (and get distinct media files)."""
    text = presets.text("biscuitos-c")          # the preset, as QEMU runs it: no sn=
    topo = loads(text)
    assert {d.serial for d in topo.devices} == {0}
    plat = build_platform(topo)
    assert len({d.media_file for d in plat.devices}) == 8
    bad = text.replace("serial = 0", "serial = 7")
    try:
        loads(bad)
    except TopologyError as e:
        assert e.field == "device[1].serial"
    else:
        raise AssertionError("duplicate non-zero serial accepted")
