"""report.py - figures of bench/edge/run.sh.

  report.py wrk FILE SUBJECT
      wrk --latency output -> tab-separated "SUBJECT key value" lines:
      requests, seconds, rps, p50_us, p99_us, errors (non-2xx/3xx responses
      plus socket errors).
  report.py table RESULTS CLK_TCK TITLE IDLE_CONNS
      results.tsv -> the tables, ratios and targets.
  report.py profile STATE SUBJECT GROUP...
      perf stat output (STATE/prof-SUBJECT-GROUP.stat) and the wrk run it
      counted -> per request: CPU µs, syscalls, context switches.
"""
import re
import statistics
import sys

UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def to_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError("bad wrk time %r" % text)
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(path, subject):
    out = {"errors": 0}
    for line in open(path, encoding="utf-8", errors="replace"):
        f = line.split()
        m = re.match(r"\s*(\d+) requests in ([0-9.]+)(us|ms|s|m)", line)
        if m:
            out["requests"] = int(m.group(1))
            out["seconds"] = to_us(m.group(2) + m.group(3)) / 1e6
        elif len(f) == 2 and f[0] in ("50%", "99%"):
            out["p%s_us" % f[0][:-1]] = "%.0f" % to_us(f[1])
        elif line.startswith("Requests/sec:"):
            out["rps"] = f[1]
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            out["errors"] += int(f[-1])
        elif line.strip().startswith("Socket errors:"):
            out["errors"] += sum(int(x) for x in re.findall(r"(\d+)", line))
    for k, v in out.items():
        print("%s\t%s\t%s" % (subject, k, v))


def load(path):
    """results.tsv -> {subject: {round: {key: value}}}; SUBJECT@N is round
    N of a measured run, a bare SUBJECT is round 0."""
    r = {}
    for line in open(path):
        subject, key, value = line.rstrip("\n").split("\t")
        base, _, rnd = subject.partition("@")
        r.setdefault(base, {}).setdefault(int(rnd or 0), {})[key] = value
    return r


