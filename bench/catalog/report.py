"""report.py - figures of bench/catalog/run.sh.

Each parser prints tab-separated "SUBJECT key value" lines (requests,
seconds, rps, p50_us, p99_us, errors) for results.tsv; SUBJECT is
TYPE/PATH (PATH: grpc, edge or pg); wrk's output is read by
bench/edge/report.py, which prints the same keys.

  report.py grpc FILE SUBJECT           catalog_bench's output
  report.py wrkbytes FILE SUBJECT       wrk's output -> bytes read a response
  report.py pgbench OUT LOGDIR SUBJECT  pgbench's output and its --log files
                                        (latency of every transaction)
  report.py table RESULTS               results.tsv -> the table and targets
"""
import glob
import os
import re
import sys

TYPES = [("common", "common word"), ("word", "one word (mid frequency)"),
         ("two", "two words (AND)"), ("typo", "misspelt word"),
         ("prefix", "prefix"), ("filtered", "filtered (category, price, stock)"),
         ("facets", "facets (common word)")]
PATHS = [("grpc", "engine via gRPC"), ("edge", "engine via edge"),
         ("pg", "PostgreSQL FTS")]
P99_TARGET_MS = 20.0
READ_P99_TARGET_MS = 2.0
RATIO_TARGET = 50.0
BUILD_TARGET_S = 60.0


def emit(subject, d):
    for k, v in d.items():
        print("%s\t%s\t%s" % (subject, k, v))


def parse_grpc(path, subject):
    d = {}
    for line in open(path, encoding="utf-8", errors="replace"):
        if line.startswith("calls="):
            kv = dict(f.split("=", 1) for f in line.split())
            d = {"requests": kv["calls"], "seconds": kv["seconds"],
                 "rps": kv["rps"], "errors": kv["failed"],
                 "p50_us": "%.0f" % (float(kv["p50_ms"]) * 1e3),
                 "p99_us": "%.0f" % (float(kv["p99_ms"]) * 1e3)}
    emit(subject, d)


def parse_wrk_bytes(path, subject):
    size = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30}
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"\s*(\d+) requests in [^,]*, ([0-9.]+)(B|KB|MB|GB) read", line)
        if m and int(m.group(1)) > 0:
            emit(subject, {"bytes_per_resp": "%.0f" % (
                float(m.group(2)) * size[m.group(3)] / int(m.group(1)))})


def nearest_rank(sorted_v, p):
    k = max(1, min(len(sorted_v), int(len(sorted_v) * p + 0.999999)))
    return sorted_v[k - 1]


def parse_pgbench(out, logdir, subject):
    d = {"errors": 0}
    for line in open(out, encoding="utf-8", errors="replace"):
        m = re.match(r"tps = ([0-9.]+) \(without initial connection time\)", line)
        if m:
            d["rps"] = m.group(1)
        m = re.match(r"number of failed transactions: (\d+)", line)
        if m:
            d["errors"] += int(m.group(1))
        m = re.match(r"duration: (\d+) s", line)
        if m:
            d["seconds"] = m.group(1)
        if "aborted" in line:
            d["errors"] += 1
    # --log: "client_id transaction_no time script_no time_epoch time_us",
    # time being the transaction's latency in microseconds.
    lat = []
    for f in glob.glob(os.path.join(logdir, "pgbench_log.*")):
        for line in open(f):
            parts = line.split()
            if len(parts) >= 3 and parts[2].isdigit():
                lat.append(int(parts[2]))
    lat.sort()
    d["requests"] = len(lat)
    if lat:
        d["p50_us"] = nearest_rank(lat, 0.50)
        d["p99_us"] = nearest_rank(lat, 0.99)
    emit(subject, d)


def load(path):
    r = {}
    for line in open(path):
        subject, key, value = line.rstrip("\n").split("\t", 2)
        r.setdefault(subject, {})[key] = value
    return r


def fnum(x, digits=0):
    return "{:,.{}f}".format(x, digits)


def rate(x):
    """req/s with the digits that matter: PostgreSQL's can be below 1."""
    return fnum(x, 0 if x >= 100 else 1 if x >= 10 else 2)


def met(ok):
    return "met" if ok else "NOT met"


