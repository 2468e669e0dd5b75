"""numastat (numactl's package, numastat.c) over a backend, as Debian's
numactl 2.0.16 builds it (the version the conformance tests run).

Without arguments: the old perl-compatible table of every node's
``numastat`` file.  ``-n`` the same in MB, ``-m`` the nodes' ``meminfo`` in
MB, ``-p PID|pattern`` (or bare arguments) the per-node memory of
processes from ``/proc/PID/numa_maps``, ``-c`` compact columns, ``-z`` skip
zero rows and columns, ``-s[node]`` sort, ``-v`` verbose, ``-V`` version.
Tables fold to ``NUMASTAT_WIDTH`` (80 on a terminal; unlimited when piped).

2.0.16 knows a fixed list of numastat and meminfo tokens: a token of a
newer kernel (``SwapCached``, ``SecPageTables`` ...) prints "Token X not in
hash table." once per node and is left out, as the real tool does.
"""

from __future__ import annotations

import re

from cxlemu.tools.common.command import CommandContext

NODE_DIR = "/sys/devices/system/node"
MEGABYTE = 1024.0 * 1024.0
KILOBYTE = 1024.0
PAGE = 4096.0
USAGE = ("Usage: numastat [-c] [-m] [-n] [-p <PID>|<pattern>] [-s[<node>]] [-v] [-V] [-z] [ <PID>|<pattern>... ]\n"
         "-c to minimize column widths\n-m to show meminfo-like system-wide memory usage\n"
         "-n to show the numastat statistics info\n-p <PID>|<pattern> to show process info\n"
         "-s[<node>] to sort data by total column or <node>\n-v to make some reports more verbose\n"
         "-V to show the numastat code version\n-z to skip rows and columns of zeros\n")
LEFT, RIGHT = 1, 2
PROCESS_ROWS = (("huge", "Huge"), ("heap", "Heap"), ("stack", "Stack"), ("N", "Private"))
# numastat.c 2.0.16: numastat_meminfo[] and system_meminfo[] (token, label) in table order
NUMASTAT_ROWS = (("numa_hit", "Numa_Hit"), ("numa_miss", "Numa_Miss"), ("numa_foreign", "Numa_Foreign"),
                 ("interleave_hit", "Interleave_Hit"), ("local_node", "Local_Node"), ("other_node", "Other_Node"))
SYSTEM_ROWS = tuple((t, t) for t in (
    "MemTotal", "MemFree", "MemUsed", "HighTotal", "HighFree", "LowTotal", "LowFree", "Active", "Inactive",
    "Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)", "Unevictable", "Mlocked", "Dirty",
    "Writeback", "FilePages", "Mapped", "AnonPages", "Shmem", "KernelStack", "PageTables", "NFS_Unstable",
    "Bounce", "WritebackTmp", "Slab", "SReclaimable", "SUnreclaim", "AnonHugePages", "ShmemHugePages",
    "ShmemPmdMapped", "HugePages_Total", "HugePages_Free", "HugePages_Surp", "KReclaimable"))
VERSION = "numastat version: 20130723: Dec 26 2022"      # version string and build date of Debian's binary


