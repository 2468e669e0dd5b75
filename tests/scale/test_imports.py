"""Startup: a command imports only what it uses (numpy only on the data path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cxlemu.util.lazy import lazy_module


def _modules_after(code: str, env: dict | None = None) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, env=env or os.environ.copy(), check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_cli_main_imports_no_numpy_nor_rich():
    mods = _modules_after("import cxlemu.cli.main")
    assert "numpy" not in mods
    assert "rich" not in mods


def _home_with_b(tmp_path) -> dict:
    """An environment whose CXLEMU_HOME holds machine ``b`` (BiscuitOS B), stopped."""
    env = os.environ.copy()
    env["CXLEMU_HOME"] = str(tmp_path)
    subprocess.run([sys.executable, "-m", "cxlemu", "create", "b", "--topology", "biscuitos-b"],
                   check=True, capture_output=True, env=env)
    return env


def test_cxl_list_path_imports_no_numpy(tmp_path):
    env = _home_with_b(tmp_path)
    code = ("import io, contextlib\nfrom cxlemu.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as f:\n"
            "    assert main(['exec', 'b', '--', 'cxl', 'list', '-M']) == 0\n"
            "assert 'mem0' in f.getvalue()\n")
    mods = _modules_after(code, env)
    assert "cxlemu.kernel.kernel" in mods          # the machine was really loaded
    assert "numpy" not in mods
    assert "rich" not in mods
    assert "cxlemu.hw.mailbox.payloads" not in mods
    # issue 13: the stopped-machine path imports only what listing needs
    not_on_path = (
        "argparse", "locale",                                   # exec NAME -- ... is parsed without argparse
        "cxlemu.cli.mm_commands", "cxlemu.cli.draw", "cxlemu.cli.rack_commands",   # no plugin parsers
        "cxlemu.hw.mailbox.events", "cxlemu.hw.health",          # event codecs, health: on use
        "cxlemu.hw.lsa", "cxlemu.kernel.nvdimm.infoblock",       # label and info-block codecs: on use
        "cxlemu.kernel.cxl.interleave", "cxlemu.kernel.mm.blocksize", "cxlemu.kernel.trace.catalog",
        "tomllib",                                              # the state holds the parsed topology
        "hashlib", "_hashlib",                                  # the digest is _blake2's (no OpenSSL)
        "subprocess", "ctypes",                                 # host programs, fallocate: on use
        "uuid", "platform",                                     # region uuids: on use
        "shlex",                                                # shell wrappers: on use
    )
    assert sorted(m for m in not_on_path if m in mods) == []


def test_data_path_still_imports_numpy_on_use():
    mods = _modules_after("from cxlemu.hw.lsa import fletcher64\n"
                          "assert fletcher64(b'\\0' * 8) == 0")
    assert "numpy" in mods


def test_lazy_module_loads_on_first_attribute():
    m = lazy_module("json")
    assert "not loaded" in repr(m)
    assert m.dumps([1]) == "[1]"
    assert "loaded" in repr(m) and "not loaded" not in repr(m)
    with pytest.raises(AttributeError):
        m.no_such_attribute
    with pytest.raises(ModuleNotFoundError):
        lazy_module("cxlemu_no_such_module").x


def test_stopped_cxl_list_path_dataclasses_have_docstrings(tmp_path):
    """A dataclass without a docstring gets one made from ``inspect.signature``
    when its class is created (~0.15 ms each); every dataclass the stopped
    ``cxl list`` path creates carries its own (issue 13, start-up)."""
    env = _home_with_b(tmp_path)
    code = ("import io, contextlib, dataclasses, sys, json\nfrom cxlemu.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as f:\n"
            "    assert main(['exec', 'b', '--', 'cxl', 'list']) == 0\n"
            "made = []\n"
            "for name, m in list(sys.modules.items()):\n"
            "    if name.startswith('cxlemu') and m is not None:\n"
            "        for v in list(vars(m).values()):\n"
            "            if isinstance(v, type) and dataclasses.is_dataclass(v) and v.__module__ == name:\n"
            "                made.append((name + '.' + v.__qualname__, v.__dict__.get('__doc__') or ''))\n"
            "print(json.dumps(made))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    made = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(made) > 30                       # the machine's classes were really created
    generated = [name for name, doc in made if doc.startswith(name.rsplit(".", 1)[1] + "(")]
    assert generated == []
