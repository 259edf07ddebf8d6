/*
 * ratelimit.c - token buckets in Redis, taken off the caller's thread.
 * See ratelimit.h.
 */
#include "ratelimit.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rpc/log.h"
#include "services/common/redis.h"

#define COMPONENT "edge-ratelimit"
#define KEY_PREFIX "edge:rl:"
/* An account id or an address fits with room to spare. */
#define KEY_MAX 200
/* Warnings about failing open, at most this often: a Redis outage must
 * not become a log flood at request rate. */
#define WARN_EVERY_NS (5 * 1000000000LL)
/* Leases: direct-mapped slots (a collision only costs a Redis call), and
 * the most tokens one call takes for later requests. */
#define LEASE_SLOTS 1024
#define LEASE_MAX 16
#define LEASE_MIN_LIFE_NS 1000000000LL

typedef struct job {
	struct job *next;
	edge_rl_done done;
	void *user;
	long long per_min, burst;
	uint64_t hash;
	bool leader;             /* fetches the lease its slot waits for */
	char key[KEY_MAX];
} job;

/* Tokens this edge took from a bucket ahead of use, and the requests
 * waiting while a fetch of more is under way. */
typedef struct lease {
	uint64_t hash;
	long long tokens;
	long long expires_ns;    /* monotonic */
	bool fetching;           /* a leader job is at Redis for this key */
	job *waiters, *waiters_tail;
	char key[KEY_MAX];
} lease;

struct edge_rl {
	edge_rl_config cfg;
	rds_pool *pool;

	pthread_mutex_t mu;     /* everything below */
	pthread_cond_t work;
	job *head, *tail;
	size_t n_queued;
	bool stopping;
	long long last_warn_ns;

	pthread_t *threads;
	int n_threads;

	pthread_mutex_t lease_mu;
	lease *leases;           /* LEASE_SLOTS */
};

/*
 * One take. KEYS[1]: the bucket. ARGV: now (wall-clock ms), burst, ms per
 * token, and how many tokens to take at most (a lease, see below).
 * Returns {taken, wait}: taken >= 1 tokens, or 0 and the ms until one is
 * there. A clock that went back (another edge's, slightly behind) refills
 * nothing rather than a negative amount. The expiry is two full refills:
 * an idle bucket would be full again by then, so dropping it changes
 * nothing.
 */
static rds_script take_script = {
	.source =
		"local now = tonumber(ARGV[1])\n"
		"local burst = tonumber(ARGV[2])\n"
		"local per = tonumber(ARGV[3])\n"
		"local want = tonumber(ARGV[4])\n"
		"local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
		"local tokens = tonumber(v[1])\n"
		"local ts = tonumber(v[2])\n"
		"if tokens == nil or ts == nil then\n"
		"  tokens = burst\n"
		"  ts = now\n"
		"end\n"
		"if now > ts then\n"
		"  tokens = math.min(burst, tokens + (now - ts) / per)\n"
		"  ts = now\n"
		"end\n"
		"local taken = 0\n"
		"local wait = 0\n"
		"if tokens >= 1 then\n"
		"  taken = math.min(want, math.floor(tokens))\n"
		"  tokens = tokens - taken\n"
		"else\n"
		"  wait = math.max(1, math.ceil((1 - tokens) * per))\n"
		"end\n"
		"redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),\n"
		"           'ts', string.format('%d', ts))\n"
		"redis.call('PEXPIRE', KEYS[1], math.ceil(2 * burst * per))\n"
		"return {taken, wait}\n",
};

void edge_rl_config_defaults(edge_rl_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->redis_host = "127.0.0.1";
	cfg->redis_port = 6379;
	cfg->timeout_ms = 250;
	cfg->workers = 2;
	cfg->queue_max = 4096;
}

long long edge_rl_retry_after_s(long long retry_after_ms)
{
	long long s = (retry_after_ms + 999) / 1000;

	return s < 1 ? 1 : s;
}

static long long mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Wall-clock ms: stored in Redis and compared by every edge, so it must
 * be a clock they share (not the monotonic one). */
