/*
 * redis.c - a pool of blocking hiredis connections for worker threads,
 * and Lua scripts by SHA.
 */
#include "services/common/redis.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "rpc/log.h"

struct rds_pool {
	char *host;
	int port;
	char *password;          /* NULL when none */
	int max_conns;
	int timeout_ms;

	pthread_mutex_t lock;
	pthread_cond_t freed;
	redisContext **idle;
	int n_idle;
	int n_open;              /* idle + borrowed + being opened */
	bool down;               /* last connect failed */
	bool trying;             /* a thread is connecting while down */

	/* The watcher's own connection, so a busy pool never reads as a
	 * dead Redis. */
	pthread_mutex_t ping_lock;
	redisContext *ping_conn;
};

/* rds_script.sha is filled by whichever thread first loads the script and
 * read by all: one lock for all scripts (held for a copy only). */
static pthread_mutex_t sha_lock = PTHREAD_MUTEX_INITIALIZER;

static struct timeval ms_tv(int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000,
			      .tv_usec = (ms % 1000) * 1000 };
	return tv;
}

static redisContext *open_conn(rds_pool *p)
{
	redisContext *c = redisConnectWithTimeout(p->host, p->port,
						  ms_tv(p->timeout_ms));

	if (!c)
		return NULL;
	if (c->err) {
		rpc_log(RPC_LOG_DEBUG, "redis", "connect failed: %s", c->errstr);
		redisFree(c);
		return NULL;
	}
	/* Every command is bounded too: a Redis that stops answering turns
	 * into an error on this connection, not a stuck worker. */
	if (redisSetTimeout(c, ms_tv(p->timeout_ms)) != REDIS_OK ||
	    redisEnableKeepAlive(c) != REDIS_OK) {
		redisFree(c);
		return NULL;
	}
	if (p->password) {
		const char *argv[2] = { "AUTH", p->password };
		size_t lens[2] = { 4, strlen(p->password) };
		redisReply *r = redisCommandArgv(c, 2, argv, lens);
		bool ok = r && r->type == REDIS_REPLY_STATUS;

		if (!ok)
			/* The reply text says "invalid password" or similar;
			 * it never echoes the password. */
			rpc_log(RPC_LOG_ERROR, "redis", "AUTH failed: %s",
				r && r->type == REDIS_REPLY_ERROR ? r->str
								  : c->errstr);
		if (r)
			freeReplyObject(r);
		if (!ok) {
			redisFree(c);
			return NULL;
		}
	}
	return c;
}

/* Redis never speaks first: bytes (or EOF) on an idle connection mean
 * the server closed it (restart, timeout, CLIENT KILL). */
static bool idle_conn_alive(redisContext *c)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

	if (c->err || c->fd < 0)
		return false;
	return poll(&pfd, 1, 0) == 0;
}

rds_pool *rds_pool_new(const char *host, int port, const char *password,
		       int max_conns, int timeout_ms)
{
	rds_pool *p;
	pthread_condattr_t ca;

	if (!host || max_conns < 1 || timeout_ms < 1)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->host = strdup(host);
	p->password = password && *password ? strdup(password) : NULL;
	p->idle = calloc((size_t)max_conns, sizeof(*p->idle));
	if (!p->host || !p->idle || (password && *password && !p->password)) {
		free(p->host);
		free(p->password);
		free(p->idle);
		free(p);
		return NULL;
	}
	p->port = port;
	p->max_conns = max_conns;
	p->timeout_ms = timeout_ms;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->ping_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->freed, &ca);
	pthread_condattr_destroy(&ca);
	return p;
}

void rds_pool_free(rds_pool *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n_idle; i++)
		redisFree(p->idle[i]);
	if (p->ping_conn)
		redisFree(p->ping_conn);
	pthread_cond_destroy(&p->freed);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->ping_lock);
	if (p->password) {
		/* Do not leave the secret in freed memory. */
		explicit_bzero(p->password, strlen(p->password));
		free(p->password);
	}
	free(p->host);
	free(p->idle);
	free(p);
}

static void deadline_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

redisContext *rds_acquire(rds_pool *p, int timeout_ms, rpc_code *code)
{
	struct timespec deadline;
	redisContext *c;
	bool i_try;

	deadline_after(&deadline, timeout_ms > 0 ? timeout_ms : 0);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->n_idle > 0) {
			c = p->idle[--p->n_idle];
			if (idle_conn_alive(c)) {
				pthread_mutex_unlock(&p->lock);
				return c;
			}
			redisFree(c);
			p->n_open--;
		}
		if (p->n_open < p->max_conns) {
			/* While the server is down one thread at a time tries
			 * to reconnect; the others fail at once instead of each
			 * waiting out a connect timeout (a black-holed host) and
			 * missing their deadlines. */
			if (p->down && p->trying) {
				pthread_mutex_unlock(&p->lock);
				if (code)
					*code = RPC_UNAVAILABLE;
				return NULL;
			}
			break;
		}
		if (pthread_cond_timedwait(&p->freed, &p->lock, &deadline) ==
		    ETIMEDOUT && p->n_idle == 0 && p->n_open >= p->max_conns) {
			pthread_mutex_unlock(&p->lock);
			if (code)
				*code = RPC_RESOURCE_EXHAUSTED;
			return NULL;
		}
	}
	/* Reserve the slot and connect outside the lock. */
	p->n_open++;
	i_try = p->down;
	if (i_try)
		p->trying = true;
	pthread_mutex_unlock(&p->lock);

	c = open_conn(p);

	pthread_mutex_lock(&p->lock);
	if (i_try)
		p->trying = false;
	if (!c) {
		p->n_open--;
		pthread_cond_signal(&p->freed);
		if (!p->down)
			rpc_log(RPC_LOG_WARN, "redis", "cannot connect to %s:%d",
				p->host, p->port);
		p->down = true;
	} else if (p->down) {
		rpc_log(RPC_LOG_INFO, "redis", "connected to %s:%d", p->host,
			p->port);
		p->down = false;
	}
	pthread_mutex_unlock(&p->lock);
	if (!c && code)
		*code = RPC_UNAVAILABLE;
	return c;
}

