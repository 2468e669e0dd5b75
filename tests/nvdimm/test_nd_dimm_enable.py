"""ndctl disable-dimm / enable-dimm (ndctl/dimm.c action_disable/action_enable):
unbind and bind the nvdimm driver, refuse an active dimm, the summary lines
and exit codes of ndctl, and the label workflow they exist for."""

from __future__ import annotations

import json

from pmem_support import backend, lsa, ndctl, pmem_region


def state(b, dimm="nmem0") -> str:
    return b.read(f"/sys/bus/nd/devices/{dimm}/state").strip()


def test_disable_and_enable_an_idle_dimm(tmp_path):
    b = backend(tmp_path)
    rc, out, err = ndctl(b, "disable-dimm", "nmem0")
    assert (rc, out, err) == (0, "", "disabled 1 nmem\n")
    assert not b.lexists("/sys/bus/nd/devices/nmem0/driver")
    assert json.loads(ndctl(b, "list", "-D", "-i")[1])[0]["state"] == "disabled"
    assert ndctl(b, "disable-dimm", "nmem0")[2] == "disabled 1 nmem\n"        # already: a no-op success
    rc, out, err = ndctl(b, "enable-dimm", "all")
    assert (rc, err) == (0, "enabled 1 nmem\n")
    assert b.lexists("/sys/bus/nd/devices/nmem0/driver")


def test_an_active_dimm_is_skipped(tmp_path):
    b = backend(tmp_path)
    pmem_region(b)
    assert state(b) == "active"
    rc, out, err = ndctl(b, "disable-dimm", "nmem0")
    assert rc == 1
    assert err == "nmem0 is active, skipping...\ndisabled 0 nmem\n"
    assert b.lexists("/sys/bus/nd/devices/nmem0/driver")


def test_bad_names_are_usage_errors(tmp_path):
    b = backend(tmp_path)
    rc, out, err = ndctl(b, "enable-dimm", "zz")
    assert rc == 129 and "'zz' is not a valid dimm name" in err and "usage: ndctl enable-dimm" in err
    rc, out, err = ndctl(b, "disable-dimm", "nmem7")
    assert (rc, err) == (0, "disabled 0 nmem\n")


def test_label_workflow_on_a_disabled_dimm(tmp_path):
    """disable-dimm, rewrite the label area, enable-dimm: the kernel reads the new labels."""
    b = backend(tmp_path)
    assert ndctl(b, "disable-dimm", "nmem0")[0] == 0
    assert ndctl(b, "zero-labels", "nmem0")[2] == "zeroed 1 nmem\n"
    assert not any(lsa(b)[:4096])
    assert ndctl(b, "init-labels", "nmem0", "-V", "1.2")[2] == "initialized 1 nmem\n"
    assert ndctl(b, "enable-dimm", "nmem0")[2] == "enabled 1 nmem\n"
    assert ndctl(b, "check-labels", "nmem0")[2] == "successfully verified 1 nmem label\n"
    idx = json.loads(ndctl(b, "read-labels", "nmem0", "-j", "-I")[1])[0]["index"]
    assert {(i["major"], i["minor"]) for i in idx} == {(1, 2)}