class Table:
    """numastat.c's vtab: header rows/cols, cells of None / float / str / ('rep', c)."""

    def __init__(self, header_rows: int, header_cols: int, data_rows: int, data_cols: int):
        self.hr, self.hc = header_rows, header_cols
        self.rows, self.cols = header_rows + data_rows, header_cols + data_cols
        self.cell: list[list] = [[None] * self.cols for _ in range(self.rows)]
        self.row_map = list(range(self.rows))
        self.row_always = [False] * self.rows
        self.width = [0] * self.cols
        self.just = [0] * self.cols
        self.dec = [0] * self.cols

    def fmt(self, c, width: int, dec: int) -> str:
        if c is None:
            s = ""
        elif isinstance(c, tuple):
            s = c[1] * (width - 1)
        elif isinstance(c, float):
            s = f"{c:.{dec}f}"
        else:
            s = str(c)
        return s[:width]

    def auto_width(self, col: int, lo: int, hi: int) -> None:
        w = lo
        for row in range(self.rows):
            c = self.cell[row][col]
            if isinstance(c, tuple):
                continue
            w = max(w, len(self.fmt(c, hi, self.dec[col])))
        self.width[col] = min(w + 1, hi)

    def justify(self, c, col: int) -> str:
        width = self.width[col]
        p = self.fmt(c, width, self.dec[col])
        if self.just[col] == LEFT:
            return p.ljust(width)
        if self.just[col] == RIGHT:
            return p.rjust(width)
        b = [" "] * width
        start = (width - len(p) + 1) // 2
        b[start:start + len(p)] = list(p)
        return "".join(b)[:width]

    def sort_desc(self, start: int, stop: int, col: int) -> None:
        """sort_rows_descending_by_col(): a selection sort with swaps (so
        equal rows come out in the C program's order, not a stable one)."""
        def d(r: int) -> float:
            v = self.cell[r][col]
            return v if isinstance(v, float) else 0.0
        m = self.row_map
        for ix in range(start, stop + 1):
            big = ix
            for iy in range(ix + 1, stop + 1):
                if d(m[big]) < d(m[iy]):
                    big = iy
            if big != ix:
                m[ix], m[big] = m[big], m[ix]

    def display(self, out: list[str], screen: int, show_zero_rows: bool, show_zero_cols: bool) -> None:
        seen_row = [False] * self.rows
        nz_row = [False] * self.rows
        seen_col = [False] * self.cols
        nz_col = [False] * self.cols
        some_seen = some_nz = False
        for r in range(self.hr, self.rows):
            for c in range(self.hc, self.cols):
                v = self.cell[r][c]
                if v is not None and not isinstance(v, tuple):
                    some_seen = seen_row[r] = seen_col[c] = True
                    if not (isinstance(v, float) and v == 0.0):
                        some_nz = nz_row[r] = nz_col[c] = True
        if not some_seen:
            out.append("Table has no data.\n")
            return
        if not some_nz and not show_zero_rows and not show_zero_cols:
            out.append("Table has no non-zero data.\n")
            return

        def show_col(c: int) -> bool:
            return seen_col[c] and (show_zero_cols or nz_col[c])

        col = -1
        data_col = self.hc
        while data_col < self.cols:
            if not show_col(data_col):
                data_col += 1
                continue
            if col > 0:
                out.append("\n")
            for row_ix in range(self.rows):
                row = self.row_map[row_ix]
                if row >= self.hr and not self.row_always[row]:
                    if not seen_row[row] or (not show_zero_rows and not nz_row[row]):
                        continue
                line = []
                cur = 0
                for c in range(self.hc):
                    line.append(self.justify(self.cell[row][c], c))
                    cur += self.width[c]
                col = data_col
                while True:
                    if show_col(col):
                        line.append(self.justify(self.cell[row][col], col))
                        cur += self.width[col]
                    col += 1
                    if col >= self.cols or cur + self.width[col] > screen:
                        break
                out.append("".join(line) + "\n")
            data_col = col