def table(path):
    r = load(path)
    env = r.get("env", {})
    out = []

    def fig(subject):
        d = r.get(subject)
        if not d or "rps" not in d or "p99_us" not in d:
            return None
        return {"rps": float(d["rps"]), "p50": float(d["p50_us"]) / 1e3,
                "p99": float(d["p99_us"]) / 1e3, "errors": int(d.get("errors", 0))}

    out.append("| query | path | req/s | p50 ms | p99 ms | errors | req/s vs PostgreSQL | bytes/response |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|")
    misses = []
    ratios = {}
    for t, label in TYPES:
        pg = fig(t + "/pg")
        first = True
        for p, plabel in PATHS:
            f = fig("%s/%s" % (t, p))
            if f is None:
                continue
            ratio = ""
            if p != "pg" and pg and pg["rps"] > 0:
                ratios[(t, p)] = f["rps"] / pg["rps"]
                ratio = fnum(ratios[(t, p)], 0) + "×"
            size = r.get("%s/%s" % (t, p), {}).get("bytes_per_resp", "")
            out.append("| %s | %s | %s | %.2f | %.2f | %d | %s | %s |" % (
                label if first else "", plabel, rate(f["rps"]), f["p50"],
                f["p99"], f["errors"], ratio, fnum(float(size)) if size else ""))
            first = False
            if p != "pg" and f["p99"] >= P99_TARGET_MS:
                misses.append("%s %s p99 %.2f ms" % (label, plabel, f["p99"]))
    rd = fig("reads/edge")
    if rd:
        size = r["reads/edge"].get("bytes_per_resp", "")
        out.append("| product by id | GET /v1/products/{id} via edge | %s | %.2f | %.2f | %d | | %s |"
                   % (rate(rd["rps"]), rd["p50"], rd["p99"], rd["errors"],
                      fnum(float(size)) if size else ""))
    out.append("")

    errors = sum(int(d.get("errors", 0)) for s, d in r.items() if s != "env")
    if "index_ms" in env:
        s = float(env["index_ms"]) / 1e3
        out.append("Index build: %s products in %.1f s (target < %.0f s: %s); index memory %s"
                   " bytes (%.1f MiB, the engine's own count); estore-catalog RSS %.1f MiB."
                   % (fnum(int(env["index_docs"])), s, BUILD_TARGET_S,
                      met(s < BUILD_TARGET_S), fnum(int(env["index_bytes"])),
                      int(env["index_bytes"]) / 2**20,
                      int(env.get("catalog_rss_kb", 0)) / 1024))
    engine = [f for t, _ in TYPES for p in ("grpc", "edge")
              for f in [fig("%s/%s" % (t, p))] if f]
    if engine:
        out.append("Every query type, p99 < %.0f ms at %s clients, gRPC and edge: %s%s."
                   % (P99_TARGET_MS, env.get("clients", "?"), met(not misses),
                      " (" + "; ".join(misses) + ")" if misses else ""))
    for t, label in (("common", "common word"), ("facets", "facets")):
        for p, plabel in (("grpc", "via gRPC"), ("edge", "via edge")):
            if (t, p) in ratios:
                out.append("%s %s: %s× PostgreSQL FTS's req/s (target ≥ %.0f×: %s)."
                           % (label.capitalize(), plabel, fnum(ratios[(t, p)], 1),
                              RATIO_TARGET, met(ratios[(t, p)] >= RATIO_TARGET)))
    if rd:
        out.append("Product read by id via the edge: p99 %.2f ms (target < %.0f ms: %s)."
                   % (rd["p99"], READ_P99_TARGET_MS, met(rd["p99"] < READ_P99_TARGET_MS)))
    out.append("Errors (failed calls, non-2xx responses, socket errors, failed "
               "transactions) over every run: %d." % errors)
    print("\n".join(out))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "grpc" and len(sys.argv) == 4:
        parse_grpc(sys.argv[2], sys.argv[3])
    elif cmd == "wrkbytes" and len(sys.argv) == 4:
        parse_wrk_bytes(sys.argv[2], sys.argv[3])
    elif cmd == "pgbench" and len(sys.argv) == 5:
        parse_pgbench(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "table" and len(sys.argv) == 3:
        table(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
