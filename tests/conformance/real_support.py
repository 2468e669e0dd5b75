"""Running a sequence of commands with Debian's real binaries through
``cxlemu real`` and with cxlemu's tools through ``cxlemu exec``, on two
identical machines, and comparing what each step printed and the trees the
machines end with (tests/conformance/test_real_mutations.py).

The real side runs the whole sequence in one ``cxlemu real`` (one mount,
one namespace): a small runner executes each step, capturing its exit code,
stdout and stderr.  Our side runs each step with ``cxlemu.cli.main.main
(["exec", NAME, "--", ...])`` in this process.
"""

from __future__ import annotations

import contextlib
import io
import json
import posixpath
import re
import subprocess
import sys
from dataclasses import dataclass

from cxlemu.machine.store import Store
from cxlemu.topology import presets

_RUNNER = r"""
import json, subprocess, sys
steps = json.load(open(sys.argv[1]))
out = []
for argv in steps:
    p = subprocess.run(argv, capture_output=True, text=True)
    out.append([p.returncode, p.stdout, p.stderr])
json.dump(out, open(sys.argv[2], "w"))
"""

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Step:
    rc: int
    out: str
    err: str


def create_twins(topology: str, names=("real", "ours")) -> None:
    text = presets.text(topology) if topology in presets.names() else topology
    for n in names:
        Store().create(n, text)


def run_real(name: str, steps: list[list[str]], tmp_path) -> list[Step]:
    """Each argv of ``steps`` with the real binaries, in one ``cxlemu real``."""
    spec, result = tmp_path / f"{name}-steps.json", tmp_path / f"{name}-result.json"
    spec.write_text(json.dumps(steps))
    p = subprocess.run([sys.executable, "-m", "cxlemu", "real", "-q", name, "--",
                        sys.executable, "-I", "-c", _RUNNER, str(spec), str(result)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    # `cxlemu real` started the machine process (its writes were journalled):
    # stop it, so that the tree is read back from what it saved
    subprocess.run([sys.executable, "-m", "cxlemu", "stop", name], capture_output=True, text=True, timeout=300,
                   check=True)
    return [Step(*r) for r in json.loads(result.read_text())]


def run_ours(name: str, steps: list[list[str]]) -> list[Step]:
    """Each argv of ``steps`` with cxlemu's tools through ``cxlemu exec``."""
    from cxlemu.cli.main import main
    res = []
    for argv in steps:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["exec", name, "--", *argv])
        res.append(Step(rc, out.getvalue(), err.getvalue()))
    return res


def tree(name: str, tops=("/sys/bus/cxl", "/sys/bus/nd", "/sys/bus/dax", "/sys/devices/system/memory",
                          "/sys/devices/system/node")) -> dict[str, str]:
    """The machine's sysfs below ``tops``: path -> content ("-> target" for
    links), following no links (UUIDs normalised: both sides make random ones)."""
    out: dict[str, str] = {}
    with Store().open(name, write=False) as m:
        b = m.backend()
        seen = set()
        stack = [b.realpath(t) for t in tops if b.exists(t)] + [t for t in tops if b.exists(t)]
        while stack:
            p = stack.pop()
            if p in seen:
                continue
            seen.add(p)
            if b.islink(p):
                out[p] = "-> " + b.readlink(p)
                continue
            if b.isdir(p):
                out[p] = "<dir>"
                stack.extend(posixpath.join(p, n) for n in b.listdir(p))
                continue
            try:
                out[p] = UUID_RE.sub("<uuid>", b.read(p))
            except OSError as e:
                out[p] = f"<errno {e.errno}>"
    return out


def json_or_text(s: str):
    try:
        return json.loads(s) if s.strip() else None
    except ValueError:
        return s


def normalise(obj, drop: frozenset = frozenset()):
    """UUIDs replaced, keys in ``drop`` removed, arrays sorted (their order is readdir order)."""
    if isinstance(obj, dict):
        return {k: normalise(v, drop) for k, v in obj.items() if k not in drop}
    if isinstance(obj, list):
        return sorted((normalise(x, drop) for x in obj), key=lambda x: json.dumps(x, sort_keys=True))
    if isinstance(obj, str):
        return UUID_RE.sub("<uuid>", obj)
    return obj
