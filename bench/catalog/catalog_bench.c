/*
 * catalog_bench - drives estore.catalog.v1.CatalogService/SearchProducts
 * through our client channel (rpc/channel.h) with N async calls always
 * outstanding, cycling through the queries of a file, and prints
 *
 *   calls=... failed=... seconds=... rps=... mean_ms=... p50_ms=...
 *   p99_ms=... max_ms=...
 *
 * Latency is taken per call, from the start of the async call to its
 * completion callback; rps and the percentiles (nearest rank) count every
 * call that completed inside the measured window, after the warm-up.
 *
 * With --check, each query is sent once (blocking) instead and one line
 * per query is printed: "<index>\t<total_size>\t<products in page>\t
 * <corrected_query>"; the exit status is 1 if any call failed.
 *
 * Queries file: one query a line, tab-separated fields
 *   q, category id, min_price, max_price, in_stock (0/1), sort, page_size
 * (empty fields and missing trailing fields leave the request's default).
 *
 * Usage: catalog_bench --target HOST:PORT --queries FILE [--concurrency N]
 *                      [--duration S] [--warmup S] [--check]
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "estore/catalog/v1/catalog.rpc.h"
#include "rpc/channel.h"

typedef Estore__Catalog__V1__SearchProductsRequest search_req;
typedef Estore__Catalog__V1__SearchProductsResponse search_resp;

enum { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };

/* Latencies kept at most; a 5 s run at any rate this machine reaches
 * stays far below. Calls beyond it are counted, not sampled. */
#define MAX_SAMPLES (4u << 20)
#define CALL_TIMEOUT_MS 10000

typedef struct bench bench;

typedef struct slot {
	bench *b;
	long long t0_ns;
} slot;

struct bench {
	rpc_channel *ch;
	search_req *reqs;
	size_t nreq;
	atomic_ulong next; /* index of the next query to send */
	atomic_int phase;
	atomic_long ok;
	atomic_long failed;
	atomic_long start_errors;
	atomic_int outstanding;
	/* Latency samples, in ns, of calls completed while measuring. */
	long long *lat;
	atomic_ulong nlat;
	pthread_mutex_t mu;
	pthread_cond_t drained;
	int first_code;
	char first_message[160];
};

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void on_done(void *user, rpc_code code, const char *message,
		    ProtobufCMessage *resp);

static void slot_gone(bench *b)
{
	if (atomic_fetch_sub(&b->outstanding, 1) == 1) {
		pthread_mutex_lock(&b->mu);
		pthread_cond_broadcast(&b->drained);
		pthread_mutex_unlock(&b->mu);
	}
}

/* On refusal the slot is given up for good, so a broken channel ends the
 * run instead of spinning. */
static void start_call(slot *s)
{
	bench *b = s->b;
	const rpc_call_opts opts = { .timeout_ms = CALL_TIMEOUT_MS };
	size_t i = atomic_fetch_add(&b->next, 1) % b->nreq;

	s->t0_ns = now_ns();
	if (estore_catalog_v1_CatalogService_search_products_async(
		    b->ch, &opts, &b->reqs[i], on_done, s) < 0) {
		atomic_fetch_add(&b->start_errors, 1);
		slot_gone(b);
	}
}

/* Runs on the channel's thread: record, then refill the slot at once so
 * the number of calls in flight stays at N until the stop. */
static void on_done(void *user, rpc_code code, const char *message,
		    ProtobufCMessage *resp)
{
	slot *s = user;
	bench *b = s->b;
	long long took = now_ns() - s->t0_ns;
	int phase = atomic_load(&b->phase);

	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (phase == PHASE_MEASURE) {
		if (code == RPC_OK) {
			unsigned long k = atomic_fetch_add(&b->nlat, 1);

			atomic_fetch_add(&b->ok, 1);
			if (k < MAX_SAMPLES)
				b->lat[k] = took;
		} else if (atomic_fetch_add(&b->failed, 1) == 0) {
			pthread_mutex_lock(&b->mu);
			b->first_code = code;
			snprintf(b->first_message, sizeof(b->first_message),
				 "%s", message ? message : "");
			pthread_mutex_unlock(&b->mu);
		}
	}
	if (phase != PHASE_STOP) {
		start_call(s);
		return;
	}
	slot_gone(b);
}

