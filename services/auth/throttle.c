/*
 * throttle.c - failed-login counters in Redis. See throttle.h.
 */
#include "throttle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "services/common/redis.h"

/* An email is at most 254 bytes (validated by the caller), an address at
 * most 45: keys stay well within this. */
#define KEY_MAX 320

struct throttle {
	rds_pool *pool;
	throttle_config cfg;
};

/*
 * Both counters in one round trip. KEYS: the account key, then optionally
 * the address key. Returns {n, last} per key (0 when absent).
 */
static rds_script check_script = {
	.source =
		"local r = {}\n"
		"for _, k in ipairs(KEYS) do\n"
		"  local v = redis.call('HMGET', k, 'n', 'last')\n"
		"  r[#r + 1] = tonumber(v[1]) or 0\n"
		"  r[#r + 1] = tonumber(v[2]) or 0\n"
		"end\n"
		"return r\n",
};

/*
 * One failure under each key, atomically per key. ARGV: now_ms, window_ms,
 * base_ms, max_delay_ms, then one max_failures per key. The expiry covers
 * the window plus the delay the key now owes, so a key in back-off cannot
 * lapse before its delay is served (which would hand out a fresh set of
 * free attempts at the cap).
 */
static rds_script fail_script = {
	.source =
		"local now = tonumber(ARGV[1])\n"
		"local window = tonumber(ARGV[2])\n"
		"local base = tonumber(ARGV[3])\n"
		"local cap = tonumber(ARGV[4])\n"
		"for i, k in ipairs(KEYS) do\n"
		"  local max = tonumber(ARGV[4 + i])\n"
		"  local n = redis.call('HINCRBY', k, 'n', 1)\n"
		"  redis.call('HSET', k, 'last', ARGV[1])\n"
		"  local delay = 0\n"
		"  if n >= max then\n"
		"    delay = math.min(cap, base * 2 ^ math.min(n - max, 40))\n"
		"  end\n"
		"  redis.call('PEXPIRE', k, math.floor(window + delay))\n"
		"end\n"
		"return 1\n",
};

throttle *throttle_new(rds_pool *pool, const throttle_config *cfg)
{
	throttle *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->pool = pool;
	t->cfg = *cfg;
	return t;
}

void throttle_free(throttle *t)
{
	free(t);
}

long long throttle_delay_ms(long long n, long long max_failures,
			    long long base_ms, long long max_delay_ms)
{
	long long d = base_ms;

	if (n < max_failures)
		return 0;
	/* Doubling with an early stop: no shift can overflow. */
	for (long long i = max_failures; i < n && d < max_delay_ms; i++)
		d *= 2;
	return d < max_delay_ms ? d : max_delay_ms;
}

void throttle_peer_address(const char *peer, char *out, size_t cap)
{
	const char *start, *end;

	out[0] = '\0';
	if (peer == NULL || cap == 0)
		return;
	if (strncmp(peer, "ipv4:", 5) == 0) {
		start = peer + 5;
		end = strrchr(start, ':');
	} else if (strncmp(peer, "ipv6:[", 6) == 0) {
		start = peer + 6;
		end = strchr(start, ']');
	} else {
		return;
	}
	if (end == NULL || end == start || (size_t)(end - start) >= cap)
		return;
	memcpy(out, start, (size_t)(end - start));
	out[end - start] = '\0';
}

/* Wall-clock milliseconds: stored in Redis and compared by every replica,
 * so it must be a clock they share (not the monotonic one). */
static long long wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void acct_key(const char *email, char *out, size_t cap)
{
	size_t n = (size_t)snprintf(out, cap, "auth:fail:acct:");

	/* ASCII lower-casing, like the account service's case-insensitive
	 * uniqueness for the ASCII addresses nearly everyone has: "Bob@x"
	 * and "bob@x" share one counter. */
	for (const char *p = email; *p != '\0' && n + 1 < cap; p++, n++)
		out[n] = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
	out[n] = '\0';
}

static int build_keys(const char *email, const char *ip,
		      char keys[2][KEY_MAX])
{
	acct_key(email, keys[0], KEY_MAX);
	if (ip == NULL || ip[0] == '\0')
		return 1;
	snprintf(keys[1], KEY_MAX, "auth:fail:ip:%s", ip);
	return 2;
}

static long long retry_after(const throttle_config *cfg, long long n,
			     long long max, long long last, long long now)
{
	long long delay = throttle_delay_ms(n, max, cfg->base_ms,
					    cfg->max_delay_ms);
	long long left = last + delay - now;

	if (delay == 0 || left <= 0)
		return 0;
	/* Whole seconds, rounded up: waiting exactly this long is enough. */
	return (left + 999) / 1000;
}