class Numastat:
    def __init__(self, ctx: CommandContext):
        self.ctx = ctx
        self.b = ctx.backend
        self.compress = False
        self.sort = False
        self.sort_node = -1
        self.show_zero = True
        self.verbose = False
        self.compat = False
        self.pids: list[int] = []
        self.out: list[str] = []
        self.nodes: list[int] = []
        self.header: list[str] = []
        env = ctx.env.get("NUMASTAT_WIDTH")
        if env is not None:
            try:
                w = int(env)
            except ValueError:
                w = 0
            self.screen = w if 1 <= w <= 10000000 else 80
        else:
            self.screen = 80 if ctx.isatty else 10000000
        self.screen = max(self.screen, 32)

    def read(self, path: str) -> str | None:
        try:
            return self.b.read(path)
        except OSError:
            return None

    def init_nodes(self) -> bool:
        try:
            names = self.b.listdir(NODE_DIR)
        except OSError:
            names = []
        self.nodes = sorted(int(n[4:]) for n in names if re.fullmatch(r"node\d+", n))
        if not self.nodes:
            msg = "sysfs not mounted or system not NUMA aware" if self.compat else "Couldn't open /sys/devices/system/node"
            self.ctx.stderr.write(f"{msg}: No such file or directory\n")
            return False
        self.header = [f"node{n}" if self.compat else f"Node {n}" for n in self.nodes] + ["Total"]
        return True

    def show_file(self, fname: str, tok_offset: int) -> bool:
        table = NUMASTAT_ROWS if fname == "numastat" else SYSTEM_ROWS
        rows = len(table)
        hr = 2 - int(self.compat)
        n = len(self.nodes)
        t = Table(hr, 1, rows, n + 1)
        total = 1 + n
        index: dict[str, int] = {}
        for row, (token, label) in enumerate(table):
            index[token] = row
            t.cell[hr + row][0] = token if self.compat else label
        t.width[0], t.just[0] = 16, LEFT
        for node_ix in range(n + (1 - int(self.compat))):
            col = 1 + node_ix
            t.cell[0][col] = self.header[node_ix]
            if not self.compat:
                t.cell[1][col] = ("rep", "-")
                t.dec[col] = 0 if self.compress else 2
            t.width[col], t.just[col] = 16, RIGHT
            if node_ix == n:
                break
            text = self.read(f"{NODE_DIR}/node{self.nodes[node_ix]}/{fname}")
            if text is None:
                self.ctx.stdout.write("".join(self.out))
                self.out = []
                self.ctx.stderr.write(f"cannot open {NODE_DIR}/node{self.nodes[node_ix]}/{fname}: "
                                      f"No such file or directory\n")
                return False
            for line in text.splitlines():
                tok = [x for x in re.split(r"[ \t\r\n:]+", line) if x]
                if not tok:
                    continue
                key = tok[tok_offset] if len(tok) > tok_offset else ""
                ix = index.get(key)
                if ix is None:
                    self.out.append(f"Token {key} not in hash table.\n")
                    continue
                m = re.match(r"[ \t]*[-+]?\d+", tok[1 + tok_offset]) if len(tok) > 1 + tok_offset else None
                value = float(int(m.group(0))) if m else 0.0
                if not self.compat:
                    mult = 1.0
                    if len(tok) < 4:
                        mult = PAGE
                    elif tok[2].startswith("HugePages"):
                        mult = 2048 * KILOBYTE
                    elif len(tok) > 4 and tok[4].startswith("kB"):
                        mult = KILOBYTE
                    value = value * mult / MEGABYTE
                t.cell[hr + ix][col] = value
                prev = t.cell[hr + ix][total]
                t.cell[hr + ix][total] = (prev if isinstance(prev, float) else 0.0) + value
        if self.compress:
            for c in range(1 + n + 1):
                t.auto_width(c, 4, 16)
        if self.sort:
            sc = total if not 0 <= self.sort_node < n else 1 + self.nodes[self.sort_node]
            t.sort_desc(hr, hr + rows - 1, sc)
        t.display(self.out, self.screen, self.show_zero, self.show_zero)
        return True

    def command_name(self, pid: int) -> str:
        text = self.read(f"/proc/{pid}/status") or ""
        for line in text.splitlines():
            if line.startswith("Name:"):
                return line[5:].strip()
        return "(null)"

    def add_pattern(self, pattern: str) -> None:
        found = 0
        try:
            names = self.b.listdir("/proc")
        except OSError:
            names = []
        for n in names:
            if not n[:1].isdigit():
                continue
            pid = int(n) if n.isdigit() else 0
            buf = self.command_name(pid) + " "
            cmdline = self.read(f"/proc/{n}/cmdline")
            if cmdline is not None:
                buf += cmdline.replace("\0", " ")
            if pattern in buf:
                self.pids.append(pid)
                found += 1
        if not found:
            self.out.append(f'Found no processes containing pattern: "{pattern}"\n')

    def show_processes(self) -> None:
        n = len(self.nodes)
        sub = self.verbose or len(self.pids) == 1
        data_rows = len(PROCESS_ROWS) if sub else len(self.pids)
        hr = 2
        t = Table(hr, 1, data_rows + 2, n + 1)
        total_col = 1 + n
        total_row = hr + data_rows + 1
        t.cell[total_row][0] = "Total"
        if sub:
            for r, (_, label) in enumerate(PROCESS_ROWS):
                t.cell[hr + r][0] = label
        else:
            t.cell[0][0] = "PID"
            t.cell[1][0] = ("rep", "-")
            self.out.append("\nPer-node process memory usage (in MBs)\n")
        t.width[0], t.just[0] = 16, LEFT
        for node_ix in range(n + 1):
            col = 1 + node_ix
            t.cell[0][col] = self.header[node_ix]
            t.cell[1][col] = ("rep", "-")
            t.width[col] = 16
            t.dec[col] = 0 if self.compress else 2
            t.just[col] = RIGHT

        def zero() -> None:
            for r in range(hr, t.rows):
                for c in range(1, t.cols):
                    if not isinstance(t.cell[r][c], tuple):
                        t.cell[r][c] = 0.0

        def add(r: int, c: int, v: float) -> None:
            t.cell[r][c] = (t.cell[r][c] or 0.0) + v

        zero()
        for pid_ix, pid in enumerate(self.pids):
            if sub:
                self.out.append(f"\nPer-node process memory usage (in MBs) for PID {pid} ({self.command_name(pid)})\n")
                if pid_ix > 0:
                    zero()
            else:
                t.cell[hr + pid_ix][0] = f"{pid} ({self.command_name(pid)})"
            text = self.read(f"/proc/{pid}/numa_maps")
            if text is None:
                self.ctx.stderr.write(f"Can't read /proc/{pid}/numa_maps: No such file or directory\n")
                continue
            for line in text.splitlines():
                cat = 3
                for tok in line.split():
                    if cat == 3:
                        for ix, (token, _) in enumerate(PROCESS_ROWS[:3]):
                            if tok.startswith(token):
                                cat = ix
                                break
                    mm = re.fullmatch(r"N(\d+)=(\d+)", tok)
                    if mm:
                        node_num, pages = int(mm.group(1)), float(mm.group(2))
                        sz = 2048 * KILOBYTE if cat == 0 else PAGE
                        v = pages * sz / MEGABYTE
                        row = hr + cat if sub else hr + pid_ix
                        col = 1 + self.nodes.index(node_num) if node_num in self.nodes else total_col
                        add(row, col, v)
                        add(row, total_col, v)
                        add(total_row, col, v)
                        add(total_row, total_col, v)
            if sub or pid_ix + 1 == len(self.pids):
                if self.compress:
                    for c in range(1 + n + 1):
                        t.auto_width(c, 4, 16)
                else:
                    t.auto_width(0, 16, 24)
                t.row_always[total_row - 1] = True
                for c in range(1 + n + 1):
                    t.cell[total_row - 1][c] = ("rep", "-")
                if self.sort:
                    sc = total_col if not 0 <= self.sort_node < n else 1 + self.nodes[self.sort_node]
                    t.sort_desc(hr, hr + data_rows - 1, sc)
                t.display(self.out, self.screen, self.show_zero, self.show_zero)