def table(path, clk_tck, title, idle_conns):
    r = load(path)
    hz = float(clk_tck)
    # Behind either proxy, GET /v1/accounts/me costs the same services:
    # estore-account (GetAccount: one PostgreSQL query a call) and, once a
    # second per token, estore-token (ValidateToken, cached for 1 s by the
    # account service and by the edge). The edge adds its rate-limit
    # script in Redis on every request.
    backend = ["account", "token", "redis", "postgres"]
    rows = [("edge_healthz", "edge", "edge GET /healthz"),
            ("edge_me", "edge", "edge GET /v1/accounts/me"),
            ("gateway_me", "gateway", "grpc-gateway GET /v1/accounts/me")]

    def done(s):
        return {k: d for k, d in r.get(s, {}).items() if "requests" in d and "rps" in d}

    def us_per_req(d, group):
        return float(d["ticks_" + group]) / hz * 1e6 / max(1, int(d["requests"]))

    def figures(d, proxy):
        f = {"rps": float(d["rps"]), "p50": float(d["p50_us"]) / 1e3,
             "p99": float(d["p99_us"]) / 1e3, "errors": int(d["errors"]),
             "load1": float(d["load1"])}
        for g in [proxy] + backend:
            f[g] = us_per_req(d, g)
        f["proxy"] = f[proxy]
        f["total"] = sum(f[g] for g in [proxy] + backend)
        busy = float(d["ticks_machine"]) / hz
        ours = sum(float(d["ticks_" + g]) for g in [proxy] + backend + ["auth"]) / hz
        f["other"] = 100 * max(0.0, busy - ours - float(d["wrk_cpu_s"])) / float(d["seconds"]) / ncpu()
        return f

    def med(fs, key):
        return statistics.median(f[key] for f in fs)

    print()
    print(title)
    print()
    print("| path | req/s | p50 | p99 | errors | proxy | account | token | Redis | PostgreSQL "
          "| proxy + backend | load1 | other CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    per_round = {}
    for s, proxy, label in rows:
        runs = done(s)
        if not runs:
            print("| %s | (no result) |" % label)
            continue
        per_round[s] = {k: figures(d, proxy) for k, d in runs.items()}
        fs = list(per_round[s].values())
        print("| %s | %s | %.2f ms | %.2f ms | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.0f %% |" % (
            label, "{:,.0f}".format(med(fs, "rps")), med(fs, "p50"), med(fs, "p99"),
            sum(f["errors"] for f in fs), med(fs, "proxy"), med(fs, "account"), med(fs, "token"),
            med(fs, "redis"), med(fs, "postgres"), med(fs, "total"), med(fs, "load1"),
            med(fs, "other")))
    print()
    print("Medians over rounds; errors summed. CPU in µs per request (utime+stime "
          "from /proc/PID/stat around the run, all threads): proxy = estore-edge or "
          "the grpc-gateway process; backend = estore-account + estore-token + Redis "
          "+ PostgreSQL (postmaster and backends). estore-auth is idle and not "
          "counted. load1 = the load average after the run; other CPU = the rest of "
          "the machine (not wrk, not these processes), share of all cores: others at "
          "work make a run noisy.")

    if "edge_me" in per_round and "gateway_me" in per_round:
        pairs = [(per_round["edge_me"][k], per_round["gateway_me"][k])
                 for k in sorted(per_round["edge_me"]) if k in per_round["gateway_me"]]

        def ratio(key):
            xs = sorted(e[key] / g[key] for e, g in pairs)
            return statistics.median(xs), ", ".join("%.2f" % x for x in xs)

        rps, rps_all = ratio("rps")
        cpu, cpu_all = ratio("total")
        proxy_cpu, proxy_all = ratio("proxy")
        p99, p99_all = ratio("p99")
        print()
        print("edge / grpc-gateway, GET /v1/accounts/me, same round (median; every round):")
        print("- req/s: %.2fx (%s; target >= 3x): %s" % (rps, rps_all, "met" if rps >= 3 else "NOT met"))
        print("- CPU per request, proxy + backend: %.2fx (%s; target <= 0.33x): %s" % (
            cpu, cpu_all, "met" if cpu <= 1 / 3 else "NOT met"))
        print("- CPU per request, proxy alone: %.2fx (%s)" % (proxy_cpu, proxy_all))
        print("- p99: %.2fx (%s; target < 1x, lower): %s" % (
            p99, p99_all, "met" if p99 < 1 else "NOT met"))

    print()
    n = "{:,}".format(int(idle_conns))
    eb = r.get("edge_busy", {}).get(0, {})
    hwm = int(r["edge"][0]["hwm_kb"]) / 1024
    print("| proxy | RSS at start | RSS holding %s idle keep-alive connections | peak RSS (VmHWM) |" % n)
    print("|---|---:|---:|---:|")
    ei = r.get("edge_idle", {}).get(0, {}).get("idle_rss_kb")
    gi = r.get("gateway_idle", {}).get(0, {}).get("idle_rss_kb")
    print("| estore-edge | %.1f MiB | %s | %.1f MiB |" % (
        int(r["edge"][0]["rss_start_kb"]) / 1024, "%.1f MiB" % (int(ei) / 1024) if ei else "-", hwm))
    print("| grpc-gateway | - | %s | %.1f MiB |" % (
        "%.1f MiB" % (int(gi) / 1024) if gi else "-", int(r["gateway"][0]["hwm_kb"]) / 1024))
    print()
    print("The edge's peak includes wrk -c %s for 3 s on /healthz (%s req/s, %s errors); "
          "connections the servers closed while held idle: edge %s, gateway %s." % (
              n, "{:,.0f}".format(float(eb.get("rps", "nan"))), eb.get("errors", "?"),
              r.get("edge_idle", {}).get(0, {}).get("closed_by_server", "?"),
              r.get("gateway_idle", {}).get(0, {}).get("closed_by_server", "?")))
    worst = max(hwm, int(ei) / 1024 if ei else 0)
    print("Edge RSS with %s keep-alive connections: %.1f MiB at most (target < 32 MiB): %s" % (
        n, worst, "met" if ei and worst < 32 else "NOT met"))


def profile(state, subject, *groups):
    reqs = {}
    for line in open("%s/prof-%s.wrk" % (state, subject)):
        m = re.match(r"\s*(\d+) requests in", line)
        if m:
            reqs = int(m.group(1))
    if not reqs:
        print("%s: no wrk result under perf stat" % subject)
        return
    print()
    print("%s under perf stat (%d requests): per request" % (subject, reqs))
    print()
    print("| process | CPU µs | syscalls | context switches |")
    print("|---|---:|---:|---:|")
    for g in groups:
        ev = {}
        for line in open("%s/prof-%s-%s.stat" % (state, subject, g)):
            f = line.strip().split(",")
            if len(f) >= 3 and f[0] and not line.startswith("#"):
                try:
                    ev[f[2]] = float(f[0])
                except ValueError:
                    pass
        print("| %s | %.1f | %.1f | %.2f |" % (
            g, ev.get("task-clock", float("nan")) * 1e3 / reqs,
            ev.get("raw_syscalls:sys_enter", float("nan")) / reqs,
            ev.get("context-switches", float("nan")) / reqs))


def ncpu():
    import os
    return os.cpu_count() or 1


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "wrk":
        parse_wrk(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 6 and sys.argv[1] == "table":
        table(*sys.argv[2:])
    elif len(sys.argv) >= 5 and sys.argv[1] == "profile":
        profile(*sys.argv[2:])
    else:
        sys.exit(__doc__)


main()
