"""Prints the table of scripts/bench from its results.jsonl.

Each line of results.jsonl is {"key", "proxy", "data"}: data is mcp-load's last JSON line for
that measurement (the medians when it ran several times) or a plain number. Ratios say how
many times better ours is: peer/ours where lower is better, ours/peer where higher is better.
The issue's targets are checked at the end.
"""

import argparse
import json
import sys

PEERS = ("python", "ts")


def load(path):
    results = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line:
            item = json.loads(line)
            results[(item["key"], item["proxy"])] = item["data"]
    return results


def field(results, key, proxy, name=None):
    data = results.get((key, proxy))
    if data is None:
        return None
    if name is None:
        return data if isinstance(data, (int, float)) else None
    if not isinstance(data, dict):
        return None
    if data.get("errors") and name not in ("errors",) and not data.get("calls"):
        return None
    return data.get(name)


def reply_note(results, key, proxy, wanted):
    """'(sse)' when the server replied otherwise than the row asks (it cannot do both)."""
    data = results.get((key, proxy))
    if isinstance(data, dict) and data.get("reply") and wanted and data["reply"] != wanted:
        return f" ({data['reply']})"
    return ""


def fmt(value, unit):
    if value is None:
        return "n/a"
    if unit == "MiB":
        return f"{value / 1024:.1f}"
    if unit == "ms":
        return f"{value:.1f}"
    if unit == "us":
        return f"{value:.0f}"
    if isinstance(value, float):
        return f"{value:.0f}" if value >= 100 else f"{value:.1f}"
    return str(value)


def ratio(ours, peer, higher_is_better):
    if not ours or not peer:
        return "n/a"
    r = ours / peer if higher_is_better else peer / ours
    return f"{r:.1f}x"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    r = load(args.results)

    # (label, key, field, unit, higher is better, reply wanted)
    rows = [("Sequential round trip, one session", None, None, None, None, None)]
    for transport, title in (("json", "/mcp JSON"), ("sse", "/mcp SSE"), ("legacy", "legacy SSE")):
        wanted = None if transport == "legacy" else transport
        rows.append((f"  p50 {title} (us)", f"seq:{transport}", "p50_us", "us", False, wanted))
        rows.append((f"  p99 {title} (us)", f"seq:{transport}", "p99_us", "us", False, wanted))
    rows.append(("Throughput (calls/s)", None, None, None, None, None))
    for transport, title in (("json", "/mcp JSON"), ("sse", "/mcp SSE"), ("legacy", "legacy SSE")):
        for sessions in (1, 8, 64):
            rows.append(
                (f"  {title}, {sessions} session{'s' if sessions > 1 else ''}", f"tput:{transport}:{sessions}", "calls_per_s",
                 "n", True, None if transport == "legacy" else transport)
            )
    rows += [
        ("CPU of the proxy (ms per 10k calls)", None, None, None, None, None),
        ("  /mcp JSON, 8 sessions", "tput:json:8", "cpu_ms_per_10k", "ms", False, "json"),
        ("  /mcp SSE, 8 sessions", "tput:sse:8", "cpu_ms_per_10k", "ms", False, "sse"),
        ("  legacy SSE, 8 sessions", "tput:legacy:8", "cpu_ms_per_10k", "ms", False, None),
        ("Memory of the proxy process (MiB)", None, None, None, None, None),
        ("  idle RSS, started, before any client", "idle_start_rss_kib", None, "MiB", False, None),
        ("  idle RSS, after one session", "idle_rss_kib", None, "MiB", False, None),
        ("  peak RSS under load (VmHWM)", "peak_rss_kib", None, "MiB", False, None),
        ("  RSS, 1,000 legacy SSE streams open", "hold:sse", "rss_kib", "MiB", False, None),
        ("  RSS, 1,000 /mcp GET streams open", "hold:mcp", "rss_kib", "MiB", False, None),
        ("Threads of the proxy process", None, None, None, None, None),
        ("  idle", "idle_threads", None, "count", False, None),
        ("  1,000 legacy SSE streams open", "hold:sse", "threads", "count", False, None),
        ("  1,000 /mcp GET streams open", "hold:mcp", "threads", "count", False, None),
        ("  call p50 (us) with 1,000 SSE streams open", "hold:sse", "p50_us", "us", False, None),
        ("Start-up, median of the starts (ms)", None, None, None, None, None),
        ("  spawn -> TCP connect succeeds", "startup", "listen_ms", "ms", False, None),
        ("  spawn -> 'listening on' line (ours)", "startup", "listen_line_ms", "ms", False, None),
        ("  spawn -> first initialize answered", "startup", "initialize_ms", "ms", False, None),
        ("Client mode, stdio -> our server mode", None, None, None, None, None),
        ("  p50 round trip, 1 session (us)", "stdio:1", "p50_us", "us", False, None),
        ("  throughput, 8 client processes (calls/s)", "stdio:8", "calls_per_s", "n", True, None),
    ]

    header = f"{'':46} {'ours':>10} {'python':>14} {'ts':>14} {'vs python':>10} {'vs ts':>8}"
    lines = [header, "-" * len(header)]
    for label, key, name, unit, higher, wanted in rows:
        if key is None:
            lines.append(label)
            continue
        ours = field(r, key, "ours", name)
        cells = [fmt(ours, unit)]
        ratios = []
        for peer in PEERS:
            value = field(r, key, peer, name)
            cells.append(fmt(value, unit) + reply_note(r, key, peer, wanted))
            ratios.append(ratio(ours, value, higher) if unit != "count" else "")
        lines.append(
            f"{label:46} {cells[0]:>10} {cells[1]:>14} {cells[2]:>14} {ratios[0]:>10} {ratios[1]:>8}"
        )
    size = field(r, "binary_bytes", "ours")
    if size:
        lines.append(f"{'Binary size, stripped (MiB)':46} {size / 1048576:>10.2f}")
    lines.append("")
    lines.append(f"ours: {r.get(('version', 'ours'), '?')}")
    lines.append(
        f"Medians of {args.repeat} run(s) per measurement; 2-core machine shared with other work, "
        f"load average {r.get(('load_average', 'machine'), '?')}: numbers are noisy."
    )
    lines.append(
        "Ratios: how many times better ours is (x > 1 = ours better). '(json)'/'(sse)': the reply "
        "kind that peer used instead (Python always answers JSON, the TypeScript proxy always SSE)."
    )
    lines.append(
        "Memory, threads and CPU are the proxy process's own (/proc/PID), without the stdio child "
        "(the same mcp-fast-server behind all three)."
    )
    for peer in PEERS:
        if r.get(("available", peer)) == 0:
            lines.append(f"{peer}: not installed or not run; its column is n/a.")
    lines.append("")
    lines += targets(r)
    print("\n".join(lines))


