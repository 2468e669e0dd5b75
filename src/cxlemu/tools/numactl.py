"""numactl (numactl 2.0.16, numactl.c ``hardware()``, ``show()``, libnuma.c):
the ``-H/--hardware`` and ``-s/--show`` views of a machine, read only from
/sys/devices/system/node like libnuma does.

* nodes are the ``nodeN`` directories of /sys/devices/system/node
  (``set_configured_nodes``); "available: N nodes (list)" uses numactl's own
  range printer;
* a node's CPUs come from ``cpumap``, its size and free memory from the
  ``MemTotal``/``MemFree`` lines of ``meminfo`` (kB, printed ``>> 20`` MB);
* distances from each node's ``distance`` file ("node distances:", columns
  "% 3d ", rows "% 3d: "), or "No distance information available.";
* running a command (numactl.c main): the policy options are applied in
  order to the calling process through the machine's system-call interface
  (``backend.task()``: set_mempolicy, sched_setaffinity), then the command
  is exec'ed on the machine's PATH (``workload``, the other tools) and
  inherits them.  Node strings are libnuma's (``0,2-3``, ``all``, ``!``,
  ``+``, ``same``), checked against the task's allowed memory nodes (all
  possible nodes after ``-a``): a bad one prints libnuma's warning,
  ``<arg> is invalid`` and the usage, exit 1; a refused policy prints
  ``set_mempolicy: Invalid argument`` and ``setting membind: Invalid
  argument``, exit 1; a missing program ``numactl: execution of `x': No
  such file or directory``.  On a real /sys (no system-call interface)
  running a command is refused.
"""

from __future__ import annotations

import getopt
import re

from cxlemu.tools.common.command import CommandContext

NODE_DIR = "/sys/devices/system/node"
USAGE = 'usage: numactl [--all | -a] [--balancing | -b] [--interleave= | -i <nodes>]\n\t\t[--preferred= | -p <node>] [--preferred-many= | -P <nodes>]\n               [--physcpubind= | -C <cpus>] [--cpunodebind= | -N <nodes>]\n               [--membind= | -m <nodes>] [--localalloc | -l] command args ...\n               [--localalloc | -l] command args ...\n       numactl [--show | -s]\n       numactl [--hardware | -H]\n       numactl [--length | -L <length>] [--offset | -o <offset>] [--shmmode | -M <shmmode>]\n               [--strict | -t]\n               [--shmid | -I <id>] --shm | -S <shmkeyfile>\n               [--shmid | -I <id>] --file | -f <tmpfsfile>\n               [--huge | -u] [--touch | -T] \n               memory policy [--dump | -d] [--dump-nodes | -D]\n\nmemory policy is --interleave | -i, --preferred | -p, --membind | -m, --localalloc | -l\n<nodes> is a comma delimited list of node numbers or A-B ranges or all.\nInstead of a number a node can also be:\n  netdev:DEV the node connected to network device DEV\n  file:PATH  the node the block device of path is connected to\n  ip:HOST    the node of the network device host routes through\n  block:PATH the node of block device path\n  pci:[seg:]bus:dev[:func] The node of a PCI device\n<cpus> is a comma delimited list of cpu numbers or A-B ranges or all\nall ranges can be inverted with !\nall numbers and ranges can be made cpuset-relative with +\nthe old --cpubind argument is deprecated.\nuse --cpunodebind or --physcpubind instead\nuse --balancing | -b to enable Linux kernel NUMA balancing\nfor the process if it is supported by kernel\n<length> can have g (GB), m (MB) or k (KB) suffixes\n'


def configured_nodes(backend) -> list[int]:
    """set_configured_nodes(): every nodeN directory."""
    try:
        names = backend.listdir(NODE_DIR)
    except OSError:
        return []
    out = []
    for n in names:
        m = re.fullmatch(r"node(\d+)", n)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def _read(backend, path: str) -> str | None:
    try:
        return backend.read(path)
    except OSError:
        return None


def node_size(backend, nid: int) -> tuple[int, int]:
    """numa_node_size64(): (MemTotal, MemFree) in bytes, -1 when unreadable."""
    text = _read(backend, f"{NODE_DIR}/node{nid}/meminfo")
    if text is None:
        return -1, 0
    size, free = -1, 0
    for line in text.splitlines():
        m = re.search(r"(\d+)\s*kB", line)
        if not m:
            continue
        if "MemTotal" in line:
            size = int(m.group(1)) << 10
        if "MemFree" in line:
            free = int(m.group(1)) << 10
    return size, free


def node_cpus(backend, nid: int) -> list[int]:
    """numa_node_to_cpus(): the cpumap bitmap (comma separated 32-bit hex words)."""
    text = _read(backend, f"{NODE_DIR}/node{nid}/cpumap")
    if text is None:
        return []
    value = 0
    for word in text.strip().split(","):
        value = (value << 32) | int(word or "0", 16)
    return [i for i in range(value.bit_length()) if value >> i & 1]


