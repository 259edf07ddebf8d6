#!/usr/bin/env python3
"""Number crunching for bench/rpc/run.sh (which does all the running).

  report.py latency LOGFILE
      LOGFILE is an h2load --log-file (start_us, HTTP status, latency_us per
      line, only requests of the measured duration). Prints
      "count mean_us p50_us p99_us" (nearest-rank percentiles).

  report.py table RESULTS_TSV TITLE
      RESULTS_TSV holds "round<TAB>subject<TAB>key<TAB>value" lines written
      by run.sh. Prints the medians over rounds, the estore/peer ratios and
      the targets with PASS/FAIL. Never fails on a missed target.
"""
import math
import statistics
import sys
from collections import defaultdict

PEERS = [
    ("estore", "estore-echo"),
    ("estore_noinline", "estore-echo --no-inline"),
    ("go", "grpc-go"),
    ("cpp", "gRPC C++ (callback)"),
    ("nghttpd", "nghttpd (h2 ceiling)"),
]
MIB = 1024.0


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[rank - 1]


def latency(path):
    vals = []
    with open(path, "rb") as f:
        for line in f:
            parts = line.split(b"\t")
            if len(parts) >= 3:
                vals.append(int(parts[2]))
    vals.sort()
    if not vals:
        print("0 nan nan nan")
        return
    mean = sum(vals) / len(vals)
    print("%d %.1f %d %d" % (len(vals), mean, percentile(vals, 50),
                             percentile(vals, 99)))


def load(path):
    """subject -> key -> [values over rounds]"""
    data = defaultdict(lambda: defaultdict(list))
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            _, subject, key, value = parts
            try:
                data[subject][key].append(float(value))
            except ValueError:
                pass
    return data


def med(data, subject, key):
    vals = data.get(subject, {}).get(key, [])
    return statistics.median(vals) if vals else float("nan")


def total(data, subject, key):
    return sum(data.get(subject, {}).get(key, []))


def peak(data, subject, key):
    vals = data.get(subject, {}).get(key, [])
    return max(vals) if vals else float("nan")


def fmt(v, spec):
    return "n/a" if v != v else format(v, spec)


def ratio(a, b):
    if a != a or b != b or b == 0:
        return float("nan")
    return a / b


def verdict(ok):
    if ok is None:
        return "n/a"
    return "PASS" if ok else "FAIL"


