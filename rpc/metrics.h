/*
 * metrics.h - the pieces Prometheus metrics are made of, shared by the RPC
 * server (per-method counters and latencies) and the edge: a latency
 * histogram of relaxed atomics that any thread records into without a
 * lock, and a growable text buffer the exposition format is written to.
 *
 * Every histogram has the same bounds (RPC_LATENCY_BOUNDS, seconds), from
 * half a millisecond to ten seconds: one set of buckets across estore
 * lets dashboards compare the edge with the services behind it.
 */
#ifndef ESTORE_RPC_METRICS_H
#define ESTORE_RPC_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RPC_LATENCY_BUCKETS 14

typedef struct rpc_latency {
	_Atomic uint64_t buckets[RPC_LATENCY_BUCKETS]; /* per bound, not cumulative */
	_Atomic uint64_t count;
	_Atomic uint64_t sum_ns;
} rpc_latency;

/* Counts one observation (negative durations count as 0). Any thread. */
void rpc_latency_observe(rpc_latency *h, long long duration_ns);

/* Exposition text being written; starts zeroed. */
typedef struct rpc_text {
	char *p;
	size_t len, cap;
	bool oom;    /* a write failed: the text is incomplete */
} rpc_text;

void rpc_text_printf(rpc_text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Writes the _bucket/_sum/_count series of histogram `name` with the
 * given labels (`route="GET /x"`, already escaped; may be "") — nothing
 * when it has no observations. HELP/TYPE lines are the caller's. */
void rpc_latency_write(rpc_text *t, const char *name, const char *labels,
		       const rpc_latency *h);

/* Writes what the process costs: process_cpu_seconds_total,
 * process_resident_memory_bytes, process_open_fds,
 * process_start_time_seconds (read from /proc; a series that cannot be
 * read is left out). */
void rpc_process_metrics_write(rpc_text *t);

/* Takes the text (NUL-terminated; NULL after a failed write) and its
 * length; the buffer is the caller's to free. */
char *rpc_text_take(rpc_text *t, size_t *len);

#endif
