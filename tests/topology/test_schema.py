"""Topology files: every preset loads, bad files name the field and the reason."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from cxlemu.topology import presets
from cxlemu.topology.schema import TopologyError, dumps, loads
from cxlemu.util.units import format_size, parse_size

MIN = """
[machine]
name = "t"
[[host_bridge]]
id = "hb0"
uid = 0
[[device]]
id = "d0"
parent = "hb0"
volatile = "1G"
[[window]]
size = "4G"
targets = ["hb0"]
"""


def test_all_presets_load():
    names = presets.names()
    for required in ("biscuitos-a", "biscuitos-b", "biscuitos-c", "cxl-test", "seed-003-window", "large-fabric"):
        assert required in names
    for n in names:
        t = presets.load(n)
        assert t.devices and t.windows


def test_large_fabric_has_1024_devices_behind_switches():
    t = presets.load("large-fabric")
    assert len(t.devices) >= 1024
    switch_ids = {s.id for s in t.switches}
    assert all(d.parent in switch_ids for d in t.devices)


def test_seed_003_window_is_the_real_window():
    t = presets.load("seed-003-window")
    w = t.windows[0]
    assert (w.base, w.size) == (0xC050000000, 0x3CA0000000)


@pytest.mark.parametrize("edit,field,reason", [
    (("volatile = \"1G\"", "volatile = \"100M\""), "device[0].volatile", "multiple of 256M"),
    (("size = \"4G\"", "size = \"4G\"\nbase = 0x110000001"), "window[0].base", "256M aligned"),
    (("targets = [\"hb0\"]", "targets = [\"hb9\"]"), "window[0].targets", "not a host bridge"),
    (("parent = \"hb0\"", "parent = \"nowhere\""), "device[0].parent", "not a host bridge or switch"),
    (("uid = 0", "uid = \"zero\""), "host_bridge[0].uid", "expected an integer"),
    (("name = \"t\"", "name = \"t\"\ncolour = \"red\""), "machine.colour", "unknown field"),
    (("[[window]]", "[[window]]\ngranularity = 300"), "window[0].granularity", "power of two"),
    (("name = \"t\"", "name = \"t\"\nname = \"u\""), "<toml>", "Cannot overwrite"),
])
def test_bad_files_name_field_and_reason(edit, field, reason):
    text = MIN.replace(*edit)
    with pytest.raises(TopologyError) as ei:
        loads(text)
    assert ei.value.field.startswith(field)
    assert reason in ei.value.reason


def test_xor_window_needs_xormaps():
    text = MIN.replace('[[host_bridge]]\nid = "hb0"\nuid = 0', '[[host_bridge]]\nid = "hb0"\nuid = 0\n'
                       '[[host_bridge]]\nid = "hb1"\nuid = 1').replace(
        'targets = ["hb0"]', 'targets = ["hb0", "hb1"]\narithmetic = "xor"')
    with pytest.raises(TopologyError) as ei:
        loads(text)
    assert ei.value.field == "window[0].xormaps"


def test_too_many_children_for_a_switch():
    text = MIN + '[[switch]]\nid = "s"\nparent = "hb0"\n'
    with pytest.raises(TopologyError) as ei:
        loads(text)
    assert "no free downstream port" in ei.value.reason


def test_dumps_round_trips_every_preset():
    for n in presets.names():
        t = presets.load(n)
        again = loads(dumps(t))
        assert again.devices == t.devices and again.windows == t.windows and again.boot == t.boot
        assert again.host_bridges == t.host_bridges and again.switches == t.switches


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=1 << 50))
def test_size_format_parse_round_trip(n):
    assert parse_size(format_size(n)) == n


def test_parse_size_rejects_garbage():
    for bad in ("", "12Q", "-1", "1.5G"):
        with pytest.raises(ValueError):
            parse_size(bad)
