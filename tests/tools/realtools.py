"""Run the real Debian binaries (daxctl 76.1, numactl 2.0.16) on a rendered
tree: ``unshare -m`` with OUT/sys bind-mounted over /sys and a private /dev
whose device nodes are re-created with mknod from the rendered
``major:minor`` files (libdaxctl compares the nodes' st_rdev with
/sys/dev/char)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from cxlemu.sysfs.backend import render

SCRIPT = r'''
set -e
R=$0
mount --bind "$R/sys" /sys
D=$(mktemp -d)
mount -t tmpfs none "$D"
cd "$R/dev"
find . -mindepth 1 -type d -exec mkdir -p "$D/{}" \;
find . -type f | while read -r f; do mm=$(cat "$f"); mknod "$D/$f" c "${mm%%:*}" "${mm##*:}"; done
for n in null zero urandom random tty; do touch "$D/$n"; mount --bind "/dev/$n" "$D/$n"; done
mount --bind "$D" /dev
cd /
exec "$@"
'''


def available(binary: str) -> bool:
    return os.geteuid() == 0 and shutil.which(binary) is not None and shutil.which("unshare") is not None


def run_real_many(backend, argvs: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Render ``backend`` once and run each ``argv`` (a real binary) against it."""
    for argv in argvs:
        if not available(argv[0]):
            pytest.skip(f"needs root, unshare and {argv[0]}")
    out_list = []
    with tempfile.TemporaryDirectory(prefix="cxlemu-real-") as out:
        render(backend, out)
        for argv in argvs:
            p = subprocess.run(["unshare", "-m", "bash", "-c", SCRIPT, out, *argv], capture_output=True,
                               text=True, timeout=60)
            if p.returncode and "unshare" in p.stderr and "Operation not permitted" in p.stderr:
                pytest.skip("unshare -m not permitted here")
            out_list.append(p)
    return out_list


def run_real(backend, argv: list[str]) -> subprocess.CompletedProcess:
    return run_real_many(backend, [argv])[0]
