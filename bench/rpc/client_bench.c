/*
 * client_bench - drives a gRPC server's estore.testing.v1.Echo/UnaryEcho
 * through our client channel (rpc/channel.h) with N async calls always
 * outstanding, and prints what the client side costs:
 *
 *   calls=... failed=... seconds=... calls_per_s=... cpu_us_per_call=...
 *
 * cpu_us_per_call is the whole process's user+system time (getrusage)
 * over the measured window divided by the calls completed in it, so it
 * includes the channel's I/O thread, protobuf encode/decode and this
 * program's callbacks. bench/rpc/go/client prints the same line for
 * grpc-go's client.
 *
 * Usage: client_bench --target HOST:PORT [--concurrency N] [--duration S]
 *                     [--warmup S]
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "estore/testing/v1/echo.rpc.h"
#include "rpc/channel.h"

enum { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };

typedef struct bench {
	rpc_channel *ch;
	Estore__Testing__V1__EchoRequest req;
	atomic_int phase;
	atomic_long ok;          /* completed OK during PHASE_MEASURE */
	atomic_long failed;      /* completed non-OK during PHASE_MEASURE */
	atomic_long start_errors; /* rpc_channel_call_async refused */
	atomic_int outstanding;
	pthread_mutex_t mu;
	pthread_cond_t drained;
	int first_code;           /* first failure seen, for the report */
	char first_message[160];
} bench;

static void on_done(void *user, rpc_code code, const char *message,
		    ProtobufCMessage *resp);

/* Starts one call; on refusal the slot is given up for good, so a broken
 * channel ends the run instead of spinning. */
static void start_call(bench *b)
{
	int rv = estore_testing_v1_Echo_unary_echo_async(b->ch, NULL, &b->req,
							 on_done, b);

	if (rv < 0) {
		atomic_fetch_add(&b->start_errors, 1);
		if (atomic_fetch_sub(&b->outstanding, 1) == 1) {
			pthread_mutex_lock(&b->mu);
			pthread_cond_broadcast(&b->drained);
			pthread_mutex_unlock(&b->mu);
		}
	}
}

/* Runs on the channel's thread: count, then immediately refill the slot so
 * the number of outstanding calls stays at N until the stop. */
static void on_done(void *user, rpc_code code, const char *message,
		    ProtobufCMessage *resp)
{
	bench *b = user;
	int phase = atomic_load(&b->phase);

	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (phase == PHASE_MEASURE) {
		if (code == RPC_OK) {
			atomic_fetch_add(&b->ok, 1);
		} else if (atomic_fetch_add(&b->failed, 1) == 0) {
			pthread_mutex_lock(&b->mu);
			b->first_code = code;
			snprintf(b->first_message, sizeof(b->first_message),
				 "%s", message ? message : "");
			pthread_mutex_unlock(&b->mu);
		}
	}
	if (phase != PHASE_STOP) {
		start_call(b);
		return;
	}
	if (atomic_fetch_sub(&b->outstanding, 1) == 1) {
		pthread_mutex_lock(&b->mu);
		pthread_cond_broadcast(&b->drained);
		pthread_mutex_unlock(&b->mu);
	}
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void usage(void)
{
	fputs("usage: client_bench --target HOST:PORT [--concurrency N] "
	      "[--duration S] [--warmup S]\n", stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *target = NULL;
	int concurrency = 64;
	double duration = 10, warmup = 1;
	static bench b;
	double t0, t1, c0, c1;
	long ok, failed;
	struct timespec until;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--target") == 0)
			target = argv[++i];
		else if (strcmp(argv[i], "--concurrency") == 0)
			concurrency = atoi(argv[++i]);
		else if (strcmp(argv[i], "--duration") == 0)
			duration = atof(argv[++i]);
		else if (strcmp(argv[i], "--warmup") == 0)
			warmup = atof(argv[++i]);
		else
			usage();
	}
	if (target == NULL || concurrency < 1 || duration <= 0 || warmup < 0)
		usage();

	estore__testing__v1__echo_request__init(&b.req);
	b.req.message = "hello";
	pthread_mutex_init(&b.mu, NULL);
	pthread_cond_init(&b.drained, NULL);
	b.ch = rpc_channel_new(target, NULL);
	if (b.ch == NULL) {
		fprintf(stderr, "client_bench: bad target '%s'\n", target);
		return 2;
	}

	atomic_store(&b.outstanding, concurrency);
	for (int i = 0; i < concurrency; i++)
		start_call(&b);

	sleep_s(warmup);
	c0 = cpu_us();
	t0 = now_s();
	atomic_store(&b.phase, PHASE_MEASURE);
	sleep_s(duration);
	atomic_store(&b.phase, PHASE_STOP);
	t1 = now_s();
	c1 = cpu_us();
	ok = atomic_load(&b.ok);
	failed = atomic_load(&b.failed);

	/* Let the last calls land (bounded: a stuck server must not hang the
	 * bench; rpc_channel_free cancels whatever is left). */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&b.mu);
	while (atomic_load(&b.outstanding) > 0)
		if (pthread_cond_timedwait(&b.drained, &b.mu, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&b.mu);
	rpc_channel_free(b.ch);

	if (failed > 0 || atomic_load(&b.start_errors) > 0)
		fprintf(stderr, "client_bench: %ld failed calls (first: %s: %s), "
			"%ld refused starts\n", failed,
			rpc_code_name(b.first_code), b.first_message,
			atomic_load(&b.start_errors));
	if (ok == 0) {
		fputs("client_bench: no call succeeded\n", stderr);
		rc = 1;
	}
	printf("calls=%ld failed=%ld seconds=%.3f calls_per_s=%.1f "
	       "cpu_us_per_call=%.2f\n", ok, failed, t1 - t0,
	       (double)ok / (t1 - t0), ok > 0 ? (c1 - c0) / (double)ok : 0.0);
	return rc;
}
