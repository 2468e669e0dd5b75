"""The house's floors (docs/architecture.md, /work/shared/design/house.md) as a
test: the import graph of src/cxlemu, function-local imports included, has
no arrow running up the floors and no circle.

* Each package of ``cxlemu`` sits on a floor; a module imports only modules
  of its own floor or below.  Modules directly under ``cxlemu/`` (the
  package itself, ``__main__``, ``demo``, the Python API) are the top floor.
* The tools floor is narrower still: tools reach the machine only through
  sysfs paths, the ioctl channels and data-path interfaces of a backend, so
  they import ``cxlemu.sysfs``, the codecs in ``cxlemu.hw.mailbox`` and
  ``cxlemu.hw.lsa``, ``cxlemu.util`` and each other; never the kernel model,
  the data path or the machine store.  A user program among them may also
  import its own library (``TOOL_LIBRARIES``: ``workload`` and the
  generators of ``cxlemu.userspace.workloads``).
* No circle: no two modules import each other, directly or through others,
  and no two packages of one floor do.
* ``if TYPE_CHECKING:`` imports are annotations, not imports: not counted.

A new package must be placed on a floor here (the test says so).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import cxlemu

SRC = Path(cxlemu.__file__).resolve().parent

#: package (first component under cxlemu) -> floor
FLOORS = {
    "util": 0, "topology": 0, "preload": 0,
    "hw": 1,
    "kernel": 2,
    "data": 3, "sysfs": 3, "machine": 3, "userspace": 3,
    "sim": 4, "fabric": 4,
    "tools": 5,
    "cli": 6, "": 6,                # "": modules directly under cxlemu/
}
TOOLS_MAY_IMPORT = ("cxlemu.tools", "cxlemu.sysfs", "cxlemu.util", "cxlemu.hw.mailbox", "cxlemu.hw.lsa")
#: tool module -> the one library it links besides the ABI.  ``workload`` is
#: a user program (numactl execs it on the machine), not an administration
#: tool: like a real benchmark binary it carries its own code, the workload
#: generators of userspace/workloads (its argument parsers, the generators it
#: runs).  It still reaches the machine only through the backend: its process
#: (``backend.task()``) and the backend's run loop (``backend.run_workload``).
TOOL_LIBRARIES = {"cxlemu.tools.workload": ("cxlemu.userspace.workloads",)}


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
            skip.update(id(m) for stmt in n.body for m in ast.walk(stmt))
    return skip


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported cxlemu module: line}."""
    mods = _modules()
    graph: dict[str, dict[str, int]] = {m: {} for m in mods}

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_nodes(tree)
        is_pkg = path.name == "__init__.py"
        for n in ast.walk(tree):
            if id(n) in skip:
                continue
            targets: list[str] = []
            if isinstance(n, ast.Import):
                targets = [a.name for a in n.names if a.name.split(".")[0] == "cxlemu"]
            elif isinstance(n, ast.ImportFrom):
                if n.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[:len(base) - (n.level - 1)]
                    frm = ".".join(base + ([n.module] if n.module else []))
                else:
                    frm = n.module or ""
                if frm.split(".")[0] != "cxlemu":
                    continue
                for a in n.names:
                    sub = f"{frm}.{a.name}"
                    targets.append(sub if sub in mods else frm)
            for t in targets:
                r = resolve(t)
                if r is not None and r != mod:
                    graph[mod].setdefault(r, n.lineno)
    return graph


def package(mod: str) -> str:
    parts = mod.split(".")
    if len(parts) == 1 or (len(parts) == 2 and (SRC / f"{parts[1]}.py").exists()):
        return ""
    return parts[1]


def _sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(graph.get(w, ()))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_every_package_has_a_floor():
    unknown = sorted({package(m) for m in import_graph()} - set(FLOORS))
    assert not unknown, f"place these packages on a floor in tests/test_layering.py FLOORS: {unknown}"


def test_no_import_runs_up_the_floors():
    graph = import_graph()
    bad = []
    for mod, deps in graph.items():
        f = FLOORS.get(package(mod))
        for dep, line in deps.items():
            g = FLOORS.get(package(dep))
            if f is not None and g is not None and g > f:
                bad.append(f"{mod}:{line} -> {dep}  (floor {f} imports floor {g})")
    assert not bad, "imports running up the floors:\n" + "\n".join(sorted(bad))


def test_tools_use_only_the_abi():
    bad = [f"{mod}:{line} -> {dep}" for mod, deps in import_graph().items() if package(mod) == "tools"
           for dep, line in deps.items()
           if not any(dep == p or dep.startswith(p + ".") for p in TOOLS_MAY_IMPORT + TOOL_LIBRARIES.get(mod, ()))]
    assert not bad, "tools importing beyond sysfs, hw codecs and util:\n" + "\n".join(sorted(bad))


def test_no_import_circles():
    graph = import_graph()
    modules = {m: set(d) for m, d in graph.items()}
    assert _sccs(modules) == [], "module import circles"
    packages: dict[str, set[str]] = defaultdict(set)
    node = lambda m: package(m) or m          # noqa: E731  (modules under cxlemu/ are no package)
    for m, deps in graph.items():
        for d in deps:
            if node(d) != node(m):
                packages[node(m)].add(node(d))
    assert _sccs(dict(packages)) == [], "package import circles"


def test_the_checker_sees_what_it_must():
    """The graph builder is not blind: function-local imports are edges,
    TYPE_CHECKING ones are not, and a planted circle is found."""
    g = import_graph()
    assert "cxlemu.kernel.cxl.acpi" in g["cxlemu.kernel.cxl.core"]            # function-local import
    assert "cxlemu.kernel.cxl.core" not in g["cxlemu.kernel.cxl.port"]         # TYPE_CHECKING only
    assert _sccs({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert package("cxlemu.demo") == "" and package("cxlemu.kernel.cxl.core") == "kernel"
