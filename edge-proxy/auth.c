/*
 * auth.c - access tokens checked at the edge: local ES256 verification
 * against the JWKS, then revocation through the token service. See auth.h.
 */
#include "auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "estore/token/v1/token.rpc.h"
#include "rpc/log.h"
#include "services/token/jwt.h"
#include "services/token/keys.h"

#define COMPONENT "edge-auth"
/* Checks waiting for one JWKS fetch; more are refused (UNAVAILABLE)
 * rather than queued without end while the token service is slow. */
#define MAX_WAITERS 10000

/* One token on its way through the checks. */
typedef struct check {
	edge_auth *a;
	edge_auth_done done;
	void *user;
	struct check *next;     /* waiting for a JWKS fetch */
	uint8_t digest[32];     /* SHA-256 of the token: the cache key */
	char sub[ATOK_SUB_MAX + 1]; /* the verified subject, for the callback */
	size_t len;
	char token[];           /* NUL-terminated copy */
} check;

/* A positive revocation verdict. Entries are kept in a ring in insertion
 * order (so the oldest is evicted first) and chained by hash. */
typedef struct centry {
	uint8_t digest[32];
	long long until_ns;
	uint32_t next;          /* next index + 1 in the bucket, 0 = end */
	char sub[ATOK_SUB_MAX + 1]; /* the subject the token was verified for */
} centry;

struct edge_auth {
	edge_auth_config cfg;
	char *issuer, *audience;

	/* The keys are read by every check and replaced by a fetch: a
	 * verification holds the read lock, the swap the write lock. */
	pthread_rwlock_t keys_lock;
	keyset *keys;

	pthread_mutex_t mu;     /* everything below */
	pthread_cond_t wake;    /* the refresh thread */
	pthread_cond_t idle;    /* in_flight reached 0 */
	bool fetching;
	bool last_fetch_ok;
	long long last_fetch_ns; /* when the last fetch started; 0 = never */
	check *waiters, *waiters_tail;
	size_t n_waiters;
	long in_flight;          /* token-service calls not yet completed */
	bool stopping;
	pthread_t thread;
	bool thread_started;

	centry *ring;
	size_t ring_cap, ring_head, ring_n;
	uint32_t *buckets;      /* index + 1 of the first entry, 0 = empty */
	size_t bucket_mask;
};

static const char UNKNOWN_KID[] = "unknown signing key";