void rds_release(rds_pool *p, redisContext *c)
{
	bool reuse;

	if (!c)
		return;
	/* hiredis sets c->err on I/O errors, timeouts and protocol errors;
	 * after any of them the stream may be out of step with replies. */
	reuse = c->err == 0;
	pthread_mutex_lock(&p->lock);
	if (reuse && p->n_idle < p->max_conns) {
		p->idle[p->n_idle++] = c;
		c = NULL;
	} else {
		p->n_open--;
	}
	pthread_cond_signal(&p->freed);
	pthread_mutex_unlock(&p->lock);
	if (c)
		redisFree(c);
}

redisReply *rds_command(redisContext *c, int argc, const char **argv,
			const size_t *argvlen, rpc_code *code)
{
	redisReply *r;

	if (c->err) {
		if (code)
			*code = RPC_UNAVAILABLE;
		return NULL;
	}
	r = redisCommandArgv(c, argc, argv, argvlen);
	if (!r) {
		/* c->err is now set: rds_release closes the connection. */
		rpc_log(RPC_LOG_DEBUG, "redis", "command failed: %s", c->errstr);
		if (code)
			*code = RPC_UNAVAILABLE;
		return NULL;
	}
	if (code)
		*code = RPC_OK;
	return r;
}

/* SCRIPT LOAD: Redis computes the SHA; we only remember it. */
static bool load_script(redisContext *c, rds_script *s, char sha[41],
			rpc_code *code)
{
	const char *argv[3] = { "SCRIPT", "LOAD", s->source };
	size_t lens[3] = { 6, 4, strlen(s->source) };
	redisReply *r = rds_command(c, 3, argv, lens, code);
	bool ok;

	if (!r)
		return false;
	ok = r->type == REDIS_REPLY_STRING && r->len == 40;
	if (ok) {
		memcpy(sha, r->str, 40);
		sha[40] = '\0';
		pthread_mutex_lock(&sha_lock);
		memcpy(s->sha, sha, 41);
		pthread_mutex_unlock(&sha_lock);
	} else {
		rpc_log(RPC_LOG_ERROR, "redis", "SCRIPT LOAD failed: %s",
			r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		if (code)
			*code = RPC_INTERNAL;
	}
	freeReplyObject(r);
	return ok;
}

redisReply *rds_eval(redisContext *c, rds_script *s, int nkeys, int argc,
		     const char **argv, const size_t *argvlen, rpc_code *code)
{
	const char **av;
	size_t *al;
	char sha[41], nk[16];
	redisReply *r = NULL;

	pthread_mutex_lock(&sha_lock);
	memcpy(sha, s->sha, sizeof(sha));
	pthread_mutex_unlock(&sha_lock);
	sha[40] = '\0';
	if (sha[0] == '\0' && !load_script(c, s, sha, code))
		return NULL;

	av = malloc((size_t)(argc + 3) * sizeof(*av));
	al = malloc((size_t)(argc + 3) * sizeof(*al));
	if (!av || !al) {
		free(av);
		free(al);
		if (code)
			*code = RPC_RESOURCE_EXHAUSTED;
		return NULL;
	}
	snprintf(nk, sizeof(nk), "%d", nkeys);
	av[0] = "EVALSHA";
	al[0] = 7;
	av[1] = sha;
	al[1] = 40;
	av[2] = nk;
	al[2] = strlen(nk);
	for (int i = 0; i < argc; i++) {
		av[3 + i] = argv[i];
		al[3 + i] = argvlen ? argvlen[i] : strlen(argv[i]);
	}
	r = rds_command(c, argc + 3, av, al, code);
	/* After a restart or SCRIPT FLUSH the server forgot the script:
	 * load it again and retry once. */
	if (r && r->type == REDIS_REPLY_ERROR &&
	    strncmp(r->str, "NOSCRIPT", 8) == 0) {
		freeReplyObject(r);
		r = NULL;
		if (load_script(c, s, sha, code))
			r = rds_command(c, argc + 3, av, al, code);
	}
	free(av);
	free(al);
	return r;
}

bool rds_ping(rds_pool *p)
{
	redisReply *r;
	bool ok;

	pthread_mutex_lock(&p->ping_lock);
	if (p->ping_conn && p->ping_conn->err) {
		redisFree(p->ping_conn);
		p->ping_conn = NULL;
	}
	if (!p->ping_conn)
		p->ping_conn = open_conn(p);
	if (!p->ping_conn) {
		pthread_mutex_unlock(&p->ping_lock);
		return false;
	}
	r = redisCommand(p->ping_conn, "PING");
	ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
	if (r)
		freeReplyObject(r);
	if (!ok) {
		redisFree(p->ping_conn);
		p->ping_conn = NULL;
	}
	pthread_mutex_unlock(&p->ping_lock);
	return ok;
}
