/*
 * deps.c - the dependency watcher thread behind gRPC health.
 */
#include "services/common/deps.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rpc/log.h"
#include "rpc/server.h"
#include "rpc/status.h"

#define HEALTHY_INTERVAL_MS 1000
#define BACKOFF_INITIAL_MS 250
#define BACKOFF_MAX_MS 5000

struct probe {
	char *name;
	deps_probe_fn fn;
	void *user;
	int last;          /* -1 never probed, 0 down, 1 up */
};

struct deps_watch {
	rpc_server *srv;
	char **services;
	int n_services;
	struct probe *probes;
	int n_probes;

	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;                /* under lock */

	atomic_bool healthy;
	int published;            /* -1 nothing yet, else the last healthy */
	int backoff_ms;
	uint64_t rng;
};

deps_watch *deps_watch_new(rpc_server *srv, const char *const *services,
			   int n_services)
{
	deps_watch *w = calloc(1, sizeof(*w));
	pthread_condattr_t ca;

	if (!w)
		return NULL;
	if (n_services > 0) {
		w->services = calloc((size_t)n_services, sizeof(*w->services));
		if (!w->services) {
			free(w);
			return NULL;
		}
		for (int i = 0; i < n_services; i++) {
			w->services[i] = strdup(services[i]);
			if (!w->services[i]) {
				w->n_services = i;
				deps_watch_free(w);
				return NULL;
			}
		}
		w->n_services = n_services;
	}
	w->srv = srv;
	w->published = -1;
	w->backoff_ms = BACKOFF_INITIAL_MS;
	atomic_init(&w->healthy, false);
	/* Jitter only has to differ between replicas, not be secret. */
	w->rng = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)w << 16) ^
		 0x9e3779b97f4a7c15ULL;
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->wake, &ca);
	pthread_condattr_destroy(&ca);
	return w;
}

int deps_watch_add(deps_watch *w, const char *name, deps_probe_fn fn,
		   void *user)
{
	struct probe *np;

	if (!w || !name || !fn || w->started)
		return RPC_ERR_INVALID;
	np = realloc(w->probes, (size_t)(w->n_probes + 1) * sizeof(*np));
	if (!np)
		return RPC_ERR_NOMEM;
	w->probes = np;
	np[w->n_probes].name = strdup(name);
	if (!np[w->n_probes].name)
		return RPC_ERR_NOMEM;
	np[w->n_probes].fn = fn;
	np[w->n_probes].user = user;
	np[w->n_probes].last = -1;
	w->n_probes++;
	return 0;
}

/* Runs every probe (all of them, so each transition is logged) and
 * returns whether all answered. */
static bool run_probes(deps_watch *w)
{
	bool all = true;

	for (int i = 0; i < w->n_probes; i++) {
		struct probe *p = &w->probes[i];
		int ok = p->fn(p->user) ? 1 : 0;

		if (ok != p->last) {
			if (!ok)
				rpc_log(RPC_LOG_WARN, "deps", "%s is unreachable",
					p->name);
			else if (p->last == 0)
				rpc_log(RPC_LOG_INFO, "deps", "%s is back", p->name);
			else
				rpc_log(RPC_LOG_DEBUG, "deps", "%s is reachable",
					p->name);
			p->last = ok;
		}
		if (!ok)
			all = false;
	}
	return all;
}

static void publish(deps_watch *w, bool healthy)
{
	rpc_serving_status st = healthy ? RPC_HEALTH_SERVING
					: RPC_HEALTH_NOT_SERVING;

	/* Set every round, not only on change: rpc_server_start marks all
	 * services SERVING, and this puts NOT_SERVING back if the watcher
	 * was started first. Unchanged values notify nobody. */
	rpc_server_set_health(w->srv, "", st);
	for (int i = 0; i < w->n_services; i++)
		rpc_server_set_health(w->srv, w->services[i], st);
	atomic_store(&w->healthy, healthy);
	if (w->published != (int)healthy) {
		if (healthy)
			rpc_log(w->published == 0 ? RPC_LOG_INFO : RPC_LOG_DEBUG,
				"deps", "all dependencies reachable: SERVING");
		else
			rpc_log(RPC_LOG_WARN, "deps",
				"a dependency is unreachable: NOT_SERVING");
		w->published = healthy;
	}
}

static uint64_t next_rand(deps_watch *w)
{
	/* xorshift64* */
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 2685821657736338717ULL;
}

/* The wait before the next round: steady while healthy; while not,
 * exponential from 250 ms to 5 s with ±20 % jitter so that replicas do
 * not probe a recovering database in lockstep. */
static int next_delay(deps_watch *w, bool healthy)
{
	int base;
	double f;

	if (healthy) {
		w->backoff_ms = BACKOFF_INITIAL_MS;
		return HEALTHY_INTERVAL_MS;
	}
	base = w->backoff_ms;
	w->backoff_ms = base * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : base * 2;
	f = 0.8 + 0.4 * (double)(next_rand(w) >> 11) / (double)(1ULL << 53);
	return (int)(base * f);
}

static void *watch_main(void *arg)
{
	deps_watch *w = arg;
	bool healthy = atomic_load(&w->healthy);

	pthread_setname_np(pthread_self(), "deps-watch");

	for (;;) {
		struct timespec ts;
		int delay = next_delay(w, healthy);

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += delay / 1000;
		ts.tv_nsec += (long)(delay % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&w->lock);
		while (!w->stop &&
		       pthread_cond_timedwait(&w->wake, &w->lock, &ts) != ETIMEDOUT)
			;
		if (w->stop) {
			pthread_mutex_unlock(&w->lock);
			break;
		}
		pthread_mutex_unlock(&w->lock);
		healthy = run_probes(w);
		publish(w, healthy);
	}
	return NULL;
}

int deps_watch_start(deps_watch *w)
{
	sigset_t block, old;
	int rc;

	if (!w || w->started)
		return RPC_ERR_INVALID;
	publish(w, run_probes(w));
	/* The thread inherits this mask: SIGTERM/SIGINT must reach the
	 * thread in rpc_server_run_until_signal's sigwait, not kill the
	 * process from here. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = pthread_create(&w->thread, NULL, watch_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return RPC_ERR_IO;
	w->started = true;
	return 0;
}

bool deps_watch_healthy(deps_watch *w)
{
	return w && atomic_load(&w->healthy);
}

void deps_watch_free(deps_watch *w)
{
	if (!w)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->lock);
		w->stop = true;
		pthread_cond_signal(&w->wake);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	for (int i = 0; i < w->n_probes; i++)
		free(w->probes[i].name);
	free(w->probes);
	for (int i = 0; i < w->n_services; i++)
		free(w->services[i]);
	free(w->services);
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
