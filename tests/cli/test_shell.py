"""``cxlemu shell`` and ``exec`` (issue 14 #2): the machine's tools first in
PATH, cat/ls/readlink/tree on the machine only for its /sys, /proc and /dev,
everything else (and pipes) on the host, the prompt, ``-c``, and --help
texts that describe their arguments without reST markup."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cxlemu.cli import shell

CXLEMU = [sys.executable, "-m", "cxlemu"]


def run(*args, env=None, input=None):
    return subprocess.run(CXLEMU + list(args), capture_output=True, text=True, input=input,
                          env=env or os.environ.copy())


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    home = tmp_path_factory.mktemp("shell-home")
    env = dict(os.environ, CXLEMU_HOME=str(home))
    p = subprocess.run(CXLEMU + ["create", "box", "-t", "biscuitos-b"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    return env


def sh(env, command: str):
    return run("shell", "box", "-c", command, env=env)


def test_pipe_into_host_cat_prints(box):
    p = sh(box, "cxl list -M | cat")
    assert p.returncode == 0, p.stderr
    assert '"memdev":"mem0"' in p.stdout


def test_exit_status_of_the_command_line(box):
    assert sh(box, "exit 3").returncode == 3
    assert sh(box, "cxl nope").returncode != 0
    assert sh(box, "true").returncode == 0


def test_coreutils_split_host_and_machine_paths(box, tmp_path):
    f = tmp_path / "note.txt"
    f.write_text("host file\n")
    (tmp_path / "link").symlink_to(f)
    p = sh(box, f"cat {f} /sys/bus/cxl/devices/mem0/pmem/size /dev/null")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "host file\n0x20000000\n"
    p = sh(box, f"ls {tmp_path}")
    assert p.stdout.split() == ["link", "note.txt"]
    assert "mem0" in sh(box, "ls /sys/bus/cxl/devices").stdout.split()
    assert sh(box, f"readlink {tmp_path}/link").stdout == f"{f}\n"
    assert sh(box, "readlink /sys/bus/cxl/devices/mem0").stdout.startswith("../../../devices/pci0000:0c/")
    p = sh(box, "ls /sys/bus/cxl/devices/nope")
    assert p.returncode == 2 and "cannot access '/sys/bus/cxl/devices/nope'" in p.stderr
    p = sh(box, "cd /tmp && ls -d .")
    assert p.stdout == ".\n"                        # no path of the machine: the host's ls


def test_exec_routes_coreutils_the_same_way(box, tmp_path):
    f = tmp_path / "x"
    f.write_text("abc\n")
    p = run("exec", "box", "--", "cat", str(f), env=box)
    assert p.stdout == "abc\n"
    p = run("exec", "box", "--", "cat", env=box, input="from stdin\n")
    assert p.stdout == "from stdin\n"


def test_interactive_prompt_shows_the_machine(box):
    env = dict(box, SHELL="/bin/bash")
    p = run("shell", "box", env=env, input="cat /sys/bus/cxl/devices/mem0/pmem/size\nexit 5\n")
    assert p.returncode == 5
    assert "(cxlemu:box) $ " in p.stderr
    assert "0x20000000" in p.stdout


def test_machine_paths():
    assert shell.is_machine_path("/sys/bus/cxl")
    assert shell.is_machine_path("/proc/iomem")
    assert shell.is_machine_path("/dev/cxl/mem0")
    assert shell.is_machine_path("/dev/dax0.0")
    assert not shell.is_machine_path("/dev/null")
    assert not shell.is_machine_path("/dev/fd/0")
    assert not shell.is_machine_path("/system")
    assert not shell.is_machine_path("/etc/passwd")
    assert shell.is_machine_path("devices", cwd="/sys/bus/cxl")
    assert not shell.is_machine_path("../../etc", cwd="/sys")
    assert shell.plan("cat", ["-n", "/a", "/sys/x", "/sys/y", "/b"], cwd="/") == [
        ("host", ["-n", "/a"]), ("machine", ["-n", "/sys/x", "/sys/y"]), ("host", ["-n", "/b"])]
    assert shell.plan("cat", [], cwd="/sys") == [("host", [])]
    assert shell.plan("ls", ["-l"], cwd="/sys/bus") == [("machine", ["-l", "/sys/bus"])]
    assert shell.plan("ls", ["-I", "/sys", "/tmp"], cwd="/") == [("host", ["-I", "/sys", "/tmp"])]


SUBCOMMANDS = ["topologies", "topology", "create", "ls", "rm", "show", "exec", "shell", "iomem", "dmesg",
               "acpi", "sysfs", "reboot", "power-fail", "translate", "demo", "blocks", "mem", "nodes",
               "labels", "cpu-cache", "draw"]


def test_help_texts_describe_arguments_without_rest_markup():
    from cxlemu.cli.main import build_parser
    parser = build_parser()
    texts = {"": parser.format_help()}
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sp in sub.choices.items():
        texts[name] = sp.format_help()
    for name, text in texts.items():
        assert "``" not in text and ":func:" not in text and ":class:" not in text, name
    assert set(SUBCOMMANDS) <= set(sub.choices)
    assert "COMMAND is one of the bundled tools" in texts["exec"] and "the machine" in texts["exec"]
    for words in ("render OUTDIR", "read PATH", "write PATH VALUE", "ls [PATH"):
        assert words in texts["sysfs"]
    assert "-c COMMAND" in texts["shell"]