static long long wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Logs that a request went through unchecked, unless we said so lately. */
static void warn_open(edge_rl *rl, const char *why)
{
	long long now = mono_ns();
	bool say;

	pthread_mutex_lock(&rl->mu);
	say = rl->last_warn_ns == 0 || now - rl->last_warn_ns >= WARN_EVERY_NS;
	if (say)
		rl->last_warn_ns = now;
	pthread_mutex_unlock(&rl->mu);
	if (say)
		rpc_log(RPC_LOG_WARN, COMPONENT, "rate limits not enforced "
			"(failing open): %s", why);
}

/*
 * Leases. A request of a busy key need not cost a Redis round trip: a
 * take may carry away up to lease_size() tokens, the first for the
 * request and the rest kept here for the next requests of the key, for
 * as long as those tokens take to refill (lease_size / rate, at least a
 * second). The tokens come out of the shared bucket, so several edges
 * together never allow more than the limit; tokens a lease still holds when it lapses are
 * lost, which can only make the limit stricter, and by at most what the
 * bucket refills in the lease's time, so a client under its rate never
 * runs dry. Small limits (a burst under 40, login's 10 a minute) take one
 * token at a time, exactly as without leases.
 */
static long long lease_size(long long burst)
{
	long long n = burst / 20;

	return n < 1 ? 1 : n > LEASE_MAX ? LEASE_MAX : n;
}

static uint64_t key_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* What edge_rl_take does with a request, by its key's lease slot. */
enum claim {
	CLAIM_TAKEN,    /* a leased token: allowed now */
	CLAIM_WAITING,  /* queued behind the fetch under way */
	CLAIM_FETCH,    /* the leader: to Redis, for itself and a lease */
	CLAIM_ALONE,    /* the slot serves another key: to Redis, no lease */
};

static bool slot_is(const lease *l, const job *j)
{
	return l->hash == j->hash && strcmp(l->key, j->key) == 0;
}

static enum claim lease_claim(edge_rl *rl, job *j)
{
	lease *l = &rl->leases[j->hash % LEASE_SLOTS];
	enum claim c;

	pthread_mutex_lock(&rl->lease_mu);
	if (slot_is(l, j) && l->tokens > 0 && mono_ns() < l->expires_ns) {
		l->tokens--;
		c = CLAIM_TAKEN;
	} else if (slot_is(l, j) && l->fetching) {
		j->next = NULL;
		if (l->waiters_tail)
			l->waiters_tail->next = j;
		else
			l->waiters = j;
		l->waiters_tail = j;
		c = CLAIM_WAITING;
	} else if (!l->fetching) {
		/* The slot is ours now (another key's idle lease is dropped). */
		l->hash = j->hash;
		memcpy(l->key, j->key, sizeof(l->key));
		l->tokens = 0;
		l->fetching = true;
		j->leader = true;
		c = CLAIM_FETCH;
	} else {
		c = CLAIM_ALONE;
	}
	pthread_mutex_unlock(&rl->lease_mu);
	return c;
}

static bool queue_job(edge_rl *rl, job *j);
static void lease_settle(edge_rl *rl, job *j, long long taken, long long wait);

/* A leader that cannot be queued (full, or stopping): its slot's waiters
 * and itself go through unchecked, as any take that cannot be checked. */
static void leader_fail_open(edge_rl *rl, job *j, const char *why)
{
	warn_open(rl, why);
	lease_settle(rl, j, 0, -1);
	j->done(j->user, true, 0);
	free(j);
}

/*
 * A leader's answer from Redis: `taken` tokens (one is the leader's), or
 * the bucket empty (`wait` ms), or no answer (wait < 0: fail open). The
 * waiters share the outcome: the leased tokens while they last; an empty
 * bucket refuses them all alike; no answer lets them all through. Waiters
 * left when the tokens run out get a new leader. Callbacks run here, on
 * the worker, outside the lock.
 */
