#!/usr/bin/env python3
"""Results of bench/run.sh: gathers a run's raw files into one JSON document,
prints a summary, and renders docs/performance.md with its plot.

    report.py level    --in wrk.json                 one line about one wrk run
    report.py assemble --work DIR --out FILE.json ...  the run's JSON document
    report.py summary  --in FILE.json                 the tables, on stdout
    report.py render   --in FILE.json --md PATH --png PATH

Only `render` needs matplotlib (bench/requirements.txt).
"""

import argparse
import json
import os
import pathlib
import re
import sys

TARGET_RATIO = 0.5  # PostgreSQL topology / pgbench ceiling
TARGET_P99_MS = 25.0  # at half of the best throughput
TOPOLOGY_TITLES = {
    "sqlite": "all-in-one binary, SQLite",
    "postgres": "four binaries, PostgreSQL",
}
CEILING_TITLES = {
    "sqlite": "Python sqlite3, the services' statements and pragmas, threads = concurrency",
    "postgres": "pgbench -M prepared, bench/ceiling/pg_order.sql, clients = concurrency",
}


# ------------------------------------------------------------------ parsing
def read(path, default=None):
    try:
        return pathlib.Path(path).read_text()
    except FileNotFoundError:
        return default


def pairs(text):
    """'name value' lines → dict (values as int where they are ints)."""
    out = {}
    for line in (text or "").splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            k, v = parts
            out[k] = int(v) if re.fullmatch(r"-?\d+", v.strip()) else v.strip()
    return out


PROM_LINE = re.compile(r"^(\w+)\{(.*)\}\s+(\S+)$")  # label values may hold braces: /users/{id}


def prom_endpoints(text):
    """(method, endpoint) → (count, sum seconds) from the request histograms."""
    out = {}
    for line in (text or "").splitlines():
        m = PROM_LINE.match(line)
        if not m:
            continue
        name, labels, value = m.groups()
        if name not in ("arch_http_requests_duration_seconds_sum", "arch_http_requests_duration_seconds_count"):
            continue
        lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        key = (lab.get("method", "?"), lab.get("endpoint", "?"))
        count, total = out.get(key, (0.0, 0.0))
        if name.endswith("_count"):
            count += float(value)
        else:
            total += float(value)
        out[key] = (count, total)
    return out


def prom_counters(text, prefixes=("arch_orders_total", "arch_saga_retries_total", "arch_orders_recovered_total",
                                  "orders_total", "saga_retries_total", "orders_recovered_total")):
    out = {}
    for line in (text or "").splitlines():
        if line.startswith("#"):
            continue
        for p in prefixes:
            if line.startswith(p + "{") or line.startswith(p + " "):
                key, value = line.rsplit(None, 1)
                out[key] = out.get(key, 0) + float(value)
    return out


def endpoint_deltas(before_dir, after_dir):
    """Per service and endpoint: requests and mean server-side ms in the step."""
    out = []
    after_files = sorted(pathlib.Path(after_dir).glob("*.prom")) if os.path.isdir(after_dir) else []
    for f in after_files:
        service = f.stem
        after = prom_endpoints(f.read_text())
        before = prom_endpoints(read(os.path.join(before_dir, f.name), ""))
        for key, (count, total) in sorted(after.items()):
            c0, t0 = before.get(key, (0.0, 0.0))
            n, s = count - c0, total - t0
            if n <= 0 or key[1] in ("/metrics", "/health/ready", "/health/live", "UNMATCHED"):
                continue
            out.append({
                "service": service,
                "method": key[0],
                "endpoint": key[1],
                "requests": int(n),
                "mean_ms": round(s / n * 1000, 3),
            })
    return out