/* ---- the queries file ----------------------------------------------------- */

/* Splits line at tabs in place; returns the number of fields (at most n). */
static size_t split_tabs(char *line, char **f, size_t n)
{
	size_t k = 0;

	while (k < n) {
		char *tab = strchr(line, '\t');

		f[k++] = line;
		if (!tab)
			break;
		*tab = '\0';
		line = tab + 1;
	}
	return k;
}

static char *dup_or_die(const char *s)
{
	char *d = strdup(s);

	if (!d) {
		fputs("catalog_bench: out of memory\n", stderr);
		exit(1);
	}
	return d;
}

static search_req *load_queries(const char *path, size_t *n_out)
{
	FILE *f = fopen(path, "r");
	search_req *reqs = NULL;
	size_t n = 0, cap = 0;
	char *line = NULL;
	size_t len = 0;
	ssize_t got;

	if (!f) {
		fprintf(stderr, "catalog_bench: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	while ((got = getline(&line, &len, f)) >= 0) {
		char *fld[7] = { 0 };
		size_t k;
		search_req *r;

		while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
			line[--got] = '\0';
		if (got == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			reqs = realloc(reqs, cap * sizeof(*reqs));
			if (!reqs) {
				fputs("catalog_bench: out of memory\n", stderr);
				exit(1);
			}
		}
		r = &reqs[n++];
		estore__catalog__v1__search_products_request__init(r);
		k = split_tabs(line, fld, 7);
		r->q = dup_or_die(fld[0]);
		if (k > 1 && fld[1][0])
			r->category = dup_or_die(fld[1]);
		if (k > 2 && fld[2][0])
			r->min_price = strtoll(fld[2], NULL, 10);
		if (k > 3 && fld[3][0])
			r->max_price = strtoll(fld[3], NULL, 10);
		if (k > 4 && fld[4][0])
			r->in_stock = fld[4][0] == '1';
		if (k > 5 && fld[5][0])
			r->sort = dup_or_die(fld[5]);
		if (k > 6 && fld[6][0])
			r->page_size = (int32_t)strtol(fld[6], NULL, 10);
	}
	free(line);
	fclose(f);
	if (n == 0) {
		fprintf(stderr, "catalog_bench: %s: no queries\n", path);
		exit(2);
	}
	*n_out = n;
	return reqs;
}

static void free_queries(search_req *reqs, size_t n)
{
	/* The defaults of the generated init are static empty strings. */
	search_req blank;

	estore__catalog__v1__search_products_request__init(&blank);
	for (size_t i = 0; i < n; i++) {
		free(reqs[i].q);
		if (reqs[i].category != blank.category)
			free(reqs[i].category);
		if (reqs[i].sort != blank.sort)
			free(reqs[i].sort);
	}
	free(reqs);
}

/* ---- modes ---------------------------------------------------------------- */

static int check(bench *b)
{
	int rc = 0;

	for (size_t i = 0; i < b->nreq; i++) {
		const rpc_call_opts opts = { .timeout_ms = CALL_TIMEOUT_MS };
		search_resp *resp = NULL;
		rpc_status st = { 0 };
		rpc_code code = estore_catalog_v1_CatalogService_search_products(
			b->ch, &opts, &b->reqs[i], &resp, &st);

		if (code != RPC_OK) {
			fprintf(stderr, "catalog_bench: query %zu ('%s'): %s: %s\n",
				i + 1, b->reqs[i].q, rpc_code_name(code),
				st.message ? st.message : "");
			rc = 1;
		} else {
			printf("%zu\t%d\t%zu\t%s\n", i + 1, resp->total_size,
			       resp->n_products, resp->corrected_query);
			protobuf_c_message_free_unpacked(&resp->base, NULL);
		}
		rpc_status_dispose(&st);
	}
	return rc;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return (x > y) - (x < y);
}

/* Nearest rank: the smallest sample with at least p of them at or below. */
static double pct_ms(const long long *v, size_t n, double p)
{
	size_t rank = (size_t)((double)n * p + 0.999999);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1e6;
}

static int load(bench *b, int concurrency, double warmup, double duration)
{
	slot *slots = calloc((size_t)concurrency, sizeof(*slots));
	long long t0, t1, sum = 0;
	size_t n;
	long ok, failed;
	struct timespec until;
	int rc = 0;

	b->lat = malloc(MAX_SAMPLES * sizeof(*b->lat));
	if (!slots || !b->lat) {
		fputs("catalog_bench: out of memory\n", stderr);
		free(slots);
		return 1;
	}
	atomic_store(&b->outstanding, concurrency);
	for (int i = 0; i < concurrency; i++) {
		slots[i].b = b;
		start_call(&slots[i]);
	}
	sleep_s(warmup);
	t0 = now_ns();
	atomic_store(&b->phase, PHASE_MEASURE);
	sleep_s(duration);
	atomic_store(&b->phase, PHASE_STOP);
	t1 = now_ns();
	ok = atomic_load(&b->ok);
	failed = atomic_load(&b->failed);

	/* Let the last calls land, bounded: a stuck server must not hang the
	 * bench (rpc_channel_free cancels whatever is left). */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += CALL_TIMEOUT_MS / 1000 + 1;
	pthread_mutex_lock(&b->mu);
	while (atomic_load(&b->outstanding) > 0)
		if (pthread_cond_timedwait(&b->drained, &b->mu, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&b->mu);
	rpc_channel_free(b->ch);
	b->ch = NULL;

	if (failed > 0 || atomic_load(&b->start_errors) > 0)
		fprintf(stderr, "catalog_bench: %ld failed calls (first: %s: %s), "
			"%ld refused starts\n", failed,
			rpc_code_name(b->first_code), b->first_message,
			atomic_load(&b->start_errors));
	n = atomic_load(&b->nlat);
	if (n > MAX_SAMPLES)
		n = MAX_SAMPLES;
	if (ok == 0 || n == 0) {
		fputs("catalog_bench: no call succeeded\n", stderr);
		rc = 1;
	} else {
		qsort(b->lat, n, sizeof(*b->lat), cmp_ll);
		for (size_t i = 0; i < n; i++)
			sum += b->lat[i];
		printf("calls=%ld failed=%ld seconds=%.3f rps=%.1f mean_ms=%.3f "
		       "p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n", ok, failed,
		       (double)(t1 - t0) / 1e9, (double)ok * 1e9 / (double)(t1 - t0),
		       (double)sum / (double)n / 1e6, pct_ms(b->lat, n, 0.50),
		       pct_ms(b->lat, n, 0.99), pct_ms(b->lat, n, 1.0));
	}
	free(b->lat);
	free(slots);
	return rc;
}

static void usage(void)
{
	fputs("usage: catalog_bench --target HOST:PORT --queries FILE "
	      "[--concurrency N] [--duration S] [--warmup S] [--check]\n", stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *target = NULL, *queries = NULL;
	int concurrency = 16, check_only = 0, rc;
	double duration = 5, warmup = 1;
	static bench b;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--check") == 0) {
			check_only = 1;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--target") == 0)
			target = argv[++i];
		else if (strcmp(argv[i], "--queries") == 0)
			queries = argv[++i];
		else if (strcmp(argv[i], "--concurrency") == 0)
			concurrency = atoi(argv[++i]);
		else if (strcmp(argv[i], "--duration") == 0)
			duration = atof(argv[++i]);
		else if (strcmp(argv[i], "--warmup") == 0)
			warmup = atof(argv[++i]);
		else
			usage();
	}
	if (!target || !queries || concurrency < 1 || concurrency > 4096 ||
	    duration <= 0 || duration > 3600 || warmup < 0 || warmup > 600)
		usage();

	b.reqs = load_queries(queries, &b.nreq);
	pthread_mutex_init(&b.mu, NULL);
	pthread_cond_init(&b.drained, NULL);
	b.ch = rpc_channel_new(target, NULL);
	if (!b.ch) {
		fprintf(stderr, "catalog_bench: bad target '%s'\n", target);
		free_queries(b.reqs, b.nreq);
		return 2;
	}
	rc = check_only ? check(&b) : load(&b, concurrency, warmup, duration);
	rpc_channel_free(b.ch);
	free_queries(b.reqs, b.nreq);
	pthread_cond_destroy(&b.drained);
	pthread_mutex_destroy(&b.mu);
	return rc;
}