def parse_args(argv: list[str]) -> tuple[list[tuple[str, str]], list[str], str | None]:
    """getopt_long(argc, argv, "cmnp:s::vVz?", {"help"}) with GNU permutation:
    (options, operands, error message or None)."""
    opts: list[tuple[str, str]] = []
    args: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            args += argv[i:]
            break
        if a.startswith("--"):
            name = a[2:].split("=", 1)[0]
            if name and "help".startswith(name):
                if "=" in a:
                    return opts, args, "numastat: option '--help' doesn't allow an argument\n"
                opts.append(("-?", ""))
                continue
            return opts, args, f"numastat: unrecognized option '{a}'\n"
        if not a.startswith("-") or a == "-":
            args.append(a)
            continue
        j = 1
        while j < len(a):
            c = a[j]
            j += 1
            if c not in "cmnpsvVz?":
                return opts, args, f"numastat: invalid option -- '{c}'\n"
            if c == "p":
                if j < len(a):
                    opts.append(("-p", a[j:]))
                elif i < len(argv):
                    opts.append(("-p", argv[i]))
                    i += 1
                else:
                    return opts, args, "numastat: option requires an argument -- 'p'\n"
                break
            if c == "s":
                opts.append(("-s", a[j:]))
                break
            opts.append(("-" + c, ""))
    return opts, args, None


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    ns = Numastat(ctx)
    opts, args, err = parse_args(argv)
    show_sys = show_numa = False
    for o, v in opts:
        if o == "-c":
            ns.compress = True
        elif o == "-m":
            show_sys = True
        elif o == "-n":
            show_numa = True
        elif o == "-p":
            if v.isdigit():
                ns.pids.append(int(v))
            else:
                ns.add_pattern(v)
        elif o == "-s":
            ns.sort = True
            if v and v.isdigit():
                ns.sort_node = int(v)
        elif o == "-v":
            ns.verbose = True
        elif o == "-V":
            ctx.stdout.write("".join(ns.out) + VERSION + "\n")
            return 0
        elif o == "-z":
            ns.show_zero = False
        else:
            ctx.stdout.write("".join(ns.out))
            ctx.stderr.write(USAGE)
            return 1
    if err:
        ctx.stdout.write("".join(ns.out))
        ctx.stderr.write(err + USAGE)
        return 1
    for a in args:
        if a.isdigit():
            ns.pids.append(int(a))
        else:
            ns.add_pattern(a)
    ns.compat = not argv
    if not ns.init_nodes():
        return 1
    if ns.compat:
        ok = ns.show_file("numastat", 0)
        ctx.stdout.write("".join(ns.out))
        return 0 if ok else 1
    if ns.pids:
        ns.pids = sorted(set(ns.pids))
        ns.show_processes()
    if show_sys:
        ns.out.append("\nPer-node system memory usage (in MBs):\n")
        if not ns.show_file("meminfo", 2):
            ctx.stdout.write("".join(ns.out))
            return 1
    if show_numa or (not ns.pids and not show_sys):
        ns.out.append("\nPer-node numastat info (in MBs):\n")
        if not ns.show_file("numastat", 0):
            ctx.stdout.write("".join(ns.out))
            return 1
    ctx.stdout.write("".join(ns.out))
    return 0
