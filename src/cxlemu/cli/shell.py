"""``cxlemu shell`` and the host/machine split of ``cxlemu exec``.

A shell for machine NAME gets a directory of wrapper scripts first in PATH
(``$CXLEMU_HOME/bin/NAME``): ``cxl``, ``ndctl``, ``daxctl``, ``numactl``,
``lspci``, ``dd`` run on the machine.  ``cat``, ``ls``, ``readlink`` and
``tree`` are wrapped too, but they act on the machine only for the machine's
paths: anything below ``/sys`` and ``/proc``, and ``/dev`` except the host's
own character devices (``/dev/null``, ``/dev/zero``, ``/dev/stdin`` ...).
Every other path, and a call without paths (``cxl list | cat``, ``ls``), runs
the host's binary, found in PATH after the wrapper directory, with the same
arguments, stdin and stdout.  A call that names both kinds runs each path
with the tool that owns it, in order.

The prompt shows the machine: ``(cxlemu:NAME) $``.  ``cxlemu shell NAME -c
CMD`` runs one command line in that environment and exits with its status,
as ``sh -c`` does.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from cxlemu.util.lazy import lazy_module

subprocess = lazy_module("subprocess")   # host programs: only when one runs (not for cxl list)

COREUTILS = ("cat", "ls", "readlink", "tree")
MACHINE_TOPS = ("/sys", "/proc", "/dev")
# character devices every host has; the machine's /dev holds only its CXL, dax and nvdimm nodes
HOST_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
                "/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/fd", "/dev/shm", "/dev/pts")
# options of the GNU tools that take a separate argument (not a path)
_OPTS_WITH_ARG = {"ls": {"-I", "--ignore", "-w", "--width", "-T", "--tabsize", "--format", "--sort",
                         "--time", "--color", "--block-size", "--hide", "--quoting-style",
                         "--indicator-style"},
                  "tree": {"-L", "-P", "-I", "-o", "-H", "-T", "--charset", "--filelimit", "--timefmt",
                           "--sort"},
                  "cat": set(), "readlink": set()}


def wrapper_dir(name: str) -> Path:
    """``$CXLEMU_HOME/bin/NAME``: one script per bundled tool, each running
    ``cxlemu exec NAME -- TOOL "$@"`` with this Python."""
    from cxlemu.machine.store import home
    from cxlemu.tools.runner import TOOLS
    d = home() / "bin" / name
    d.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        p = d / tool
        import shlex
        script = (f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m cxlemu exec "
                  f"{shlex.quote(name)} -- {tool} \"$@\"\n")
        if not p.exists() or p.read_text() != script:
            p.write_text(script)
            p.chmod(0o755)
    return d


def is_machine_path(arg: str, cwd: str | None = None) -> bool:
    """Does ``arg`` name a path of the machine (its /sys, /proc or /dev)?"""
    path = os.path.normpath(os.path.join(cwd or os.getcwd(), arg))
    if not any(path == top or path.startswith(top + "/") for top in MACHINE_TOPS):
        return False
    return not any(path == h or path.startswith(h + "/") for h in HOST_DEVICES)


def split_args(tool: str, args: list[str]) -> tuple[list[str], list[str]]:
    """(options, paths) of a coreutils-style command line."""
    opts: list[str] = []
    paths: list[str] = []
    takes = _OPTS_WITH_ARG.get(tool, set())
    it = iter(args)
    for a in it:
        if a == "--":
            paths.extend(it)
            break
        if a.startswith("-") and a != "-":
            opts.append(a)
            if a in takes:
                nxt = next(it, None)
                if nxt is not None:
                    opts.append(nxt)
            continue
        paths.append(a)
    return opts, paths


def plan(tool: str, args: list[str], cwd: str | None = None) -> list[tuple[str, list[str]]]:
    """How to run ``tool args``: a list of ("host" | "machine", argv) runs, in
    order.  Without paths the tool acts on stdin or the current directory:
    the machine's if the current directory is one of its paths."""
    opts, paths = split_args(tool, args)
    cwd = cwd or os.getcwd()
    if not paths:
        if tool in ("ls", "tree") and is_machine_path(cwd, cwd):
            return [("machine", opts + [cwd])]
        return [("host", list(args))]
    runs: list[tuple[str, list[str]]] = []
    for p in paths:
        kind = "machine" if is_machine_path(p, cwd) else "host"
        target = os.path.normpath(os.path.join(cwd, p)) if kind == "machine" else p
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(target)
        else:
            runs.append((kind, [target]))
    return [(kind, opts + ps) for kind, ps in runs]


