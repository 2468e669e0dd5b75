"""numastat (numactl's package, numastat.c) over a backend.

Without arguments: the old perl-compatible table of every node's
``numastat`` file.  ``-n`` the same in MB, ``-m`` the nodes' ``meminfo`` in
MB, ``-p PID|pattern`` (or bare arguments) the per-node memory of
processes from ``/proc/PID/numa_maps``, ``-c`` compact columns, ``-z`` skip
zero rows and columns, ``-s[node]`` sort, ``-v`` verbose, ``-V`` version.
Tables fold to ``NUMASTAT_WIDTH`` (80 on a terminal; unlimited when piped).
"""

from __future__ import annotations

import getopt
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
        rows = self.row_map[start:stop + 1]
        rows.sort(key=lambda r: -(self.cell[r][col] if isinstance(self.cell[r][col], float) else 0.0))
        self.row_map[start:stop + 1] = rows

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
        first = self.read(f"{NODE_DIR}/node{self.nodes[0]}/{fname}")
        if first is None:
            self.ctx.stderr.write(f"cannot open {NODE_DIR}/node{self.nodes[0]}/{fname}: No such file or directory\n")
            return False
        rows = len(first.splitlines(keepends=True))
        hr = 2 - int(self.compat)
        n = len(self.nodes)
        t = Table(hr, 1, rows, n + 1)
        total = 1 + n
        t.width[0], t.just[0] = 16, LEFT
        index: dict[str, int] = {}
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
                self.ctx.stderr.write(f"cannot open {NODE_DIR}/node{self.nodes[node_ix]}/{fname}: "
                                      f"No such file or directory\n")
                return False
            row = 0
            for line in text.splitlines():
                tok = [x for x in re.split(r"[ \t\r\n:]+", line) if x]
                if not tok:
                    continue
                key = tok[tok_offset] if len(tok) > tok_offset else ""
                if node_ix == 0:
                    index.setdefault(key, row)
                    if self.compat or fname.startswith("meminfo"):
                        label = key
                    else:
                        label = "_".join(w[:1].upper() + w[1:] for w in key.split("_"))
                    t.cell[hr + row][0] = label
                ix = index.get(key)
                if ix is None:
                    self.out.append(f"Token {key} not in hash table.\n")
                else:
                    m = re.match(r"-?\d+", tok[1 + tok_offset]) if len(tok) > 1 + tok_offset else None
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
                row += 1
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
                pgsz = 0.0
                m = re.search(r"kernelpagesize_kB=(\d+)", line)
                if m:
                    pgsz = float(m.group(1)) * KILOBYTE
                for tok in line.split():
                    if cat == 3:
                        for ix, (token, _) in enumerate(PROCESS_ROWS[:3]):
                            if tok.startswith(token):
                                cat = ix
                                break
                    mm = re.fullmatch(r"N(\d+)=(\d+)", tok)
                    if mm:
                        node_num, pages = int(mm.group(1)), float(mm.group(2))
                        sz = pgsz or (2048 * KILOBYTE if cat == 0 else PAGE)
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


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    ns = Numastat(ctx)
    try:
        opts, args = getopt.getopt(argv, "cmnp:s::vVz?", ["help"])
    except getopt.GetoptError as e:
        if len(e.opt) == 1:
            ctx.stderr.write(f"numastat: invalid option -- '{e.opt}'\n")
        else:
            ctx.stderr.write(f"numastat: unrecognized option '--{e.opt}'\n")
        ctx.stderr.write(USAGE)
        return 1
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
            ctx.stdout.write("numastat version: 2.0.16: cxlemu\n")
            return 0
        elif o == "-z":
            ns.show_zero = False
        else:
            ctx.stderr.write(USAGE)
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