def targets(r):
    out = ["Targets of issue 6:"]

    def check(text, ok):
        out.append(f"  [{'met' if ok else 'MISSED' if ok is not None else 'n/a'}] {text}")

    def times(key, name, peer, higher=True):
        ours, other = field(r, key, "ours", name), field(r, key, peer, name)
        if not ours or not other:
            return None
        return ours / other if higher else other / ours

    for transport, title in (("json", "/mcp"), ("legacy", "legacy SSE"), ("sse", "/mcp SSE")):
        for peer, wanted in (("python", 20), ("ts", 8)):
            x = times(f"tput:{transport}:8", "calls_per_s", peer)
            shown = "n/a" if x is None else f"{x:.1f}x"
            check(f"throughput {title}, 8 sessions >= {wanted}x {peer}: {shown}",
                  None if x is None else x >= wanted)
    x = times("seq:json", "p50_us", "python", higher=False)
    check(f"sequential p50 <= 1/5 of python's: {'n/a' if x is None else f'{x:.1f}x'}",
          None if x is None else x >= 5)
    for key, when in (("idle_start_rss_kib", "before any client"), ("idle_rss_kib", "after one session")):
        idle = field(r, key, "ours")
        check(f"idle RSS <= 3 MiB, {when}: {fmt(idle, 'MiB')} MiB",
              None if idle is None else idle <= 3 * 1024)
    held = field(r, "hold:sse", "ours", "rss_kib")
    check(f"RSS with 1,000 SSE sessions <= 64 MiB: {fmt(held, 'MiB')} MiB",
          None if held is None else held <= 64 * 1024)
    listen = field(r, "startup", "ours", "listen_line_ms") or field(r, "startup", "ours", "listen_ms")
    check(f"start-up to listening <= 10 ms: {fmt(listen, 'ms')} ms",
          None if listen is None else listen <= 10)
    size = field(r, "binary_bytes", "ours")
    check(f"stripped binary <= 4 MiB: {size / 1048576:.2f} MiB (the binary measured)"
          if size else "stripped binary <= 4 MiB: n/a",
          None if not size else size <= 4 * 1048576)
    return out


if __name__ == "__main__":
    sys.exit(main())