def parse_nodelist(s: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, s.split(",")):
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def distances(backend, nodes: list[int]) -> dict[tuple[int, int], int]:
    """read_distance_table(): row i is node i's distance file, one column per online node."""
    table: dict[tuple[int, int], int] = {}
    online = parse_nodelist((_read(backend, f"{NODE_DIR}/online") or "").strip()) or nodes
    for i in nodes:
        text = _read(backend, f"{NODE_DIR}/node{i}/distance")
        if text is None:
            continue
        for col, v in zip(online, text.split()):
            table[(i, col)] = int(v)
    return table


def fmt_mem(v: int) -> str:
    return "<not available>" if v == -1 else f"{v >> 20} MB"


def available_line(nodes: list[int]) -> str:
    """hardware(): numactl's own range printer ("0-1,3")."""
    maxnode = max(nodes) if nodes else 0
    out, prev, skip = "", -1, False
    present = set(nodes)
    for i in range(maxnode + 1):
        if i not in present:
            continue
        if prev == -1:
            out += str(i)
            prev = i
            continue
        if i > prev + 1:
            if skip:
                out += str(prev)
                skip = False
            out += f",{i}"
            prev = i
            continue
        if i == prev + 1:
            if not skip:
                out += "-"
                skip = True
            prev = i
        if i == maxnode and skip:
            out += str(prev)
    return f"available: {len(nodes)} nodes ({out})\n"


def print_distances(backend, nodes: list[int]) -> str:
    if not nodes:
        return "No distance information available.\n"
    table = distances(backend, nodes)
    if not table.get((nodes[-1], nodes[0])):
        return "No distance information available.\n"
    lines = ["node distances:\n", "node " + "".join(f"{i:3d} " for i in nodes) + "\n"]
    for i in nodes:
        lines.append(f"{i:3d}: " + "".join(f"{table.get((i, k), 0):3d} " for k in nodes) + "\n")
    return "".join(lines)


def hardware(backend) -> str:
    nodes = configured_nodes(backend)
    out = [available_line(nodes)]
    for i in nodes:
        size, free = node_size(backend, i)
        out.append(f"node {i} cpus:" + "".join(f" {c}" for c in node_cpus(backend, i)) + "\n")
        out.append(f"node {i} size: {fmt_mem(size)}\n")
        out.append(f"node {i} free: {fmt_mem(free)}\n")
    out.append(print_distances(backend, nodes))
    return "".join(out)


def show(backend) -> str:
    """show(): the default policy of a process allowed on every CPU and node."""
    cpus: list[int] = []
    cpu_nodes, mem_nodes = [], []
    for n in configured_nodes(backend):
        c = node_cpus(backend, n)
        if c:
            cpu_nodes.append(n)
            cpus.extend(c)
        if node_size(backend, n)[0] > 0:
            mem_nodes.append(n)
    return ("policy: default\npreferred node: current\n"
            + "physcpubind: " + "".join(f"{c} " for c in sorted(cpus)) + "\n"
            + "cpubind: " + "".join(f"{n} " for n in cpu_nodes) + "\n"
            + "nodebind: " + "".join(f"{n} " for n in cpu_nodes) + "\n"
            + "membind: " + "".join(f"{n} " for n in mem_nodes) + "\n"
            + "preferred: \n")


SHORT = "abHsi:p:P:C:N:m:lL:o:M:tI:S:f:uTdDVw:"
LONG = ["all", "balancing", "hardware", "show", "interleave=", "preferred=", "preferred-many=",
        "physcpubind=", "cpunodebind=", "membind=", "localalloc", "length=", "offset=", "shmmode=", "strict",
        "shmid=", "shm=", "file=", "huge", "touch", "dump", "dump-nodes", "version", "weighted-interleave="]


MPOL = {"default": 0, "preferred": 1, "bind": 2, "interleave": 3, "local": 4, "preferred-many": 5,
        "weighted-interleave": 6}
POLICY_NAMES = ("default", "preferred", "bind", "interleave", "local", "preferred-many", "weighted-interleave")


class _Exit(Exception):
    def __init__(self, code: int):
        self.code = code


def _possible(backend) -> list[int]:
    return parse_nodelist((_read(backend, f"{NODE_DIR}/possible") or "").strip()) or configured_nodes(backend)


