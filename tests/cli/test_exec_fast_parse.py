"""``cxlemu exec NAME -- COMMAND ...`` is parsed without argparse on the start-up
path (cli/main.py _parse_exec_quickly, issue 13): it must give exactly what the
full parser gives, and leave every other shape of command line to argparse."""

from __future__ import annotations

import os
import subprocess
import sys

from hypothesis import given, settings, strategies as st

from cxlemu.cli import main as cli_main

_PARSER = cli_main.build_parser()


def _argparse(args_in: list[str]) -> dict:
    ns, extra = _PARSER.parse_known_args(args_in)
    assert extra == []
    return vars(ns)


def test_quick_parse_matches_argparse_on_examples():
    for args_in in (["exec", "b", "--", "cxl", "list"], ["exec", "b", "--"], ["exec", "b", "--", "--"],
                    ["exec", "b", "--", "-h"], ["exec", "b", "--", "cxl", "--", "list", "-M"],
                    ["exec", "rack/host0", "--", "--version"], ["exec", "", "--", "x"],
                    ["exec", "1", "--", "ls", "/sys"]):
        quick = cli_main._parse_exec_quickly(args_in)
        assert quick is not None, args_in
        assert vars(quick) == _argparse(args_in), args_in


def test_other_shapes_are_left_to_argparse():
    for args_in in ([], ["exec"], ["exec", "b"], ["exec", "b", "cxl", "list"], ["exec", "-h"],
                    ["exec", "--", "b", "x"], ["exec", "-x", "--", "cxl"], ["show", "b", "--", "x"],
                    ["--version"], ["ls"]):
        assert cli_main._parse_exec_quickly(args_in) is None, args_in


@settings(max_examples=300, deadline=None)
@given(name=st.text(min_size=0, max_size=12).filter(lambda s: not s.startswith("-")),
       tail=st.lists(st.text(max_size=8), max_size=6))
def test_quick_parse_matches_argparse(name, tail):
    args_in = ["exec", name, "--", *tail]
    quick = cli_main._parse_exec_quickly(args_in)
    assert quick is not None
    assert vars(quick) == _argparse(args_in)


def test_exec_without_dashdash_still_goes_through_argparse(tmp_path):
    """(the plugin-free parser: exec's help and errors are those of the full parser)"""
    env = dict(os.environ, CXLEMU_HOME=str(tmp_path))
    full = subprocess.run([sys.executable, "-c", "import sys; from cxlemu.cli.main import build_parser;"
                           "build_parser().parse_args(['exec', '-h'])"], capture_output=True, text=True, env=env)
    cli = subprocess.run([sys.executable, "-m", "cxlemu", "exec", "-h"], capture_output=True, text=True, env=env)
    assert cli.returncode == full.returncode == 0
    assert cli.stdout == full.stdout and "usage: cxlemu exec" in cli.stdout
    err = subprocess.run([sys.executable, "-m", "cxlemu", "exec"], capture_output=True, text=True, env=env)
    assert err.returncode == 2
    assert "usage: cxlemu exec" in err.stderr and "required" in err.stderr
