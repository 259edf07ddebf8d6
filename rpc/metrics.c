/*
 * metrics.c - histograms, exposition text and process figures of
 * metrics.h.
 */
#include "rpc/metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const double BOUNDS[RPC_LATENCY_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

void rpc_latency_observe(rpc_latency *h, long long duration_ns)
{
	long long ns = duration_ns < 0 ? 0 : duration_ns;
	double seconds = (double)ns / 1e9;
	size_t b = 0;

	while (b < RPC_LATENCY_BUCKETS && seconds > BOUNDS[b])
		b++;
	if (b < RPC_LATENCY_BUCKETS)
		atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)ns, memory_order_relaxed);
}

void rpc_text_printf(rpc_text *t, const char *fmt, ...)
{
	va_list ap;

	if (t->oom)
		return;
	for (;;) {
		size_t room = t->cap - t->len;
		int n;

		if (t->p != NULL) {
			va_start(ap, fmt);
			n = vsnprintf(t->p + t->len, room, fmt, ap);
			va_end(ap);
			if (n < 0) {
				t->oom = true;
				return;
			}
			if ((size_t)n < room) {
				t->len += (size_t)n;
				return;
			}
		} else {
			n = 0;
		}
		size_t cap = t->cap ? t->cap * 2 : 4096;

		while (cap - t->len <= (size_t)n)
			cap *= 2;
		char *p = realloc(t->p, cap);

		if (p == NULL) {
			t->oom = true;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
}

static uint64_t load(const _Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

void rpc_latency_write(rpc_text *t, const char *name, const char *labels,
		       const rpc_latency *h)
{
	uint64_t count = load(&h->count), cum = 0;
	const char *sep = labels[0] ? "," : "";

	if (count == 0)
		return;
	for (size_t b = 0; b < RPC_LATENCY_BUCKETS; b++) {
		cum += load(&h->buckets[b]);
		rpc_text_printf(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels,
				sep, BOUNDS[b], (unsigned long long)cum);
	}
	/* Read apart from the buckets: +Inf never undercounts them. */
	if (count < cum)
		count = cum;
	rpc_text_printf(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
			(unsigned long long)count);
	rpc_text_printf(t, "%s_sum{%s} %.6f\n", name, labels,
			(double)load(&h->sum_ns) / 1e9);
	rpc_text_printf(t, "%s_count{%s} %llu\n", name, labels,
			(unsigned long long)count);
}

/* Fields 14, 15 (utime, stime, ticks) and 22 (start time, ticks after
 * boot) of /proc/self/stat; the name (field 2) may hold spaces, so
 * parsing starts after its closing parenthesis. */
static bool read_stat(double *cpu_s, double *start_since_boot_s)
{
	char buf[1024], *p;
	unsigned long long utime, stime, start;
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n;

	if (f == NULL)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (p == NULL || hz <= 0 ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
			  "%*d %*d %*d %*d %*d %*d %llu",
		   &utime, &stime, &start) != 3)
		return false;
	*cpu_s = (double)(utime + stime) / (double)hz;
	*start_since_boot_s = (double)start / (double)hz;
	return true;
}

static long rss_bytes(void)
{
	long pages = 0, page = sysconf(_SC_PAGESIZE);
	FILE *f = fopen("/proc/self/statm", "r");

	if (f == NULL)
		return -1;
	if (fscanf(f, "%*d %ld", &pages) != 1)
		pages = -1;
	fclose(f);
	return pages < 0 ? -1 : pages * page;
}

static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;   /* the directory's own descriptor */
}

void rpc_process_metrics_write(rpc_text *t)
{
	double cpu, start_after_boot;
	long rss = rss_bytes(), fds = open_fds();
	struct timespec up, now;

	if (read_stat(&cpu, &start_after_boot)) {
		rpc_text_printf(t, "# HELP process_cpu_seconds_total User and system CPU time spent.\n"
				   "# TYPE process_cpu_seconds_total counter\n"
				   "process_cpu_seconds_total %.2f\n", cpu);
		if (clock_gettime(CLOCK_BOOTTIME, &up) == 0 &&
		    clock_gettime(CLOCK_REALTIME, &now) == 0) {
			double boot = (double)now.tv_sec + (double)now.tv_nsec / 1e9 -
				      ((double)up.tv_sec + (double)up.tv_nsec / 1e9);

			rpc_text_printf(t, "# HELP process_start_time_seconds Start time since the epoch.\n"
					   "# TYPE process_start_time_seconds gauge\n"
					   "process_start_time_seconds %.0f\n",
					boot + start_after_boot);
		}
	}
	if (rss >= 0)
		rpc_text_printf(t, "# HELP process_resident_memory_bytes Resident memory.\n"
				   "# TYPE process_resident_memory_bytes gauge\n"
				   "process_resident_memory_bytes %ld\n", rss);
	if (fds >= 0)
		rpc_text_printf(t, "# HELP process_open_fds Open file descriptors.\n"
				   "# TYPE process_open_fds gauge\n"
				   "process_open_fds %ld\n", fds);
}

char *rpc_text_take(rpc_text *t, size_t *len)
{
	char *p = t->p;

	if (t->oom || p == NULL) {
		free(p);
		*t = (rpc_text){ 0 };
		*len = 0;
		return NULL;
	}
	*len = t->len;
	*t = (rpc_text){ 0 };
	return p;
}