def cpu_deltas(before_text, after_text, orders, seconds, clk_tck):
    before, after = pairs(before_text), pairs(after_text)
    if "wall_ms" in after and "wall_ms" in before:
        seconds = (after["wall_ms"] - before["wall_ms"]) / 1000  # the span the ticks cover
    out = {"processes": {}, "span_s": round(seconds, 3) if seconds else None}
    for name, ticks in after.items():
        if name.startswith("machine_") or name == "wall_ms" or name not in before:
            continue
        secs = (ticks - before[name]) / clk_tck
        out["processes"][name] = {
            "cpu_s": round(secs, 3),
            "cores": round(secs / seconds, 3) if seconds else None,
            "cpu_ms_per_order": round(secs * 1000 / orders, 4) if orders else None,
        }
    busy = after.get("machine_busy", 0) - before.get("machine_busy", 0)
    total = after.get("machine_total", 0) - before.get("machine_total", 0)
    out["machine_busy_fraction"] = round(busy / total, 3) if total else None
    if seconds:
        # The rest of the machine: wrk, the kernel's share not charged to a
        # process, anything else running.
        busy_cores = busy / clk_tck / seconds
        known = sum(p["cores"] for p in out["processes"].values() if p["cores"] is not None)
        out["machine_busy_cores"] = round(busy_cores, 3)
        out["processes"]["rest of machine"] = {
            "cpu_s": round(busy / clk_tck - known * seconds, 3),
            "cores": round(busy_cores - known, 3),
            "cpu_ms_per_order": round((busy / clk_tck - known * seconds) * 1000 / orders, 4) if orders else None,
        }
    return out


def wrk_level(path):
    d = json.loads(read(path))
    created = d["status"].get("201", 0)
    socket_errors = sum(d["socket_errors"].values())
    return {
        "duration_s": round(d["duration_s"], 3),
        "requests": d["requests"],
        "orders_per_s": round(created / d["duration_s"], 1),
        "requests_per_s": round(d["requests"] / d["duration_s"], 1),
        "status": d["status"],
        "paid": d["paid"],
        "rejected": d["rejected"],
        "pending_202": d["pending"],
        "errors": {"non_2xx": d["non_2xx"], "socket": socket_errors, "socket_detail": d["socket_errors"]},
        "latency_ms": {k: round(v, 3) for k, v in d["latency_ms"].items()},
    }


def pgbench_level(text, concurrency):
    def grab(pattern, cast=float):
        m = re.search(pattern, text, re.M)
        return cast(m.group(1)) if m else None

    tps = grab(r"^tps = ([\d.]+) \(without initial connection time\)")
    return {
        "concurrency": concurrency,
        "orders_per_s": round(tps, 1) if tps is not None else None,
        "orders": grab(r"number of transactions actually processed: (\d+)", int),
        "failed": grab(r"number of failed transactions: (\d+)", int) or 0,
        "latency_ms": {"mean": grab(r"latency average = ([\d.]+) ms")},
    }