void edge_auth_config_defaults(edge_auth_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->issuer = "estore";
	cfg->audience = "estore";
	cfg->skew_s = 60;
	cfg->jwks_refresh_ms = 300000;
	cfg->jwks_min_refresh_ms = 5000;
	cfg->revocation_cache_ms = 1000;
	cfg->revocation_cache_max = 10000;
	cfg->call_timeout_ms = 5000;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void in_flight_add(edge_auth *a, long d)
{
	pthread_mutex_lock(&a->mu);
	a->in_flight += d;
	if (a->in_flight == 0)
		pthread_cond_broadcast(&a->idle);
	pthread_mutex_unlock(&a->mu);
}

static void finish(check *ck, rpc_code code, const char *reason)
{
	ck->done(ck->user, code, reason, code == RPC_OK ? ck->sub : NULL);
	free(ck);
}

/* ---- revocation cache (under mu) ------------------------------------------- */

static size_t bucket_of(const edge_auth *a, const uint8_t d[32])
{
	/* A SHA-256 is uniform: its first bytes are a fine hash. */
	return ((size_t)d[0] | (size_t)d[1] << 8 | (size_t)d[2] << 16 |
		(size_t)d[3] << 24) & a->bucket_mask;
}

static centry *cache_find(edge_auth *a, const uint8_t d[32])
{
	for (uint32_t i = a->buckets[bucket_of(a, d)]; i; i = a->ring[i - 1].next)
		if (memcmp(a->ring[i - 1].digest, d, 32) == 0)
			return &a->ring[i - 1];
	return NULL;
}

static void cache_unlink(edge_auth *a, size_t idx)
{
	uint32_t *p = &a->buckets[bucket_of(a, a->ring[idx].digest)];

	while (*p && *p != idx + 1)
		p = &a->ring[*p - 1].next;
	if (*p)
		*p = a->ring[idx].next;
}

/* A verdict still fresh: copies its subject into sub (when not NULL). */
static bool cache_valid(edge_auth *a, const uint8_t d[32], long long now,
			char *sub)
{
	const centry *e = a->ring ? cache_find(a, d) : NULL;

	if (!e || e->until_ns <= now)
		return false;
	if (sub)
		memcpy(sub, e->sub, sizeof(e->sub));
	return true;
}

static void cache_put(edge_auth *a, const uint8_t d[32], long long until,
		      const char *sub)
{
	centry *e;
	size_t idx;

	if (a->ring == NULL)
		return;
	e = cache_find(a, d);
	if (e) {
		/* Its place in the ring stays: it may go a little early,
		 * which only costs one more ValidateToken. */
		e->until_ns = until;
		snprintf(e->sub, sizeof(e->sub), "%s", sub);
		return;
	}
	if (a->ring_n == a->ring_cap) {
		cache_unlink(a, a->ring_head);
		a->ring_head = (a->ring_head + 1) % a->ring_cap;
		a->ring_n--;
	}
	idx = (a->ring_head + a->ring_n) % a->ring_cap;
	e = &a->ring[idx];
	memcpy(e->digest, d, 32);
	e->until_ns = until;
	snprintf(e->sub, sizeof(e->sub), "%s", sub);
	e->next = a->buckets[bucket_of(a, d)];
	a->buckets[bucket_of(a, d)] = (uint32_t)idx + 1;
	a->ring_n++;
}

/* ---- revocation ------------------------------------------------------------ */

static void validate_done(void *user, rpc_code code, const char *message,
			  ProtobufCMessage *resp)
{
	check *ck = user;
	edge_auth *a = ck->a;

	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (code == RPC_OK) {
		pthread_mutex_lock(&a->mu);
		cache_put(a, ck->digest,
			  now_ns() + a->cfg.revocation_cache_ms * 1000000LL,
			  ck->sub);
		pthread_mutex_unlock(&a->mu);
		finish(ck, RPC_OK, NULL);
	} else if (code == RPC_UNAUTHENTICATED) {
		finish(ck, RPC_UNAUTHENTICATED,
		       message && *message ? message : "token revoked");
	} else {
		/* Fail closed: a token whose revocation state we cannot
		 * learn does not get through. */
		rpc_log(RPC_LOG_WARN, COMPONENT, "ValidateToken: %s: %s",
			rpc_code_name(code), message ? message : "");
		finish(ck, RPC_UNAVAILABLE, "the token service is unavailable");
	}
	in_flight_add(a, -1);
}

/* The token verified locally: is it revoked? */
static void check_revocation(check *ck)
{
	edge_auth *a = ck->a;
	Estore__Token__V1__ValidateTokenRequest req =
		ESTORE__TOKEN__V1__VALIDATE_TOKEN_REQUEST__INIT;
	rpc_call_opts opts = { .timeout_ms = a->cfg.call_timeout_ms };
	bool cached;

	pthread_mutex_lock(&a->mu);
	cached = cache_valid(a, ck->digest, now_ns(), NULL);
	if (!cached)
		a->in_flight++;
	pthread_mutex_unlock(&a->mu);
	if (cached) {
		finish(ck, RPC_OK, NULL);
		return;
	}
	req.access_token = ck->token;
	if (estore_token_v1_TokenService_validate_token_async(
		    a->cfg.token_channel, &opts, &req, validate_done, ck) != 0) {
		finish(ck, RPC_UNAVAILABLE, "cannot call the token service");
		in_flight_add(a, -1);
	}
}

/* ---- the keys ----------------------------------------------------------------- */

static void verify(check *ck, bool may_fetch);

static void fetch_done(void *user, rpc_code code, const char *message,
		       ProtobufCMessage *resp)
{
	edge_auth *a = user;
	keyset *ks = NULL, *old = NULL;
	check *w;
	char err[256];

	if (code == RPC_OK) {
		ks = keyset_from_jwks((const Estore__Token__V1__Jwks *)resp, err,
				      sizeof(err));
		if (ks == NULL)
			rpc_log(RPC_LOG_ERROR, COMPONENT,
				"the token service's JWKS is refused: %s", err);
	} else {
		rpc_log(RPC_LOG_WARN, COMPONENT, "GetJwks: %s: %s",
			rpc_code_name(code), message ? message : "");
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (ks) {
		pthread_rwlock_wrlock(&a->keys_lock);
		old = a->keys;
		a->keys = ks;
		pthread_rwlock_unlock(&a->keys_lock);
		keyset_free(old);
		rpc_log(RPC_LOG_DEBUG, COMPONENT, "JWKS: %zu keys",
			keyset_count(ks));
	}
	pthread_mutex_lock(&a->mu);
	a->fetching = false;
	a->last_fetch_ok = ks != NULL;
	w = a->waiters;
	a->waiters = a->waiters_tail = NULL;
	a->n_waiters = 0;
	pthread_mutex_unlock(&a->mu);
	/* Once more with the new keys; no second fetch for them. */
	while (w) {
		check *next = w->next;

		w->next = NULL;
		verify(w, false);
		w = next;
	}
	in_flight_add(a, -1);
}

/* Starts GetJwks; the caller set a->fetching and counted it in in_flight
 * under mu. */
static void fetch_start(edge_auth *a)
{
	static const Estore__Token__V1__GetJwksRequest req =
		ESTORE__TOKEN__V1__GET_JWKS_REQUEST__INIT;
	rpc_call_opts opts = { .timeout_ms = a->cfg.call_timeout_ms };

	if (estore_token_v1_TokenService_get_jwks_async(a->cfg.token_channel,
							&opts, &req, fetch_done,
							a) != 0)
		fetch_done(a, RPC_UNAVAILABLE, "cannot call the token service",
			   NULL);
}

/* Under mu: may a fetch start now? Marks it started when so. */
static bool fetch_claim(edge_auth *a, long long now)
{
	if (a->fetching || a->stopping ||
	    (a->last_fetch_ns != 0 &&
	     now - a->last_fetch_ns < a->cfg.jwks_min_refresh_ms * 1000000LL))
		return false;
	a->fetching = true;
	a->last_fetch_ns = now;
	a->in_flight++;
	return true;
}

/* Local verification; a token naming a kid we do not know waits for a
 * fetch when one may run (a key rotated in since the last one). */
static void verify(check *ck, bool may_fetch)
{
	edge_auth *a = ck->a;
	atok_policy pol = { .issuer = a->issuer, .audience = a->audience,
			    .skew_s = a->cfg.skew_s };
	atok_claims claims;
	const char *why = NULL;
	bool have_keys, start = false, queued = false, keys_ok;

	pthread_rwlock_rdlock(&a->keys_lock);
	have_keys = a->keys != NULL;
	if (have_keys) {
		pol.keys = a->keys;
		why = atok_verify(&pol, ck->token, ck->len, (long long)time(NULL),
				  &claims, NULL);
	}
	pthread_rwlock_unlock(&a->keys_lock);
	if (have_keys && why == NULL) {
		/* atok_verify checked sub is well-formed and fits. */
		memcpy(ck->sub, claims.sub, sizeof(ck->sub));
		check_revocation(ck);
		return;
	}
	if (have_keys && strcmp(why, UNKNOWN_KID) != 0) {
		finish(ck, RPC_UNAUTHENTICATED, why);
		return;
	}

	pthread_mutex_lock(&a->mu);
	if (a->fetching || (may_fetch && (start = fetch_claim(a, now_ns())))) {
		if (a->n_waiters < MAX_WAITERS) {
			if (a->waiters_tail)
				a->waiters_tail->next = ck;
			else
				a->waiters = ck;
			a->waiters_tail = ck;
			a->n_waiters++;
			queued = true;
		}
	}
	keys_ok = a->last_fetch_ok;
	pthread_mutex_unlock(&a->mu);
	if (start)
		fetch_start(a);
	if (queued)
		return;
	/* No fetch to wait for: with current keys the kid is unknown (a
	 * forgery, or an old key); without them, or when the last fetch
	 * failed, we cannot tell. */
	if (have_keys && keys_ok)
		finish(ck, RPC_UNAUTHENTICATED, why);
	else
		finish(ck, RPC_UNAVAILABLE, have_keys ?
		       "the token keys could not be refreshed" :
		       "no token keys yet");
}

void edge_auth_check(edge_auth *a, const char *token, size_t len,
		     edge_auth_done done, void *user)
{
	check *ck;

	if (len == 0 || len > ATOK_MAX_LEN) {
		done(user, RPC_UNAUTHENTICATED, len ? "token too long" : "empty token",
		     NULL);
		return;
	}
	ck = malloc(sizeof(*ck) + len + 1);
	if (ck == NULL) {
		done(user, RPC_UNAVAILABLE, "out of memory", NULL);
		return;
	}
	ck->a = a;
	ck->done = done;
	ck->user = user;
	ck->next = NULL;
	ck->sub[0] = '\0';
	ck->len = len;
	memcpy(ck->token, token, len);
	ck->token[len] = '\0';
	EVP_Digest(ck->token, ck->len, ck->digest, NULL, EVP_sha256(), NULL);
	/* The same bytes passed both checks within revocation_cache_ms: the
	 * signature need not be verified again (an ECDSA verification is
	 * most of what a request costs the edge). */
	if (a->ring != NULL) {
		bool fresh;

		pthread_mutex_lock(&a->mu);
		fresh = cache_valid(a, ck->digest, now_ns(), ck->sub);
		pthread_mutex_unlock(&a->mu);
		if (fresh) {
			finish(ck, RPC_OK, NULL);
			return;
		}
	}
	verify(ck, true);
}

/* ---- refresh thread and life cycle ---------------------------------------------- */

/* Refetches the JWKS every jwks_refresh_ms, or every jwks_min_refresh_ms
 * while we have no good keys (the token service started after us). */
static void *refresher(void *arg)
{
	edge_auth *a = arg;

	pthread_mutex_lock(&a->mu);
	while (!a->stopping) {
		long long every = a->last_fetch_ok ? a->cfg.jwks_refresh_ms :
						     a->cfg.jwks_min_refresh_ms;
		long long due = a->last_fetch_ns + every * 1000000LL;
		long long now = now_ns();

		if (now >= due && !a->fetching) {
			if (fetch_claim(a, now)) {
				pthread_mutex_unlock(&a->mu);
				fetch_start(a);
				pthread_mutex_lock(&a->mu);
				continue;
			}
		}
		{
			struct timespec ts;
			long long until = now >= due ? now + every * 1000000LL : due;

			ts.tv_sec = (time_t)(until / 1000000000LL);
			ts.tv_nsec = (long)(until % 1000000000LL);
			pthread_cond_timedwait(&a->wake, &a->mu, &ts);
		}
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

edge_auth *edge_auth_new(const edge_auth_config *cfg, char *err, size_t errlen)
{
	edge_auth *a = calloc(1, sizeof(*a));
	pthread_condattr_t ca;
	int rc;

	if (a == NULL)
		goto nomem;
	a->cfg = *cfg;
	pthread_rwlock_init(&a->keys_lock, NULL);
	pthread_mutex_init(&a->mu, NULL);
	pthread_condattr_init(&ca);
	/* The refresh thread's deadlines are on the monotonic clock. */
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&a->idle, NULL);
	a->issuer = strdup(cfg->issuer);
	a->audience = strdup(cfg->audience);
	if (a->issuer == NULL || a->audience == NULL)
		goto nomem;
	if (cfg->revocation_cache_ms > 0 && cfg->revocation_cache_max > 0) {
		size_t nb = 16;

		while (nb < 2 * cfg->revocation_cache_max)
			nb *= 2;
		a->ring_cap = cfg->revocation_cache_max;
		a->ring = calloc(a->ring_cap, sizeof(*a->ring));
		a->buckets = calloc(nb, sizeof(*a->buckets));
		a->bucket_mask = nb - 1;
		if (a->ring == NULL || a->buckets == NULL)
			goto nomem;
	}
	/* The first fetch, now: the thread then waits for its answer. */
	pthread_mutex_lock(&a->mu);
	fetch_claim(a, now_ns());
	pthread_mutex_unlock(&a->mu);
	fetch_start(a);
	rc = pthread_create(&a->thread, NULL, refresher, a);
	if (rc != 0) {
		snprintf(err, errlen, "JWKS refresh thread: %s", strerror(rc));
		edge_auth_free(a);
		return NULL;
	}
	a->thread_started = true;
	return a;
nomem:
	snprintf(err, errlen, "out of memory");
	edge_auth_free(a);
	return NULL;
}

void edge_auth_free(edge_auth *a)
{
	if (a == NULL)
		return;
	pthread_mutex_lock(&a->mu);
	a->stopping = true;
	pthread_cond_broadcast(&a->wake);
	pthread_mutex_unlock(&a->mu);
	if (a->thread_started)
		pthread_join(a->thread, NULL);
	pthread_mutex_lock(&a->mu);
	while (a->in_flight > 0)
		pthread_cond_wait(&a->idle, &a->mu);
	pthread_mutex_unlock(&a->mu);
	keyset_free(a->keys);
	free(a->ring);
	free(a->buckets);
	free(a->issuer);
	free(a->audience);
	pthread_cond_destroy(&a->idle);
	pthread_cond_destroy(&a->wake);
	pthread_mutex_destroy(&a->mu);
	pthread_rwlock_destroy(&a->keys_lock);
	free(a);
}
