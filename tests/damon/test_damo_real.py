"""The real damo (PyPI, pinned in the ``test`` extra): the schemes it writes
with ``damo args damon --format json`` run unchanged on a machine through
``cxlemu run --damos FILE``, and damo's own value formats (``"5 ms"``,
``"1,000"``, ``"0.1 %"`` permil weights, ``"max"``) are read back exactly.

damo driving a running machine's /sys through ``cxlemu real`` needs the FUSE
mount, the machine process and tracefs (docs/damon.md, "What is left")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from cxlemu.tools import damos

from .test_cli import SMALL, cx, _vma, MiB


def damo(*args: str) -> str:
    exe = shutil.which("damo")
    assert exe, "damo is not installed (pip install '.[test]' installs damo==3.4.3)"
    env = dict(os.environ, HOME=os.environ.get("CXLEMU_HOME", "/tmp"))     # damo caches sysinfo in $HOME
    p = subprocess.run([exe, *args], capture_output=True, text=True, env=env)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p.stdout


def test_damo_is_the_pinned_version():
    assert damo("version").strip() == "3.4.3"


def test_damo_args_json_runs_on_a_machine(tmp_path):
    text = damo("args", "damon", "--ops", "vaddr",
                "--damos_action", "pageout", "--damos_access_rate", "0%", "0%", "--damos_age", "1s", "max",
                "--damos_quota_interval", "1s", "--damos_quota_space", "64MB",
                "--damos_quota_weights", "0", "3", "7",
                "--damos_filter", "anon", "matching", "allow",
                "--format", "json")
    spec = damos.from_damo_json(text)
    assert len(spec) == 1 and spec[0].ops == "vaddr" and spec[0].pid == "workload"
    s = spec[0].schemes[0]
    assert s.action == "pageout" and s.nr_accesses_pct == (0.0, 0.0)
    assert s.age_us[0] == 1_000_000 and s.quota_bytes == 64 * MiB          # damo: "64.000 MiB"
    assert s.quota_reset_ms == 1000 and s.weights == (0, 3, 7)
    assert s.filters == [{"type": "anon", "matching": True, "allow": True}]
    f = tmp_path / "pageout.json"
    f.write_text(text)
    cx("create", "t", "--topology", "tiered", *SMALL, "--set", "boot.swap=1G")
    d = json.loads(cx("run", "t", "hotcold", "--hot", "32M", "--cold", "64M", "--damos", str(f),
                      "--duration", "4s", "--json").stdout)
    st = d["damos"]["kdamonds"][0]["schemes"][0]
    assert st["action"] == "pageout" and st["sz_applied"] >= 32 * MiB
    # the quota held: at most 64 MB per second
    assert st["sz_applied"] <= 4 * 64 * MiB + 4 * MiB
    assert sum(_vma(d, "cold").values()) <= 32 * MiB
    assert sum(_vma(d, "hot").values()) >= 0.98 * 32 * MiB


def test_damo_mem_tier_recipe_as_json_equals_the_builtin_recipe():
    """damo's mem_tier.sh arguments, through damo's own parser, give the
    schemes of ``--damos mem_tier`` (the recipe cxlemu stages)."""
    text = damo("args", "damon",
                "--ops", "paddr", "--regions", "4096-1073741824", "--monitoring_intervals_goal", "4%", "3", "5ms", "10s",
                "--damos_action", "migrate_cold", "1", "--damos_access_rate", "0%", "0%",
                "--damos_apply_interval", "1s", "--damos_quota_interval", "1s", "--damos_quota_space", "200MB",
                "--damos_quota_goal", "node_mem_free_bp", "0.5%", "0",
                "--damos_filter", "reject", "young",
                "--format", "json")
    got = damos.from_damo_json(text)[0]
    assert got.goal == (400, 3, 5000, 10_000_000)
    s = got.schemes[0]
    assert (s.action, s.target_nid, s.apply_interval_us, s.quota_reset_ms) == ("migrate_cold", 1, 1_000_000, 1000)
    assert s.goals[0]["metric"] == "node_mem_free_bp" and s.goals[0]["target_value"] == 50
    assert s.filters == [{"type": "young", "matching": True, "allow": False}]
    assert got.regions == [(4096, 1073741824)]


@pytest.mark.parametrize("bad", ["[", "{}", '{"kdamonds": [{"contexts": [{"schemes": [{"quotas": {"goals": '
                                                 '[{"target_value": "lots"}]}}]}]}]}'])
def test_damo_json_errors_are_clean(bad):
    with pytest.raises(damos.DamosSetupError):
        damos.from_damo_json(bad)


_ = sys
