"""report.py - figures of bench/edge/run.sh.

  report.py wrk FILE SUBJECT
      wrk --latency output -> tab-separated "SUBJECT key value" lines:
      requests, seconds, rps, p50_us, p99_us, errors (non-2xx/3xx responses
      plus socket errors).
  report.py table RESULTS CLK_TCK TITLE IDLE_CONNS
      results.tsv -> the tables, ratios and targets.
"""
import re
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
    r = {}
    for line in open(path):
        subject, key, value = line.rstrip("\n").split("\t")
        r.setdefault(subject, {})[key] = value
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

    def us_per_req(s, group):
        return float(r[s]["ticks_" + group]) / hz * 1e6 / max(1, int(r[s]["requests"]))

    print()
    print(title)
    print()
    print("| path | req/s | p50 | p99 | errors | proxy | account | token | Redis | PostgreSQL "
          "| proxy + backend | load1 | other CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    total = {}
    for s, proxy, label in rows:
        if s not in r or "requests" not in r[s]:
            print("| %s | (no result) |" % label)
            continue
        d = r[s]
        parts = [us_per_req(s, g) for g in [proxy] + backend]
        total[s] = sum(parts)
        busy = float(d["ticks_machine"]) / hz
        ours = sum(float(d["ticks_" + g]) for g in [proxy] + backend + ["auth"]) / hz
        other = max(0.0, busy - ours - float(d["wrk_cpu_s"]))
        print("| %s | %s | %.2f ms | %.2f ms | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s | %.0f %% |" % (
            label, "{:,.0f}".format(float(d["rps"])), float(d["p50_us"]) / 1e3,
            float(d["p99_us"]) / 1e3, d["errors"], *parts, total[s], d["load1"],
            100 * other / float(d["seconds"]) / ncpu()))
    print()
    print("CPU in µs per request (utime+stime from /proc/PID/stat around the run, "
          "all threads): proxy = estore-edge or the grpc-gateway process; backend = "
          "estore-account + estore-token + Redis + PostgreSQL (postmaster and "
          "backends). estore-auth is idle "
          "and not counted. other CPU = the rest of the machine (not wrk, not "
          "these processes), share of all cores: others at work make a run noisy.")

    if "edge_me" in total and "gateway_me" in total:
        e, g = r["edge_me"], r["gateway_me"]
        rps = float(e["rps"]) / float(g["rps"])
        cpu = total["edge_me"] / total["gateway_me"]
        proxy_cpu = us_per_req("edge_me", "edge") / us_per_req("gateway_me", "gateway")
        p99e, p99g = float(e["p99_us"]), float(g["p99_us"])
        print()
        print("edge / grpc-gateway, GET /v1/accounts/me, same run:")
        print("- req/s: %.2fx (target >= 3x): %s" % (rps, "met" if rps >= 3 else "NOT met"))
        print("- CPU per request, proxy + backend: %.2fx (target <= 1/3): %s" % (
            cpu, "met" if cpu <= 1 / 3 else "NOT met"))
        print("- CPU per request, proxy alone: %.2fx (%.1f vs %.1f µs)" % (
            proxy_cpu, us_per_req("edge_me", "edge"), us_per_req("gateway_me", "gateway")))
        print("- p99: %.2f ms vs %.2f ms (target: lower): %s" % (
            p99e / 1e3, p99g / 1e3, "met" if p99e < p99g else "NOT met"))

    print()
    n = "{:,}".format(int(idle_conns))
    eb = r.get("edge_busy", {})
    hwm = int(r["edge"]["hwm_kb"]) / 1024
    print("| proxy | RSS at start | RSS holding %s idle keep-alive connections | peak RSS (VmHWM) |" % n)
    print("|---|---:|---:|---:|")
    ei = r.get("edge_idle", {}).get("idle_rss_kb")
    gi = r.get("gateway_idle", {}).get("idle_rss_kb")
    print("| estore-edge | %.1f MiB | %s | %.1f MiB |" % (
        int(r["edge"]["rss_start_kb"]) / 1024, "%.1f MiB" % (int(ei) / 1024) if ei else "-", hwm))
    print("| grpc-gateway | - | %s | %.1f MiB |" % (
        "%.1f MiB" % (int(gi) / 1024) if gi else "-", int(r["gateway"]["hwm_kb"]) / 1024))
    print()
    print("The edge's peak includes wrk -c %s for 3 s on /healthz (%s req/s, %s errors); "
          "connections the servers closed while held idle: edge %s, gateway %s." % (
              n, "{:,.0f}".format(float(eb.get("rps", "nan"))), eb.get("errors", "?"),
              r.get("edge_idle", {}).get("closed_by_server", "?"),
              r.get("gateway_idle", {}).get("closed_by_server", "?")))
    worst = max(hwm, int(ei) / 1024 if ei else 0)
    print("Edge RSS with %s keep-alive connections: %.1f MiB at most (target < 32 MiB): %s" % (
        n, worst, "met" if ei and worst < 32 else "NOT met"))


def ncpu():
    import os
    return os.cpu_count() or 1


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "wrk":
        parse_wrk(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 6 and sys.argv[1] == "table":
        table(*sys.argv[2:])
    else:
        sys.exit(__doc__)


main()