static void lease_settle(edge_rl *rl, job *j, long long taken, long long wait)
{
	lease *l = &rl->leases[j->hash % LEASE_SLOTS];
	job *served = NULL, *next_leader = NULL;
	long long life_ns = (long long)((double)taken * 60e9 / (double)j->per_min);

	/* At least a second: a high limit refills a lease in microseconds,
	 * which would end it before its next request. Still safe: a lease
	 * that refills within the second holds fewer tokens than the bucket
	 * gains in it. */
	if (life_ns < LEASE_MIN_LIFE_NS)
		life_ns = LEASE_MIN_LIFE_NS;
	pthread_mutex_lock(&rl->lease_mu);
	if (slot_is(l, j) && l->fetching) {
		l->fetching = false;
		l->tokens = taken > 1 ? taken - 1 : 0;
		l->expires_ns = mono_ns() + life_ns;
		while (l->waiters && (wait != 0 || l->tokens > 0)) {
			job *w = l->waiters;

			l->waiters = w->next;
			if (wait == 0)
				l->tokens--;
			w->next = served;
			served = w;
		}
		if (l->waiters == NULL) {
			l->waiters_tail = NULL;
		} else {
			/* More waiters than tokens: the first fetches again,
			 * the rest keep waiting for it. */
			next_leader = l->waiters;
			l->waiters = next_leader->next;
			if (l->waiters == NULL)
				l->waiters_tail = NULL;
			next_leader->next = NULL;
			next_leader->leader = true;
			l->fetching = true;
		}
	}
	pthread_mutex_unlock(&rl->lease_mu);
	while (served) {
		job *w = served;

		served = w->next;
		w->done(w->user, wait <= 0, wait > 0 ? wait : 0);
		free(w);
	}
	if (next_leader && !queue_job(rl, next_leader))
		leader_fail_open(rl, next_leader, "queue full");
}

/* The script for one job: the ms to wait (0 = taken; tokens taken beyond
 * the first are leased), or -1 when Redis could not tell (the caller fails
 * open). */
static long long run_take(edge_rl *rl, const job *j, long long *taken_out)
{
	char now[24], burst[24], per[40], want[24];
	const char *argv[5] = { j->key, now, burst, per, want };
	size_t argvlen[5];
	rpc_code code = RPC_OK;
	redisContext *c;
	redisReply *r;
	long long wait = -1;

	*taken_out = 0;
	snprintf(now, sizeof(now), "%lld", wall_ms());
	snprintf(burst, sizeof(burst), "%lld", j->burst);
	/* Fractional: 120 a minute is 500 ms a token, 7 a minute 8571.43. */
	snprintf(per, sizeof(per), "%.3f", 60000.0 / (double)j->per_min);
	snprintf(want, sizeof(want), "%lld", j->leader ? lease_size(j->burst) : 1);
	for (int i = 0; i < 5; i++)
		argvlen[i] = strlen(argv[i]);
	c = rds_acquire(rl->pool, rl->cfg.timeout_ms, &code);
	if (c == NULL) {
		warn_open(rl, "Redis unreachable");
		return -1;
	}
	r = rds_eval(c, &take_script, 1, 5, argv, argvlen, &code);
	rds_release(rl->pool, c);
	if (r == NULL) {
		warn_open(rl, "Redis unreachable");
		return -1;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_INTEGER &&
	    r->element[1]->type == REDIS_REPLY_INTEGER &&
	    r->element[0]->integer >= 0 && r->element[1]->integer >= 0) {
		long long taken = r->element[0]->integer;

		wait = taken > 0 ? 0 : r->element[1]->integer;
		if (taken == 0 && wait == 0)
			wait = 1;
		*taken_out = taken;
	} else {
		char why[200];

		snprintf(why, sizeof(why), "unexpected reply from Redis: %.*s",
			 r->type == REDIS_REPLY_ERROR ? (int)(r->len < 150 ? r->len : 150) : 0,
			 r->type == REDIS_REPLY_ERROR ? r->str : "");
		warn_open(rl, why);
	}
	freeReplyObject(r);
	return wait;
}

static void *worker(void *arg)
{
	edge_rl *rl = arg;

	pthread_mutex_lock(&rl->mu);
	for (;;) {
		job *j;
		long long wait;

		while (rl->head == NULL && !rl->stopping)
			pthread_cond_wait(&rl->work, &rl->mu);
		/* Stopping still drains the queue: every take gets its
		 * callback. */
		if (rl->head == NULL)
			break;
		j = rl->head;
		rl->head = j->next;
		if (rl->head == NULL)
			rl->tail = NULL;
		rl->n_queued--;
		pthread_mutex_unlock(&rl->mu);

		{
			long long taken;

			wait = run_take(rl, j, &taken);
			if (j->leader)
				lease_settle(rl, j, taken, wait);
		}
		j->done(j->user, wait <= 0, wait > 0 ? wait : 0);
		free(j);
		pthread_mutex_lock(&rl->mu);
	}
	pthread_mutex_unlock(&rl->mu);
	return NULL;
}