rpc_code throttle_check(throttle *t, const char *email, const char *ip,
			long long *retry_after_s, long long *acct_failures)
{
	char keys[2][KEY_MAX];
	const char *argv[2];
	size_t argvlen[2];
	int nkeys = build_keys(email, ip, keys);
	rpc_code code = RPC_OK;
	redisContext *c;
	redisReply *r;
	long long worst = 0, now;

	*retry_after_s = 0;
	if (acct_failures != NULL)
		*acct_failures = 0;
	for (int i = 0; i < nkeys; i++) {
		argv[i] = keys[i];
		argvlen[i] = strlen(keys[i]);
	}
	c = rds_acquire(t->pool, t->cfg.redis_wait_ms, &code);
	if (c == NULL)
		return RPC_UNAVAILABLE;
	r = rds_eval(c, &check_script, nkeys, nkeys, argv, argvlen, &code);
	rds_release(t->pool, c);
	if (r == NULL)
		return RPC_UNAVAILABLE;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)nkeys * 2) {
		freeReplyObject(r);
		return RPC_UNAVAILABLE;
	}
	now = wall_ms();
	/* The account key comes first (build_keys). */
	if (acct_failures != NULL)
		*acct_failures = r->element[0]->integer;
	for (int i = 0; i < nkeys; i++) {
		long long max = i == 0 ? t->cfg.acct_max_failures :
					 t->cfg.ip_max_failures;
		long long s = retry_after(&t->cfg, r->element[2 * i]->integer,
					  max, r->element[2 * i + 1]->integer,
					  now);

		if (s > worst)
			worst = s;
	}
	freeReplyObject(r);
	if (worst > 0) {
		*retry_after_s = worst;
		return RPC_RESOURCE_EXHAUSTED;
	}
	return RPC_OK;
}

rpc_code throttle_fail(throttle *t, const char *email, const char *ip)
{
	char keys[2][KEY_MAX];
	char num[6][24];
	const char *argv[8];
	size_t argvlen[8];
	int nkeys = build_keys(email, ip, keys);
	int argc = 0;
	rpc_code code = RPC_OK;
	redisContext *c;
	redisReply *r;

	snprintf(num[0], sizeof(num[0]), "%lld", wall_ms());
	snprintf(num[1], sizeof(num[1]), "%lld", t->cfg.window_ms);
	snprintf(num[2], sizeof(num[2]), "%lld", t->cfg.base_ms);
	snprintf(num[3], sizeof(num[3]), "%lld", t->cfg.max_delay_ms);
	snprintf(num[4], sizeof(num[4]), "%lld", t->cfg.acct_max_failures);
	snprintf(num[5], sizeof(num[5]), "%lld", t->cfg.ip_max_failures);
	for (int i = 0; i < nkeys; i++)
		argv[argc++] = keys[i];
	for (int i = 0; i < 4 + nkeys; i++)
		argv[argc++] = num[i];
	for (int i = 0; i < argc; i++)
		argvlen[i] = strlen(argv[i]);

	c = rds_acquire(t->pool, t->cfg.redis_wait_ms, &code);
	if (c == NULL)
		return RPC_UNAVAILABLE;
	r = rds_eval(c, &fail_script, nkeys, argc, argv, argvlen, &code);
	rds_release(t->pool, c);
	if (r == NULL)
		return RPC_UNAVAILABLE;
	code = r->type == REDIS_REPLY_ERROR ? RPC_UNAVAILABLE : RPC_OK;
	freeReplyObject(r);
	return code;
}

rpc_code throttle_clear(throttle *t, const char *email)
{
	char key[KEY_MAX];
	const char *argv[2] = { "DEL", key };
	size_t argvlen[2];
	rpc_code code = RPC_OK;
	redisContext *c;
	redisReply *r;

	acct_key(email, key, sizeof(key));
	argvlen[0] = 3;
	argvlen[1] = strlen(key);
	c = rds_acquire(t->pool, t->cfg.redis_wait_ms, &code);
	if (c == NULL)
		return RPC_UNAVAILABLE;
	r = rds_command(c, 2, argv, argvlen, &code);
	rds_release(t->pool, c);
	if (r == NULL)
		return RPC_UNAVAILABLE;
	code = r->type == REDIS_REPLY_ERROR ? RPC_UNAVAILABLE : RPC_OK;
	freeReplyObject(r);
	return code;
}