def table(path, title):
    d = load(path)
    print()
    print("=" * 78)
    print(title)
    print("=" * 78)

    print()
    print("Servers under h2load (medians over rounds; errors = sum over rounds"
          " of failed +")
    print("errored + timeout + non-2xx in the measured runs, plus failed"
          " warm-up checks)")
    print()
    hdr = "%-23s %9s %8s %8s %8s %10s %8s %6s %6s" % (
        "server", "req/s", "mean ms", "p50 ms", "p99 ms", "CPU us/req",
        "peakRSS", "errors", "other%")
    print(hdr)
    print("-" * len(hdr))
    for key, name in PEERS:
        if key not in d:
            continue
        errors = (total(d, key, "errors") + total(d, key, "check_failed"))
        print("%-23s %9s %8s %8s %8s %10s %7sM %6d %6s" % (
            name, fmt(med(d, key, "rps"), ".0f"),
            fmt(med(d, key, "mean_us") / 1000, ".3f"),
            fmt(med(d, key, "p50_us") / 1000, ".3f"),
            fmt(med(d, key, "p99_us") / 1000, ".3f"),
            fmt(med(d, key, "cpu_us_per_req"), ".2f"),
            fmt(med(d, key, "hwm_kb") / MIB, ".1f"), errors,
            fmt(med(d, key, "other_cpu_pct"), ".1f")))
    print("(other%: CPU burnt by processes other than the server and h2load"
          " during the")
    print(" measured run, % of all cores: a noisy machine shows here;")
    print(" peakRSS: VmHWM at the end of the measured run, server restarted"
          " every round;")
    print(" max over rounds: " + ", ".join(
        "%s %sM" % (key, fmt(peak(d, key, "hwm_kb") / MIB, ".1f"))
        for key, name in PEERS if key in d) + ")")

    if "estore" in d:
        print()
        hdr = "%-24s %8s %8s %8s %10s %9s" % (
            "estore / peer", "req/s", "mean", "p99", "CPU/req", "peakRSS")
        print(hdr)
        print("-" * len(hdr))
        for key, name in PEERS[2:]:
            if key not in d:
                continue
            cells = [ratio(med(d, "estore", k), med(d, key, k))
                     for k in ("rps", "mean_us", "p99_us", "cpu_us_per_req",
                               "hwm_kb")]
            print("%-24s %7sx %7sx %7sx %9sx %8sx" % (
                ("vs " + name)[:24], *(fmt(c, ".2f") for c in cells)))

        print()
        print("estore-echo idle RSS (VmRSS, median): %s MiB right after start,"
              " %s MiB 1 s after a run" % (
                  fmt(med(d, "estore", "idle_rss_start_kb") / MIB, ".2f"),
                  fmt(med(d, "estore", "idle_rss_after_kb") / MIB, ".2f")))

    if "estore" in d and "go" in d:
        e_cpu, g_cpu = med(d, "estore", "cpu_us_per_req"), med(d, "go", "cpu_us_per_req")
        e_rps, g_rps = med(d, "estore", "rps"), med(d, "go", "rps")
        e_p99, g_p99 = med(d, "estore", "p99_us"), med(d, "go", "p99_us")
        idle0 = med(d, "estore", "idle_rss_start_kb") / MIB
        idle1 = med(d, "estore", "idle_rss_after_kb") / MIB

        def cmp(ok_expr):
            return None if ok_expr is None else bool(ok_expr)

        print()
        print("Targets (medians):")
        rows = [
            ("estore CPU/request <= 0.5 x grpc-go",
             "%s us vs %s us = %sx" % (fmt(e_cpu, ".2f"), fmt(g_cpu, ".2f"),
                                       fmt(ratio(e_cpu, g_cpu), ".2f")),
             cmp(None if e_cpu != e_cpu or g_cpu != g_cpu
                 else e_cpu <= 0.5 * g_cpu)),
            ("estore req/s >= 1.5 x grpc-go",
             "%s vs %s = %sx" % (fmt(e_rps, ".0f"), fmt(g_rps, ".0f"),
                                 fmt(ratio(e_rps, g_rps), ".2f")),
             cmp(None if e_rps != e_rps or g_rps != g_rps
                 else e_rps >= 1.5 * g_rps)),
            ("estore p99 < grpc-go p99",
             "%s ms vs %s ms" % (fmt(e_p99 / 1000, ".3f"),
                                 fmt(g_p99 / 1000, ".3f")),
             cmp(None if e_p99 != e_p99 or g_p99 != g_p99 else e_p99 < g_p99)),
            ("estore-echo idle RSS < 8 MiB (at start)",
             "%s MiB" % fmt(idle0, ".2f"),
             cmp(None if idle0 != idle0 else idle0 < 8)),
            ("  (same, 1 s after a run)",
             "%s MiB" % fmt(idle1, ".2f"),
             cmp(None if idle1 != idle1 else idle1 < 8)),
        ]
        for label, value, ok in rows:
            print("  %-42s %-30s %s" % (label, value, verdict(ok)))

    clients = [("client_estore", "estore channel (C)"),
               ("client_go", "grpc-go client")]
    if any(k in d for k, _ in clients):
        print()
        print("Client side: async unary calls against the grpc-go server"
              " (medians)")
        hdr = "%-22s %11s %13s %8s" % ("client", "calls/s", "CPU us/call",
                                       "failed")
        print(hdr)
        print("-" * len(hdr))
        for key, name in clients:
            if key not in d:
                continue
            print("%-22s %11s %13s %8d" % (
                name, fmt(med(d, key, "calls_per_s"), ".0f"),
                fmt(med(d, key, "cpu_us_per_call"), ".2f"),
                total(d, key, "failed") + total(d, key, "run_failed")))
        if "client_estore" in d and "client_go" in d:
            print("estore / grpc-go: calls/s %sx, CPU/call %sx" % (
                fmt(ratio(med(d, "client_estore", "calls_per_s"),
                          med(d, "client_go", "calls_per_s")), ".2f"),
                fmt(ratio(med(d, "client_estore", "cpu_us_per_call"),
                          med(d, "client_go", "cpu_us_per_call")), ".2f")))

    hops = [("c1", "-c 1 -m 1 (no queueing)"), ("c16", "-c 16 -m 16 (loaded)")]
    if any(("hop_" + h) in d for h, _ in hops):
        print()
        print("One service-to-service hop: h2load -> hop_server -> (our channel,"
              " blocking stub)")
        print("-> estore-echo, versus h2load -> estore-echo directly (medians)")
        hdr = "%-26s %9s %9s %9s %9s %9s %11s" % (
            "load", "path", "req/s", "p50 ms", "mean ms", "p99 ms",
            "CPU us/req")
        print(hdr)
        print("-" * len(hdr))
        # Under load the direct figures are the estore-echo row of the main
        # table: same h2load flags, same round, a fresh estore-echo.
        direct = {"c1": "direct_c1", "c16": "estore"}
        for h, label in hops:
            for sub, path in ((direct[h], "direct"), ("hop_" + h, "hop")):
                if sub not in d:
                    continue
                print("%-26s %9s %9s %9s %9s %9s %11s" % (
                    label if path == "direct" else "", path,
                    fmt(med(d, sub, "rps"), ".0f"),
                    fmt(med(d, sub, "p50_us") / 1000, ".3f"),
                    fmt(med(d, sub, "mean_us") / 1000, ".3f"),
                    fmt(med(d, sub, "p99_us") / 1000, ".3f"),
                    fmt(med(d, sub, "cpu_us_per_req"), ".2f")))
            if direct[h] in d and ("hop_" + h) in d:
                dp50 = med(d, "hop_" + h, "p50_us") - med(d, direct[h], "p50_us")
                dmean = med(d, "hop_" + h, "mean_us") - med(d, direct[h], "mean_us")
                print("%-26s %9s added by the hop: p50 +%s us, mean +%s us" % (
                    "", "", fmt(dp50, ".0f"), fmt(dmean, ".0f")))
        errs = sum(total(d, s, "errors") + total(d, s, "check_failed")
                   for s in ("hop_c1", "hop_c16", "direct_c1"))
        print("(loaded direct row = the estore-echo row above; CPU us/req of"
              " hop rows =")
        print(" hop_server + downstream estore-echo; errors in hop/direct_c1"
              " runs: %d)" % errs)
    print()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "latency":
        latency(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