void edge_rl_take(edge_rl *rl, const char *key, long long per_min,
		  long long burst, edge_rl_done done, void *user)
{
	size_t klen = strlen(key);
	job *j;

	if (per_min <= 0) {
		done(user, true, 0);
		return;
	}
	if (klen + sizeof(KEY_PREFIX) > KEY_MAX) {
		warn_open(rl, "key too long");
		done(user, true, 0);
		return;
	}
	j = malloc(sizeof(*j));
	if (j == NULL) {
		warn_open(rl, "out of memory");
		done(user, true, 0);
		return;
	}
	j->next = NULL;
	j->done = done;
	j->user = user;
	j->per_min = per_min;
	j->burst = burst > 0 ? burst : 1;
	memcpy(j->key, KEY_PREFIX, sizeof(KEY_PREFIX) - 1);
	memcpy(j->key + sizeof(KEY_PREFIX) - 1, key, klen + 1);
	j->hash = key_hash(j->key);
	j->leader = false;
	switch (lease_claim(rl, j)) {
	case CLAIM_TAKEN:
		/* A token this edge already holds: allowed here and now. */
		free(j);
		done(user, true, 0);
		return;
	case CLAIM_WAITING:
		return;
	case CLAIM_FETCH:
		if (!queue_job(rl, j))
			leader_fail_open(rl, j, "queue full");
		return;
	case CLAIM_ALONE:
		break;
	}
	if (!queue_job(rl, j)) {
		free(j);
		warn_open(rl, "queue full");
		done(user, true, 0);
	}
}

static bool queue_job(edge_rl *rl, job *j)
{
	bool queued = false;

	j->next = NULL;
	pthread_mutex_lock(&rl->mu);
	if (rl->n_queued < rl->cfg.queue_max && !rl->stopping) {
		if (rl->tail)
			rl->tail->next = j;
		else
			rl->head = j;
		rl->tail = j;
		rl->n_queued++;
		queued = true;
		pthread_cond_signal(&rl->work);
	}
	pthread_mutex_unlock(&rl->mu);
	return queued;
}

edge_rl *edge_rl_new(const edge_rl_config *cfg, char *err, size_t errlen)
{
	edge_rl *rl = calloc(1, sizeof(*rl));
	int workers = cfg->workers > 0 ? cfg->workers : 1;

	if (rl == NULL)
		goto nomem;
	rl->cfg = *cfg;
	pthread_mutex_init(&rl->mu, NULL);
	pthread_cond_init(&rl->work, NULL);
	pthread_mutex_init(&rl->lease_mu, NULL);
	rl->leases = calloc(LEASE_SLOTS, sizeof(*rl->leases));
	if (rl->leases == NULL)
		goto nomem;
	/* One connection per worker: a worker never waits for another's. */
	rl->pool = rds_pool_new(cfg->redis_host, cfg->redis_port,
				cfg->redis_password, workers, cfg->timeout_ms);
	rl->threads = calloc((size_t)workers, sizeof(*rl->threads));
	if (rl->pool == NULL || rl->threads == NULL)
		goto nomem;
	/* The config's strings are not ours to keep. */
	rl->cfg.redis_host = NULL;
	rl->cfg.redis_password = NULL;
	for (int i = 0; i < workers; i++) {
		if (pthread_create(&rl->threads[i], NULL, worker, rl) != 0) {
			snprintf(err, errlen, "cannot start a rate-limit thread");
			edge_rl_free(rl);
			return NULL;
		}
		rl->n_threads++;
	}
	return rl;
nomem:
	snprintf(err, errlen, "out of memory");
	edge_rl_free(rl);
	return NULL;
}

void edge_rl_free(edge_rl *rl)
{
	if (rl == NULL)
		return;
	pthread_mutex_lock(&rl->mu);
	rl->stopping = true;
	pthread_cond_broadcast(&rl->work);
	pthread_mutex_unlock(&rl->mu);
	for (int i = 0; i < rl->n_threads; i++)
		pthread_join(rl->threads[i], NULL);
	free(rl->threads);
	if (rl->pool)
		rds_pool_free(rl->pool);
	pthread_cond_destroy(&rl->work);
	pthread_mutex_destroy(&rl->mu);
	pthread_mutex_destroy(&rl->lease_mu);
	free(rl->leases);
	free(rl);
}
