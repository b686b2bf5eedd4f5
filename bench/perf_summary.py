#!/usr/bin/env python3
"""Summarises a system-wide `perf record -e cpu-clock` of bench/profile.sh:
which process took the CPU, and inside each of ours what kind of code
(own code, kernel, TLS, libpq, libc, ...) and which symbols.

    perf_summary.py perf.data name=pid[,pid...] ...

Processes are matched by process id; `wrk` by its command name. Standard
library only; runs `perf script`.
"""

import collections
import re
import subprocess
import sys

LINE = re.compile(r"^\s*(.*?)\s+(\d+)/(\d+)\s+([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$")


def category(dso: str, own: str) -> str:
    base = dso.rsplit("/", 1)[-1]
    if base.startswith("[kernel") or base in ("[vdso]",):
        return "kernel (syscalls: network, files, scheduling)"
    if base.startswith("libssl") or base.startswith("libcrypto"):
        return "TLS (libssl, libcrypto)"
    if base.startswith("libpq"):
        return "libpq"
    if base.startswith("libc.so") or base.startswith("libm.so") or base.startswith("ld-linux"):
        return "libc"
    if base == own:
        return "own code"
    return base


def main() -> int:
    data = sys.argv[1]
    groups: dict[int, str] = {}
    own_binary: dict[str, str] = {}
    for arg in sys.argv[2:]:
        name, pids = arg.split("=", 1)
        for pid in filter(None, pids.split(",")):
            groups[int(pid)] = name
        own_binary[name] = "postgres" if name.startswith("postgres") else name
    script = subprocess.run(
        ["perf", "script", "-i", data, "-F", "comm,pid,tid,ip,sym,dso"],
        capture_output=True, text=True, errors="replace", check=True,
    ).stdout
    total = 0
    by_group = collections.Counter()
    cats = collections.defaultdict(collections.Counter)
    syms = collections.defaultdict(collections.Counter)
    for line in script.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        comm, pid, _tid, _ip, sym, dso = m.groups()
        total += 1
        pid = int(pid)
        if pid in groups:
            g = groups[pid]
        elif comm == "wrk":
            g = "wrk (load generator)"
        elif comm == "postgres":
            g = "postgres (other: WAL writer, checkpointer, other databases)"
        else:
            g = "everything else on the machine"
        by_group[g] += 1
        if pid in groups:
            own = own_binary.get(g, "")
            cats[g][category(dso, own)] += 1
            name = sym if sym != "[unknown]" else f"[unknown in {dso.rsplit('/', 1)[-1]}]"
            syms[g][name] += 1
    if not total:
        print("no samples")
        return 0
    print(f"{total} samples; share of all CPU time sampled on the machine:")
    for g, n in by_group.most_common():
        print(f"  {100 * n / total:5.1f}%  {g}")
    for g in sorted(cats, key=lambda g: -by_group[g]):
        n = by_group[g]
        print(f"\n{g}: {100 * n / total:.1f}% of the machine; inside it:")
        for c, k in cats[g].most_common(8):
            print(f"  {100 * k / n:5.1f}%  {c}")
        print("  top symbols:")
        for s, k in syms[g].most_common(12):
            print(f"  {100 * k / n:5.1f}%  {s[:120]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
