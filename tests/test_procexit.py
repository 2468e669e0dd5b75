"""util/procexit.py: leaving without the interpreter's teardown keeps what a
normal exit shows (issue 13), and ``cxlemu exec`` uses it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent("""
    import atexit, sys, threading, time
    from cxlemu.util.procexit import exit_now
    atexit.register(lambda: sys.stdout.write("atexit;"))
    def late():
        time.sleep(0.2)
        sys.stdout.write("thread;")
    threading.Thread(target=late).start()
    sys.stdout.write("unflushed;")
    sys.stderr.write("err")
    exit_now(int(sys.argv[1]))
    sys.stdout.write("never")
""")


@pytest.mark.parametrize("status", [0, 3, 255])
def test_threads_atexit_and_stdio_as_a_normal_exit(status):
    p = subprocess.run([sys.executable, "-c", PROGRAM, str(status)], capture_output=True, text=True, timeout=60)
    assert p.returncode == status
    assert p.stdout == "unflushed;thread;atexit;"
    assert p.stderr == "err"


def test_a_failed_stdout_flush_is_status_120_as_cpython_says():
    prog = "import signal; signal.signal(signal.SIGPIPE, signal.SIG_IGN)\n" + PROGRAM
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}    # stdout buffered
    for status, expect in ((0, 120), (4, 4)):          # a failure status is kept
        r, w = os.pipe()
        os.close(r)                   # the reader is gone: EPIPE on flush
        p = subprocess.run([sys.executable, "-c", prog, str(status)], stdout=w, stderr=subprocess.PIPE,
                           env=env, timeout=60)
        os.close(w)
        assert p.returncode == expect
        assert p.stderr.decode().startswith("errException ignored in: <_io.TextIOWrapper name='<stdout>'")
        assert "BrokenPipeError" in p.stderr.decode()


def test_exec_exits_with_the_tools_status_and_output(tmp_path):
    env = dict(os.environ, CXLEMU_HOME=str(tmp_path), CXLEMU_PROGRESS="0")
    cx = [sys.executable, "-m", "cxlemu"]
    subprocess.run(cx + ["create", "b", "--topology", "biscuitos-b"], env=env, check=True, capture_output=True)
    ok = subprocess.run(cx + ["exec", "b", "--", "cxl", "list", "-M"], env=env, capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0 and '"memdev":"mem0"' in ok.stdout
    bad = subprocess.run(cx + ["exec", "b", "--", "cxl", "list", "--no-such"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 129 and "unknown option" in bad.stderr
    # the state written by a changing command survives the fast exit
    dis = subprocess.run(cx + ["exec", "b", "--", "cxl", "disable-memdev", "mem0", "--force"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert dis.returncode == 0, dis.stderr
    after = subprocess.run(cx + ["exec", "b", "--", "cxl", "list", "-m", "mem0", "-M", "-i"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert '"state":"disabled"' in after.stdout