def parse_nodestring(s: str, allowed: list[int], ctx: CommandContext, warned: set) -> list[int] | None:
    """libnuma __numa_parse_nodestring(); None (after the warning) when invalid."""
    def warn(msg: str) -> None:
        if "node" not in warned:
            warned.add("node")
            ctx.stderr.write(f"libnuma: Warning: {msg}\n\n")
    if s == "":
        return []
    invert = relative = False
    if s.startswith("!"):
        invert, s = True, s[1:]
    if s.startswith("+"):
        relative, s = True, s[1:]
    mask: set[int] = set()
    allow = sorted(set(allowed))
    if s == "all":
        mask = set(allow)
        s_rest = ""
    else:
        s_rest = s
        while True:
            m = re.match(r"(\d+)", s_rest)
            if not m:
                warn(f"unparseable node description `{s_rest}'")
                return None
            a = int(m.group(1))
            if relative:
                a = allow[a] if a < len(allow) else 1 << 30
            if a not in allow:
                warn(f"node argument {a} is out of range")
                return None
            mask.add(a)
            s_rest = s_rest[m.end():]
            if s_rest.startswith("-"):
                m2 = re.match(r"(\d+)", s_rest[1:])
                if not m2:
                    warn(f"missing node argument {s_rest[1:]}")
                    return None
                b = int(m2.group(1))
                if relative:
                    b = allow[b] if b < len(allow) else 1 << 30
                if b not in allow:
                    warn(f"node argument {b} out of range")
                    return None
                mask.update(x for x in range(a, b + 1) if x in allow)
                s_rest = s_rest[1 + m2.end():]
            if s_rest.startswith(","):
                s_rest = s_rest[1:]
                continue
            break
        if s_rest:
            return None
    if invert:
        conf = set(configured_nodes_all(allow))
        mask = conf - mask
    return sorted(mask)


def configured_nodes_all(allow: list[int]) -> list[int]:
    return list(range(max(allow) + 1)) if allow else []


def _usage(ctx: CommandContext) -> None:
    ctx.stderr.write(USAGE)
    raise _Exit(1)


def _perror(ctx: CommandContext, what: str, e: OSError) -> None:
    import os
    ctx.stderr.write(f"{what}: {os.strerror(e.errno)}\n")


def show_task(ctx: CommandContext, task) -> str:
    """show(): the calling process's policy (get_mempolicy) and affinity."""
    backend = ctx.backend
    mode, nodes = task.get_mempolicy()
    mode &= 0xFF
    cpus = list(task.sched_getaffinity())
    cpu_nodes = [n for n in configured_nodes(backend) if set(node_cpus(backend, n)) & set(cpus)]
    allowed = list(task.get_mempolicy(4)[1])
    membind = list(nodes) if mode == MPOL["bind"] else allowed
    preferred = list(nodes) if mode in (MPOL["preferred"], MPOL["preferred-many"]) else []
    out = [f"policy: {POLICY_NAMES[mode] if mode < len(POLICY_NAMES) else f'[{mode}]'}\n", "preferred node: "]
    if mode == MPOL["preferred"]:
        out.append(f"{preferred[0] if preferred else 0}\n")
    elif mode == MPOL["default"]:
        out.append("current\n")
    elif mode in (MPOL["interleave"], MPOL["weighted-interleave"]):
        out.append(f"{task.get_mempolicy(1)[0]} (interleave next)\n")
    elif mode == MPOL["bind"]:
        out.append(f"{membind[0] if membind else 0}\n")
    elif mode == MPOL["preferred-many"]:
        out.append(f"{nodes[0] if nodes else 0} (preferred-many)\n")
    else:
        out.append("\n")
    if mode in (MPOL["interleave"], MPOL["weighted-interleave"]):
        out.append("interleavemask: " + "".join(f"{n} " for n in nodes) + "\n")
        if mode == MPOL["weighted-interleave"]:
            ws = []
            for n in nodes:
                w = _read(backend, f"/sys/kernel/mm/mempolicy/weighted_interleave/node{n}")
                if w and w.strip().isdigit():
                    ws.append(f" {int(w)}")
            out.append("interleaveweights:" + "".join(ws) + "\n")
        out.append(f"interleavenode: {task.get_mempolicy(1)[0]}\n")
    out.append("physcpubind: " + "".join(f"{c} " for c in cpus) + "\n")
    out.append("cpubind: " + "".join(f"{n} " for n in cpu_nodes) + "\n")
    out.append("nodebind: " + "".join(f"{n} " for n in cpu_nodes) + "\n")
    out.append("membind: " + "".join(f"{n} " for n in membind) + "\n")
    out.append("preferred: " + "".join(f"{n} " for n in preferred) + "\n")
    return "".join(out)


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    try:
        return _main(argv, ctx)
    except _Exit as e:
        return e.code