# ----------------------------------------------------------------- assemble
def assemble(args):
    work = pathlib.Path(args.work)
    levels = [int(x) for x in args.levels.split()]
    doc = {
        "schema": 1,
        "started": args.started,
        "elapsed_s": args.elapsed,
        "command": args.command,
        "environment": args.env.strip(),
        "commit": args.commit,
        "machine": json.loads(args.machine),
        "settings": {
            "levels": levels,
            "seconds_per_level": float(args.seconds),
            "ceiling_seconds_per_level": float(args.ceiling_seconds),
            "users": args.users,
            "prices": "uniform 100..100000 kopecks",
            "balances": "every tenth user 50000 kopecks, the rest 10^12",
            "service_env": "RECOVERY_INTERVAL_MS=1000, RUST_LOG=info, other settings at their defaults",
            "load_generator": "wrk (closed loop), bench/orders.lua",
        },
        "topologies": {},
        "targets": {},
    }
    all_ok = True
    for topo in args.topologies.split():
        tdir = work / topo
        t = {"title": TOPOLOGY_TITLES.get(topo, topo), "levels": [], "violations": []}
        for c in levels:
            ldir = tdir / "levels" / f"c{c}"
            level = {"concurrency": c, **wrk_level(ldir / "wrk.json")}
            created = level["status"].get("201", 0)
            level["cpu"] = cpu_deltas(read(ldir / "cpu.before"), read(ldir / "cpu.after"), created,
                                      level["duration_s"], args.clk_tck)
            level["server_endpoints"] = endpoint_deltas(ldir / "metrics.before", ldir / "metrics.after")
            level["unfinished_right_after"] = int((read(ldir / "unfinished_after", "0") or "0").strip() or 0)
            t["levels"].append(level)
        pdir = tdir / "levels" / "paced"
        if (pdir / "wrk.json").exists():
            paced = {"connections": int(read(pdir / "connections", "0").strip()), **wrk_level(pdir / "wrk.json")}
            created = paced["status"].get("201", 0)
            paced["cpu"] = cpu_deltas(read(pdir / "cpu.before"), read(pdir / "cpu.after"), created,
                                      paced["duration_s"], args.clk_tck)
            paced["server_endpoints"] = endpoint_deltas(pdir / "metrics.before", pdir / "metrics.after")
            best = max(lv["orders_per_s"] for lv in t["levels"])
            paced["target_orders_per_s"] = round(best / 2, 1)
            t["paced_half_load"] = paced
        # the ceiling
        if topo == "sqlite":
            raw = json.loads(read(work / "ceiling-sqlite.json", '{"levels": []}'))
            ceiling = raw["levels"]
        else:
            ceiling = [pgbench_level(read(work / "ceiling-postgres" / f"c{c}.txt", ""), c) for c in levels]
        t["ceiling"] = {"method": CEILING_TITLES.get(topo, ""), "levels": ceiling}
        by_c = {lv["concurrency"]: lv["orders_per_s"] for lv in ceiling if lv.get("orders_per_s")}
        for lv in t["levels"]:
            ceil = by_c.get(lv["concurrency"])
            lv["ceiling_orders_per_s"] = ceil
            lv["ratio_to_ceiling"] = round(lv["orders_per_s"] / ceil, 3) if ceil else None
        best = max(t["levels"], key=lambda lv: lv["orders_per_s"])
        best_ceiling = max(by_c.values()) if by_c else None
        t["best"] = {
            "concurrency": best["concurrency"],
            "orders_per_s": best["orders_per_s"],
            "ceiling_orders_per_s": best_ceiling,
            "ceiling_concurrency": max(by_c, key=by_c.get) if by_c else None,
            "ratio_to_ceiling": round(best["orders_per_s"] / best_ceiling, 3) if best_ceiling else None,
        }
        # the checks
        t["seed"] = json.loads(read(tdir / "seed.json", "{}") or "{}")
        t["verification"] = pairs(read(tdir / "verify.txt"))
        t["grace_waited_s"] = int((read(tdir / "grace_waited", "0") or "0").strip() or 0)
        t["shutdown_exit_codes"] = pairs(read(tdir / "shutdown"))
        if (tdir / "tls").exists():
            t["database_connections_with_tls"] = read(tdir / "tls").strip()
            t["pg_sslmode"] = (read(tdir / "sslmode", "") or "").strip()
        t["violations"] = [l for l in (read(tdir / "violations.txt", "") or "").splitlines() if l.strip()]
        steps = t["levels"] + ([t["paced_half_load"]] if "paced_half_load" in t else [])
        errors = {
            "non_2xx": sum(s["errors"]["non_2xx"] for s in steps),
            "socket": sum(s["errors"]["socket"] for s in steps),
            "pending_202": sum(s["pending_202"] for s in steps),
        }
        t["errors"] = errors
        if errors["non_2xx"] or errors["socket"]:
            t["violations"].append(f"{errors['non_2xx']} non-2xx responses and {errors['socket']} socket errors")
        if errors["pending_202"]:
            t["violations"].append(f"{errors['pending_202']} orders answered 202 pending (billing too slow for the budget)")
        # What the client saw must agree with the databases: every answered
        # order is there; the only orders nobody saw answered are those
        # in flight when wrk stopped (at most its connections per step).
        v = t["verification"]
        answered = sum(s["status"].get("201", 0) + s["status"].get("202", 0) for s in steps)
        seen_paid = sum(s["paid"] for s in steps)
        seen_rejected = sum(s["rejected"] for s in steps)
        in_flight_allowance = sum(s.get("connections", s.get("concurrency", 0)) for s in steps)
        unanswered = v.get("orders", 0) - answered
        t["client_vs_database"] = {
            "answered_orders": answered,
            "orders_in_database": v.get("orders"),
            "orders_cut_off_in_flight": unanswered,
            "in_flight_allowance": in_flight_allowance,
            "paid_answers": seen_paid,
            "rejected_answers": seen_rejected,
        }
        if v:
            if unanswered < 0 or unanswered > in_flight_allowance:
                t["violations"].append(
                    f"{v.get('orders')} orders in the database for {answered} answered (allowance {in_flight_allowance})")
            if seen_paid > v.get("paid", 0) or seen_rejected > v.get("rejected", 0):
                t["violations"].append("more paid or rejected answers than such orders in the database")
        else:
            t["violations"].append("no verification ran")
        t["ok"] = not t["violations"]
        all_ok = all_ok and t["ok"]
        doc["topologies"][topo] = t
    # the targets
    targets = {}
    pg = doc["topologies"].get("postgres")
    if pg and pg["best"]["ratio_to_ceiling"] is not None:
        targets["postgres_ratio_to_ceiling"] = {
            "target": f">= {TARGET_RATIO}",
            "value": pg["best"]["ratio_to_ceiling"],
            "met": pg["best"]["ratio_to_ceiling"] >= TARGET_RATIO,
        }
    for topo, t in doc["topologies"].items():
        if "paced_half_load" in t:
            p99 = t["paced_half_load"]["latency_ms"]["p99"]
            targets[f"{topo}_p99_at_half_load_ms"] = {"target": f"<= {TARGET_P99_MS}", "value": p99,
                                                       "met": p99 <= TARGET_P99_MS}
        targets[f"{topo}_errors"] = {"target": "0", "value": t["errors"]["non_2xx"] + t["errors"]["socket"],
                                     "met": not (t["errors"]["non_2xx"] or t["errors"]["socket"])}
        targets[f"{topo}_violations"] = {"target": "0", "value": len(t["violations"]), "met": not t["violations"]}
    doc["targets"] = targets
    doc["ok"] = all_ok
    pathlib.Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