def host_binary(tool: str) -> str | None:
    """The host's ``tool``: the first in PATH that is not a cxlemu wrapper."""
    from cxlemu.machine.store import home
    wrappers = (home() / "bin").resolve()
    dirs = []
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        try:
            if Path(d).resolve().is_relative_to(wrappers):
                continue
        except OSError:
            continue
        dirs.append(d)
    return shutil.which(tool, path=os.pathsep.join(dirs))


def run_host(tool: str, args: list[str]) -> int:
    exe = host_binary(tool)
    if exe is None:
        print(f"{tool}: command not found on the host (cxlemu's {tool} acts on /sys, /proc and /dev)",
              file=sys.stderr)
        return 127
    sys.stdout.flush()
    return subprocess.call([tool, *args], executable=exe)


def host_only(tool: str, args: list[str]) -> bool:
    """True when ``tool args`` touches no path of the machine (no need to open it)."""
    return tool in COREUTILS and all(kind == "host" for kind, _ in plan(tool, args))


def run_coreutil(tool: str, args: list[str], run_machine) -> int:
    """Run each part of ``tool args`` where it belongs; ``run_machine(argv)``
    runs the emulated tool on the machine.  The status is the worst one."""
    rc = 0
    for kind, argv in plan(tool, args):
        rc = max(rc, run_host(tool, argv) if kind == "host" else run_machine(argv))
    return rc


def shell_env(name: str) -> dict[str, str]:
    env = dict(os.environ)
    d = wrapper_dir(name)
    env["PATH"] = f"{d}{os.pathsep}{env.get('PATH', os.defpath)}"
    env["CXLEMU_MACHINE"] = name
    env["PS1"] = f"(cxlemu:{name}) $ "
    return env


def _bash_rcfile(name: str, d: Path) -> Path:
    """bash reads ~/.bashrc, which often sets PS1 and PATH: read it first,
    then put the machine's prompt and tools back in front."""
    import shlex
    rc = d / ".bashrc"
    text = ("[ -f ~/.bashrc ] && . ~/.bashrc\n"
            f"PATH={shlex.quote(str(d))}:\"$PATH\"\n"
            f"PS1={shlex.quote(f'(cxlemu:{name}) $ ')}\n")
    if not rc.exists() or rc.read_text() != text:
        rc.write_text(text)
    return rc


def run_shell(name: str, command: str | None = None) -> int:
    """An interactive subshell for machine ``name``, or ``sh -c command``."""
    env = shell_env(name)
    shell = os.environ.get("SHELL") or "/bin/sh"
    if not shutil.which(shell):
        shell = "/bin/sh"
    base = os.path.basename(shell)
    if command is not None:
        exe = shell if base in ("bash", "sh", "dash", "zsh", "ksh") else "/bin/sh"
        return subprocess.call([exe, "-c", command], env=env)
    argv = [shell]
    if base == "bash":
        argv += ["--rcfile", str(_bash_rcfile(name, wrapper_dir(name))), "-i"]
    print(f"cxlemu: a shell for machine {name!r}: cxl, ndctl, daxctl, numactl, lspci, dd act on it, "
          f"and cat, ls, readlink, tree on its /sys, /proc and /dev; exit to leave", file=sys.stderr)
    return subprocess.call(argv, env=env)