def _main(argv: list[str], ctx: CommandContext) -> int:
    try:
        opts, args = getopt.getopt(argv, SHORT, LONG)
    except getopt.GetoptError as e:
        if e.opt and len(e.opt) == 1:
            ctx.stderr.write(f"numactl: invalid option -- '{e.opt}'\n")
        else:
            ctx.stderr.write(f"numactl: unrecognized option '--{e.opt}'\n")
        _usage(ctx)
    backend = ctx.backend
    has_task = hasattr(backend, "task")
    task = backend.task("numactl") if has_task else None
    parse_all = False
    balancing = False
    warned: set = set()
    last_spec = None
    did_node_parse = False
    for o, v in opts:
        if o in ("-s", "--show"):
            ctx.stdout.write(show_task(ctx, task) if task is not None else show(backend))
            return 0
        if o in ("-H", "--hardware"):
            ctx.stdout.write(hardware(backend))
            return 0
        if o in ("-a", "--all"):
            if did_node_parse:
                ctx.stderr.write("numactl: -a/--all must be given before any node/cpu list\n")
                return 1
            parse_all = True
            continue
        if o in ("-b", "--balancing"):
            balancing = True
            continue
        if o in ("-i", "--interleave", "-w", "--weighted-interleave", "-m", "--membind", "-p", "--preferred",
                 "-P", "--preferred-many", "-N", "--cpunodebind"):
            if v == "same":
                if last_spec is None:
                    ctx.stderr.write("numactl: same needs previous node specification\n")
                    _usage(ctx)
                v = last_spec
            else:
                last_spec = v
            allowed = _possible(backend) if parse_all else (
                list(task.get_mempolicy(4)[1]) if task is not None else
                [n for n in configured_nodes(backend) if node_size(backend, n)[0] > 0])
            if o in ("-N", "--cpunodebind"):
                allowed = _possible(backend) if parse_all else configured_nodes(backend)
            mask = parse_nodestring(v, allowed, ctx, warned)
            did_node_parse = True
            if mask is None:
                ctx.stdout.write(f"<{v}> is invalid\n")
                _usage(ctx)
            if task is None:
                ctx.stderr.write("numactl: this backend has no system-call interface: cxlemu runs programs "
                                 "under a policy only on an emulated machine\n")
                return 1
            try:
                if o in ("-N", "--cpunodebind"):
                    cpus = [c for n in mask for c in node_cpus(backend, n)]
                    try:
                        task.sched_setaffinity(cpus)
                    except OSError as e:
                        _perror(ctx, "sched_setaffinity", e)
                        return 1
                    continue
                if o in ("-m", "--membind"):
                    what = "setting membind"
                    try:
                        task.set_mempolicy(MPOL["bind"] | ((1 << 13) if balancing else 0), mask)
                    except OSError as e:
                        if balancing and e.errno == 22:
                            task.set_mempolicy(MPOL["bind"], mask)
                        else:
                            raise
                elif o in ("-i", "--interleave", "-w", "--weighted-interleave"):
                    what = "setting interleave mask"
                    mode = MPOL["weighted-interleave"] if o in ("-w", "--weighted-interleave") else MPOL["interleave"]
                    task.set_mempolicy(mode if mask else MPOL["default"], mask)
                elif o in ("-p", "--preferred"):
                    what = "setting preferred node"
                    if len(mask) != 1:
                        _usage(ctx)
                    task.set_mempolicy(MPOL["preferred"], mask)
                else:
                    what = "setting preferred node"
                    task.set_mempolicy(MPOL["preferred-many"], mask)
            except OSError as e:
                _perror(ctx, "set_mempolicy", e)
                _perror(ctx, what, e)
                return 1
            continue
        if o in ("-C", "--physcpubind"):
            try:
                cpus = parse_nodelist(v)
            except ValueError:
                cpus = None
            if not cpus:
                ctx.stdout.write(f"<{v}> is invalid\n")
                _usage(ctx)
            if task is not None:
                try:
                    task.sched_setaffinity(cpus)
                except OSError as e:
                    _perror(ctx, "sched_setaffinity", e)
                    return 1
            continue
        if o in ("-l", "--localalloc"):
            if task is not None:
                try:
                    task.set_mempolicy(MPOL["local"], [])
                except OSError as e:
                    _perror(ctx, "set_mempolicy", e)
                    _perror(ctx, "local allocation", e)
                    return 1
            continue
        if o in ("-V", "--version"):
            ctx.stdout.write("2.0.16\n")
            return 0
        if o in ("-t", "--strict"):
            continue
        ctx.stderr.write("numactl: shared memory policies (--shm/--file/--length/--touch/--dump) are not modelled\n")
        return 1
    if not args:
        _usage(ctx)
    if task is None:
        ctx.stderr.write("numactl: this backend has no system-call interface: cxlemu runs programs under a "
                         "policy only on an emulated machine\n")
        return 1
    from cxlemu.tools.runner import spawn
    rc = spawn(args, ctx)
    if rc is None:
        ctx.stderr.write(f"numactl: execution of `{args[0]}': No such file or directory\n\n")
        return 1
    return rc