# ------------------------------------------------------------------ tables
def fmt(x, nd=1):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def level_table(t):
    rows = [
        "| concurrency | orders/s | ceiling orders/s | ratio | p50 ms | p90 ms | p99 ms | max ms | paid / rejected | non-2xx | socket errors | busy CPU |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    steps = [(str(lv["concurrency"]), lv) for lv in t["levels"]]
    if "paced_half_load" in t:
        p = t["paced_half_load"]
        steps.append((f"paced ({p['connections']} conn., target {fmt(p['target_orders_per_s'], 0)}/s)", p))
    for label, lv in steps:
        lat = lv["latency_ms"]
        ratio = lv.get("ratio_to_ceiling")
        busy = lv.get("cpu", {}).get("machine_busy_fraction")
        rows.append(
            f"| {label} | {fmt(lv['orders_per_s'])} | {fmt(lv.get('ceiling_orders_per_s'))} | "
            f"{fmt(ratio * 100 if ratio is not None else None, 0)}{'%' if ratio is not None else ''} | "
            f"{fmt(lat['p50'], 2)} | {fmt(lat['p90'], 2)} | {fmt(lat['p99'], 2)} | {fmt(lat['max'], 1)} | "
            f"{lv['paid']} / {lv['rejected']} | {lv['errors']['non_2xx']} | {lv['errors']['socket']} | "
            f"{fmt(busy * 100 if busy is not None else None, 0)}{'%' if busy is not None else ''} |"
        )
    return "\n".join(rows)


def ceiling_table(t):
    rows = ["| concurrency | ceiling orders/s | ceiling latency |", "|---:|---:|---:|"]
    for lv in t["ceiling"]["levels"]:
        lat = lv.get("latency_ms", {})
        text = f"p50 {fmt(lat.get('p50'), 2)} / p99 {fmt(lat.get('p99'), 2)} ms" if "p99" in lat else \
            f"mean {fmt(lat.get('mean'), 2)} ms"
        rows.append(f"| {lv['concurrency']} | {fmt(lv.get('orders_per_s'))} | {text} |")
    return "\n".join(rows)


def cpu_table(t):
    last = {"postgres": 1, "rest of machine": 2}
    procs = sorted({p for lv in t["levels"] for p in lv["cpu"]["processes"]}, key=lambda p: (last.get(p, 0), p))
    rows = ["| concurrency | " + " | ".join(f"{p} (cores, ms/order)" for p in procs) + " |",
            "|---:|" + "---:|" * len(procs)]
    for lv in t["levels"]:
        cells = []
        for p in procs:
            c = lv["cpu"]["processes"].get(p)
            cells.append(f"{fmt(c['cores'], 2)}, {fmt(c['cpu_ms_per_order'], 3)}" if c else "–")
        rows.append(f"| {lv['concurrency']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def endpoint_table(t):
    """Mean server-side time per route at each level (from /metrics)."""
    keys = []
    for lv in t["levels"]:
        for e in lv["server_endpoints"]:
            k = (e["service"], e["method"], e["endpoint"])
            if k not in keys:
                keys.append(k)
    rows = ["| route (service) | " + " | ".join(f"c={lv['concurrency']}" for lv in t["levels"]) + " |",
            "|---|" + "---:|" * len(t["levels"])]
    for k in keys:
        cells = []
        for lv in t["levels"]:
            e = next((e for e in lv["server_endpoints"] if (e["service"], e["method"], e["endpoint"]) == k), None)
            cells.append(f"{fmt(e['mean_ms'], 2)} ms" if e else "–")
        rows.append(f"| `{k[1]} {k[2]}` ({k[0]}) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def summary(args):
    doc = json.loads(read(args.__dict__["in"]))
    for topo, t in doc["topologies"].items():
        print(f"\n== {topo}: {t['title']} ==")
        print(level_table(t))
        b = t["best"]
        print(f"best: {fmt(b['orders_per_s'])} orders/s at c={b['concurrency']}; ceiling {fmt(b['ceiling_orders_per_s'])} "
              f"orders/s (c={b['ceiling_concurrency']}); ratio {fmt(b['ratio_to_ceiling'], 3)}")
        print("checks: " + ("passed" if t["ok"] else "FAILED: " + "; ".join(t["violations"])))
    print("\ntargets:")
    for name, tg in doc["targets"].items():
        print(f"  {name}: {tg['value']} (target {tg['target']}): {'met' if tg['met'] else 'NOT met'}")


def endpoints(args):
    for e in endpoint_deltas(args.before, args.after):
        print(f"  {e['mean_ms']:8.2f} ms  {e['method']} {e['endpoint']} ({e['service']}, {e['requests']} requests)")


def level_line(args):
    lv = wrk_level(args.__dict__["in"])
    lat = lv["latency_ms"]
    print(f"{lv['orders_per_s']:.0f} orders/s, p50 {lat['p50']:.2f} ms, p90 {lat['p90']:.2f} ms, "
          f"p99 {lat['p99']:.2f} ms, max {lat['max']:.1f} ms, non-2xx {lv['errors']['non_2xx']}, "
          f"socket errors {lv['errors']['socket']}, 202 {lv['pending_202']}")


# ------------------------------------------------------------------ render
def plot(doc, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 5.0))
    colors = {"sqlite": "tab:blue", "postgres": "tab:orange"}
    levels = doc["settings"]["levels"]
    for topo, t in doc["topologies"].items():
        color = colors.get(topo)
        xs = [lv["concurrency"] for lv in t["levels"]]
        ax1.plot(xs, [lv["orders_per_s"] for lv in t["levels"]], "o-", color=color, label=f"{t['title']}")
        cx = [lv["concurrency"] for lv in t["ceiling"]["levels"] if lv.get("orders_per_s")]
        cy = [lv["orders_per_s"] for lv in t["ceiling"]["levels"] if lv.get("orders_per_s")]
        ax1.plot(cx, cy, "s--", color=color, alpha=0.6, label=f"{topo} ceiling (database alone)")
        ax2.plot(xs, [lv["latency_ms"]["p99"] for lv in t["levels"]], "o-", color=color, label=f"{t['title']} p99")
        ax2.plot(xs, [lv["latency_ms"]["p50"] for lv in t["levels"]], ".:", color=color, alpha=0.7,
                 label=f"{topo} p50")
    ax2.axhline(TARGET_P99_MS, color="grey", linestyle="--", linewidth=1, label=f"p99 target {TARGET_P99_MS:.0f} ms")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels)
        ax.set_xticklabels([str(x) for x in levels])
        ax.set_xlabel("concurrency (connections)")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_ylabel("orders/s")
    ax1.set_ylim(bottom=0)
    ax1.set_title("Throughput (POST /orders, 201)")
    ax1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    ax2.set_yscale("log")
    ax2.set_ylabel("latency, ms (log)")
    ax2.set_title("Latency")
    ax2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.suptitle(f"Order flow under load — {doc['machine'].get('nproc')} cores, {doc['started']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def render(args):
    doc = json.loads(read(args.__dict__["in"]))
    md_path, png_path = pathlib.Path(args.md), pathlib.Path(args.png)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    plot(doc, png_path)
    m, s = doc["machine"], doc["settings"]
    rel_png = os.path.relpath(png_path, md_path.parent)
    out = [
        "# Performance",
        "",
        "<!-- Generated by bench/run.sh (bench/report.py render) from bench/results/latest.json;",
        "     edit bench/report.py rather than this file. -->",
        "",
        "How many orders per second the system takes, at what latency, and how close that is to what",
        "its databases alone allow. Reproduce with one command from the repository root:",
        "",
        "```sh",
        "bench/run.sh",
        "```",
        "",
        "It builds the release binaries, then for each topology starts the system on free loopback ports",
        "with fresh databases, seeds users with balances through the API (`POST /users`, `POST /users/tokens`,",
        "then a deposit), drives `POST /orders` (each with its user's token) with [wrk](https://github.com/wg/wrk)",
        "at fixed concurrency levels, checks",
        "the databases, stops everything it started and drops what it created. Results go to",
        "`bench/results/<timestamp>.json` and `bench/results/latest.json`; this page and its plot are",
        "rendered from the latter. A run fails (non-zero exit, nothing published) on any non-2xx answer,",
        "socket error or broken invariant. Variables (`BENCH_SECONDS`, `BENCH_LEVELS`, …), the checks and",
        "how the ceilings are measured: [bench/README.md](../bench/README.md). `bench/profile.sh` produced",
        "the findings at the end.",
        "",
        "## This run",
        "",
        f"- date: {doc['started']} (took {doc['elapsed_s']} s), commit `{doc['commit']}`",
        f"- command: `{doc['command']}`" + (f" with `{doc['environment']}`" if doc["environment"] else ""),
        f"- machine: {m.get('nproc')} cores ({m.get('cpu_model')}), {m.get('memory_gib')} GiB memory, "
        f"Linux {m.get('kernel')}",
        f"- PostgreSQL {m.get('postgres')} ({m.get('postgres_settings')}); SQLite {m.get('sqlite')}; "
        f"{m.get('wrk')}; {m.get('rustc')}",
        f"- load: {s['levels']} connections, {s['seconds_per_level']:.0f} s each, closed loop "
        f"(each connection sends its next order when the last is answered); {s['users']} users, "
        f"{s['balances']}; prices {s['prices']}; services with {s['service_env']}",
        f"- the load generator, the services and the database share the same {m.get('nproc')} cores",
        "",
        "![throughput and latency against concurrency](" + rel_png + ")",
        "",
        "## Targets",
        "",
        "| target | value | met |",
        "|---|---:|:---:|",
    ]
    names = {
        "postgres_ratio_to_ceiling": "PostgreSQL topology: best orders/s ÷ pgbench ceiling",
        "sqlite_p99_at_half_load_ms": "SQLite topology: p99 at half of its best throughput, ms",
        "postgres_p99_at_half_load_ms": "PostgreSQL topology: p99 at half of its best throughput, ms",
        "sqlite_errors": "SQLite topology: non-2xx answers and socket errors",
        "postgres_errors": "PostgreSQL topology: non-2xx answers and socket errors",
        "sqlite_violations": "SQLite topology: broken invariants",
        "postgres_violations": "PostgreSQL topology: broken invariants",
    }
    for name, tg in doc["targets"].items():
        out.append(f"| {names.get(name, name)} ({tg['target']}) | {tg['value']} | {'yes' if tg['met'] else '**no**'} |")
    for topo, t in doc["topologies"].items():
        b = t["best"]
        v = t["verification"]
        cv = t["client_vs_database"]
        out += [
            "",
            f"## {t['title']}",
            "",
            f"Best: **{fmt(b['orders_per_s'])} orders/s** at {b['concurrency']} connections; the ceiling is "
            f"{fmt(b['ceiling_orders_per_s'])} orders/s (at {b['ceiling_concurrency']}): "
            f"**{fmt(b['ratio_to_ceiling'] * 100 if b['ratio_to_ceiling'] is not None else None, 0)}% of the ceiling**.",
            "",
            level_table(t),
            "",
            "orders/s counts `201` answers (paid or rejected); the ratio is orders/s ÷ the ceiling at the same",
            "concurrency; latency is wrk's, per request; busy CPU is the whole machine's. The paced row offers",
            "about half the best throughput through 64 connections that each wait a random (exponential) time",
            "between orders, so its p99 is the latency at half load.",
            "",
            f"Ceiling ({t['ceiling']['method']}):",
            "",
            ceiling_table(t),
            "",
            "CPU per process (cores busy on average; CPU milliseconds per order):",
            "",
            cpu_table(t),
            "",
            "Mean time spent inside each route, as the services' own `/metrics` histograms",
            "(`arch_http_requests_duration_seconds`) saw it; `POST /orders` contains the calls below it:",
            "",
            endpoint_table(t),
            "",
            f"Checks after the load (databases read with {'sqlite3' if topo == 'sqlite' else 'psql'}, after "
            f"{t['grace_waited_s']} s of grace for the recovery loop):",
            "",
            f"- {v.get('orders')} orders: {v.get('paid')} paid, {v.get('rejected')} rejected, "
            f"{v.get('pending')} pending, {v.get('cancelling_or_cancelled', 0)} cancelling or cancelled, "
            f"{v.get('unnotified')} not notified; {v.get('letters')} letters, "
            f"{v.get('decided_orders_without_exactly_their_letter')} decided orders without exactly their letter",
            f"- money: deposits {v.get('deposits_sum')} + refunds {v.get('refunds_sum', 0)} − balances "
            f"{v.get('balances_sum')} = {(v.get('deposits_sum') or 0) + (v.get('refunds_sum') or 0) - (v.get('balances_sum') or 0)}; "
            f"withdrawals {v.get('withdrawals_sum')}; "
            f"paid prices {v.get('paid_prices_sum')}; {v.get('paid_orders_without_matching_withdrawal')} paid orders "
            f"without their withdrawal, {v.get('rejected_orders_without_matching_decline')} rejected without their "
            f"declined withdrawal, {v.get('accounts_not_matching_their_ledger')} accounts off their ledger",
            f"- client vs database: {cv['answered_orders']} orders answered, {cv['orders_in_database']} stored; "
            f"{cv['orders_cut_off_in_flight']} were in flight when wrk stopped at the end of a step "
            f"(finished by the service or its recovery loop)",
            f"- SIGTERM exit codes: " + ", ".join(f"{k} {v}" for k, v in t["shutdown_exit_codes"].items()),
            *([f"- the services' database connections using TLS (sslmode {t.get('pg_sslmode') or 'prefer, libpq default'}, as pgbench's): "
               f"{t['database_connections_with_tls']}"] if t.get("database_connections_with_tls") else []),
            f"- result: {'**passed**' if t['ok'] else '**FAILED**: ' + '; '.join(t['violations'])}",
        ]
    notes = pathlib.Path(__file__).with_name("performance-notes.md")
    if notes.exists():
        out += ["", notes.read_text().rstrip()]
    md_path.write_text("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("assemble")
    a.add_argument("--work", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--topologies", required=True)
    a.add_argument("--levels", required=True)
    a.add_argument("--seconds", required=True)
    a.add_argument("--ceiling-seconds", required=True)
    a.add_argument("--users", type=int, required=True)
    a.add_argument("--started", required=True)
    a.add_argument("--elapsed", type=int, required=True)
    a.add_argument("--command", required=True)
    a.add_argument("--env", default="")
    a.add_argument("--machine", required=True)
    a.add_argument("--commit", default="")
    a.add_argument("--clk-tck", type=int, default=100)
    e = sub.add_parser("endpoints")
    e.add_argument("--before", required=True)
    e.add_argument("--after", required=True)
    for name in ("summary", "level"):
        p = sub.add_parser(name)
        p.add_argument("--in", required=True)
    r = sub.add_parser("render")
    r.add_argument("--in", required=True)
    r.add_argument("--md", required=True)
    r.add_argument("--png", required=True)
    args = ap.parse_args()
    {"assemble": assemble, "summary": summary, "level": level_line, "render": render,
     "endpoints": endpoints}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
