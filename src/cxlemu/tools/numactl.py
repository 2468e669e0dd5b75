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
* the first of -H / -s decides; other options and running a command are not
  modelled (cxlemu runs no program under a policy).
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


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    try:
        opts, args = getopt.gnu_getopt(argv, "+" + SHORT, LONG)
    except getopt.GetoptError as e:
        if e.opt and len(e.opt) == 1:
            ctx.stderr.write(f"numactl: invalid option -- '{e.opt}'\n")
        else:
            ctx.stderr.write(f"numactl: unrecognized option '--{e.opt}'\n")
        ctx.stderr.write(USAGE)
        return 1
    for o, _v in opts:
        if o in ("-H", "--hardware"):
            ctx.stdout.write(hardware(ctx.backend))
            return 0
        if o in ("-s", "--show"):
            ctx.stdout.write(show(ctx.backend))
            return 0
    if not opts and not args:
        ctx.stderr.write(USAGE)
        return 1
    ctx.stderr.write("numactl: cxlemu does not run programs under a NUMA policy "
                     "(supported: -H/--hardware, -s/--show)\n")
    return 1
