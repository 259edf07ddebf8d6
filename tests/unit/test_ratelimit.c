/*
 * test_ratelimit.c - edge-proxy/ratelimit.c without Redis: Retry-After
 * rounding, and every take answered (allowed: fail open) when Redis
 * cannot be reached or the limit is off. The buckets themselves are
 * tested against a real Redis in tests/integration/test_edge.py.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ratelimit.h"

static void test_retry_after_rounds_up(void **state)
{
	(void)state;
	assert_int_equal(edge_rl_retry_after_s(0), 1);
	assert_int_equal(edge_rl_retry_after_s(1), 1);
	assert_int_equal(edge_rl_retry_after_s(1000), 1);
	assert_int_equal(edge_rl_retry_after_s(1001), 2);
	assert_int_equal(edge_rl_retry_after_s(59999), 60);
}

typedef struct tally {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int allowed, refused;
} tally;

static void count(void *user, bool allowed, long long retry_after_ms)
{
	tally *t = user;

	pthread_mutex_lock(&t->mu);
	if (allowed)
		t->allowed++;
	else
		t->refused++;
	(void)retry_after_ms;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

static void test_no_redis_fails_open(void **state)
{
	tally t = { .mu = PTHREAD_MUTEX_INITIALIZER,
		    .cv = PTHREAD_COND_INITIALIZER };
	edge_rl_config cfg;
	char err[128], key[300];
	edge_rl *rl;

	(void)state;
	edge_rl_config_defaults(&cfg);
	/* Port 1 on loopback: nothing listens, connects are refused. */
	cfg.redis_port = 1;
	cfg.timeout_ms = 100;
	cfg.queue_max = 4;
	rl = edge_rl_new(&cfg, err, sizeof(err));
	assert_non_null(rl);
	for (int i = 0; i < 20; i++)
		edge_rl_take(rl, "ip:127.0.0.1", 1, 1, count, &t);
	/* Off: answered at once. */
	edge_rl_take(rl, "ip:127.0.0.1", 0, 0, count, &t);
	/* A key too long for a bucket: allowed at once. */
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	edge_rl_take(rl, key, 10, 10, count, &t);
	/* Free completes what is still queued. */
	edge_rl_free(rl);
	assert_int_equal(t.allowed, 22);
	assert_int_equal(t.refused, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_retry_after_rounds_up),
		cmocka_unit_test(test_no_redis_fails_open),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
