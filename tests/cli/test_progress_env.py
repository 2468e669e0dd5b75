"""CXLEMU_PROGRESS=1 draws progress bars even when stderr is a pipe; unset, a
pipe gets none (and CXLEMU_PROGRESS=0 never does)."""

from __future__ import annotations

import os
import subprocess

from cxltest_support import CXLEMU, cx


def _run(env_value: str | None) -> str:
    env = os.environ.copy()
    env.pop("CXLEMU_PROGRESS", None)
    if env_value is not None:
        env["CXLEMU_PROGRESS"] = env_value
    p = subprocess.run(CXLEMU + ["run", "t", "gups", "--rss", "64M", "--accesses", "3M"], capture_output=True,
                       text=True, env=env, check=True)
    return p.stderr


def test_forced_bar_through_a_pipe_and_none_otherwise():
    cx("create", "t", "--topology", "tiered")
    forced = _run("1")
    assert "run " in forced and "%" in forced and "\x1b[" in forced      # a rich bar, drawn with ANSI codes
    assert "%" not in _run(None) and "\x1b[" not in _run(None)
    assert "\x1b[" not in _run("0")
