"""``cxlemu topology generate`` and the huge-fabric preset."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

from hypothesis import HealthCheck, given, settings, strategies as st

from cxlemu.cli.main import main
from cxlemu.hw.platform import build_platform
from cxlemu.kernel.kernel import Kernel
from cxlemu.topology import presets
from cxlemu.topology.generate import GenerateError, Spec, generate, resolve, split
from cxlemu.topology.schema import VALID_WAYS, loads

import pytest


def _boot(text: str) -> Kernel:
    p = build_platform(loads(text))
    p.firmware_boot()
    k = Kernel(p)
    k.boot()
    return k


@st.composite
def specs(draw):
    n = draw(st.integers(1, 40))
    hbs = draw(st.integers(1, min(n, 6)))
    per_hb = -(-n // hbs)
    levels = draw(st.integers(0 if per_hb <= 32 else 1, 3))
    rps = per_hb if levels == 0 else draw(st.integers(1, 4))
    ways = draw(st.sampled_from([w for w in VALID_WAYS if w <= hbs]))
    return Spec(devices=n, switch_levels=levels, host_bridges=hbs, segments=draw(st.integers(1, hbs)),
                root_ports=rps, ways=ways, device_size=draw(st.sampled_from(["256M", "1G"])),
                device_type=draw(st.sampled_from(["volatile", "persistent"])))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_every_generated_topology_loads_and_boots(spec):
    topo = loads(generate(spec))
    assert len(topo.devices) == spec.devices
    assert len(topo.host_bridges) == spec.host_bridges
    assert {hb.segment for hb in topo.host_bridges} == set(range(spec.segments))
    k = _boot(generate(spec))
    mds = k.cxl.memdevs
    assert len(mds) == spec.devices
    assert all(md.endpoint is not None for md in mds)          # every device enumerated to an endpoint
    assert len(k.cxl.root_decoders()) == len(topo.windows)
    # switch levels: an endpoint sits below host bridge port + levels switch ports
    assert {md.endpoint.depth for md in mds} == {1 + spec.switch_levels + 1}


def test_split_is_balanced():
    assert split(10, 3) == [4, 3, 3]
    assert sum(split(16384, 128)) == 16384


@pytest.mark.parametrize("kw, option", [
    (dict(devices=0), "--devices"),
    (dict(devices=4, host_bridges=5), "--host-bridges"),
    (dict(devices=4, host_bridges=2, segments=3), "--segments"),
    (dict(devices=4, ways=5, host_bridges=4), "--ways"),
    (dict(devices=4, ways=8, host_bridges=4), "--ways"),
    (dict(devices=4, device_size="100M"), "--device-size"),
    (dict(devices=4, device_size="lots"), "--device-size"),
    (dict(devices=40, switch_levels=0, root_ports=4), "--root-ports"),
    (dict(devices=4, switch_levels=9), "--switch-levels"),
    (dict(devices=600, switch_levels=1, host_bridges=1, root_ports=1), "--switch-levels"),
    (dict(devices=2000, host_bridges=2, segments=1), "--segments"),
])
def test_bad_requests_name_the_option(kw, option):
    with pytest.raises(GenerateError) as e:
        generate(Spec(**kw))
    assert e.value.option == option


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(["topology", "generate", *argv])
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def test_cli_writes_a_file_and_create_boots_it(tmp_path):
    out = tmp_path / "t.toml"
    rc, _, _ = _cli("--devices", "12", "--switch-levels", "2", "--host-bridges", "2", "-o", str(out))
    assert rc == 0
    env = os.environ.copy()
    env["CXLEMU_HOME"] = str(tmp_path / "home")
    p = subprocess.run([sys.executable, "-m", "cxlemu", "create", "g", "--topology", str(out)],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert "12 memdev(s)" in p.stdout


def test_cli_bad_arguments_are_usage_errors():
    rc, out, err = _cli("--devices", "0")
    assert rc == 2 and out == ""
    assert "cxlemu topology generate: error: argument --devices: must be at least 1" in err
    rc, _, err = _cli("--devices", "many")
    assert rc == 2 and "invalid int value" in err
    rc, _, err = _cli()
    assert rc == 2 and "required" in err


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["--devices", "--switch-levels", "--host-bridges", "--segments", "--ways",
                                 "--root-ports", "--device-size", "--type", "-o", "0", "1", "3", "-2",
                                 "17", "1G", "x", "persistent", "--hdm-decoders", "99", "/nonexistent/x"]),
                max_size=8))
def test_cli_never_tracebacks(argv):
    rc, _, err = _cli(*argv)
    assert rc in (0, 1, 2)
    assert "Traceback" not in err


def test_huge_fabric_preset_shape():
    assert "huge-fabric" in presets.names()
    t = presets.load("huge-fabric")
    assert len(t.devices) == 16384
    assert len(t.host_bridges) == 128
    assert len({hb.segment for hb in t.host_bridges}) == 128
    depth = {}
    for sw in t.switches:
        depth[sw.id] = depth.get(sw.parent, 0) + 1
    assert max(depth.values()) == 3
    assert resolve(Spec(devices=16384)).host_bridges == 128
