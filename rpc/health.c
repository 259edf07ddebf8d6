/*
 * health.c - grpc.health.v1.Health.
 *
 * Statuses live in a small array under one mutex; a generation counter
 * bumped on every change lets Watch handlers sleep on a condition variable
 * and wake only when something changed. Watch runs on a worker thread like
 * any handler, polling for cancellation between waits.
 */
#include "rpc/health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grpc/health/v1/health.pb-c.h"
#include "grpc/health/v1/health.rpc.h"
#include "rpc/server.h"
#include "rpc/status.h"

/* How often a Watch wakes to notice that its client went away. */
#define WATCH_POLL_MS 200

struct health_entry {
	char *service;
	rpc_serving_status status;
};

struct rpc_health {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct health_entry *entries;
	size_t n, cap;
	unsigned long generation;
	bool shut_down;
};

rpc_health *rpc_health_new(void)
{
	rpc_health *h = calloc(1, sizeof(*h));
	pthread_condattr_t attr;

	if (!h)
		return NULL;
	pthread_mutex_init(&h->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&h->changed, &attr);
	pthread_condattr_destroy(&attr);
	return h;
}

void rpc_health_free(rpc_health *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++)
		free(h->entries[i].service);
	free(h->entries);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->changed);
	free(h);
}

static struct health_entry *find_locked(rpc_health *h, const char *service)
{
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->entries[i].service, service) == 0)
			return &h->entries[i];
	return NULL;
}

int rpc_health_set(rpc_health *h, const char *service,
		   rpc_serving_status status)
{
	struct health_entry *e;
	int rc = 0;

	pthread_mutex_lock(&h->lock);
	/* After shutdown everything stays NOT_SERVING: a late "SERVING"
	 * from a service must not tell probes to send traffic. */
	if (h->shut_down)
		status = RPC_HEALTH_NOT_SERVING;
	e = find_locked(h, service);
	if (!e) {
		if (h->n == h->cap) {
			size_t cap = h->cap ? h->cap * 2 : 8;
			struct health_entry *p =
				realloc(h->entries, cap * sizeof(*p));

			if (!p) {
				rc = RPC_ERR_NOMEM;
				goto out;
			}
			h->entries = p;
			h->cap = cap;
		}
		e = &h->entries[h->n];
		e->service = strdup(service);
		if (!e->service) {
			rc = RPC_ERR_NOMEM;
			goto out;
		}
		e->status = RPC_HEALTH_SERVICE_UNKNOWN;
		h->n++;
	}
	if (e->status != status) {
		e->status = status;
		h->generation++;
		pthread_cond_broadcast(&h->changed);
	}
out:
	pthread_mutex_unlock(&h->lock);
	return rc;
}

rpc_serving_status rpc_health_get(rpc_health *h, const char *service)
{
	struct health_entry *e;
	rpc_serving_status st;

	pthread_mutex_lock(&h->lock);
	e = find_locked(h, service);
	st = e ? e->status : RPC_HEALTH_SERVICE_UNKNOWN;
	pthread_mutex_unlock(&h->lock);
	return st;
}

void rpc_health_shutdown(rpc_health *h)
{
	pthread_mutex_lock(&h->lock);
	h->shut_down = true;
	for (size_t i = 0; i < h->n; i++)
		h->entries[i].status = RPC_HEALTH_NOT_SERVING;
	h->generation++;
	pthread_cond_broadcast(&h->changed);
	pthread_mutex_unlock(&h->lock);
}

static Grpc__Health__V1__HealthCheckResponse__ServingStatus
to_wire(rpc_serving_status st)
{
	switch (st) {
	case RPC_HEALTH_SERVING:
		return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	case RPC_HEALTH_NOT_SERVING:
		return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
	case RPC_HEALTH_SERVICE_UNKNOWN:
		return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
	default:
		return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__UNKNOWN;
	}
}

static rpc_code health_check(rpc_ctx *ctx,
			     const Grpc__Health__V1__HealthCheckRequest *in,
			     Grpc__Health__V1__HealthCheckResponse *out)
{
	rpc_health *h = rpc_ctx_user(ctx);
	rpc_serving_status st = rpc_health_get(h, in->service ? in->service : "");

	if (st == RPC_HEALTH_SERVICE_UNKNOWN)
		return rpc_ctx_error(ctx, RPC_NOT_FOUND, "unknown service \"%s\"",
				     in->service);
	out->status = to_wire(st);
	return RPC_OK;
}

static rpc_code health_watch(rpc_ctx *ctx,
			     const Grpc__Health__V1__HealthCheckRequest *in,
			     rpc_stream *out)
{
	rpc_health *h = rpc_ctx_user(ctx);
	const char *service = in->service ? in->service : "";
	unsigned long seen_generation = 0;
	bool first = true;
	rpc_serving_status last = RPC_HEALTH_UNKNOWN;

	for (;;) {
		Grpc__Health__V1__HealthCheckResponse reply =
			GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
		struct health_entry *e;
		rpc_serving_status st;
		bool shut_down;

		pthread_mutex_lock(&h->lock);
		while (!first && h->generation == seen_generation &&
		       !rpc_ctx_cancelled(ctx)) {
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += WATCH_POLL_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&h->changed, &h->lock, &ts);
		}
		seen_generation = h->generation;
		e = find_locked(h, service);
		st = e ? e->status : RPC_HEALTH_SERVICE_UNKNOWN;
		shut_down = h->shut_down;
		pthread_mutex_unlock(&h->lock);

		if (rpc_ctx_cancelled(ctx))
			return RPC_CANCELLED;
		/* Only changes are streamed, as the protocol asks. */
		if (first || st != last) {
			reply.status = to_wire(st);
			if (rpc_stream_send(out, &reply.base) != 0)
				return RPC_CANCELLED;
			last = st;
			first = false;
		}
		if (shut_down)
			return rpc_ctx_error(ctx, RPC_UNAVAILABLE,
					     "server shutting down");
	}
}

int rpc_health_register(rpc_health *h, rpc_server *srv)
{
	static const grpc_health_v1_Health_impl impl = {
		.check = health_check,
		.watch = health_watch,
	};

	int rc = grpc_health_v1_Health_register(srv, &impl, h);

	/* Check only takes a short lock: probes never wait for a worker. */
	if (rc == 0)
		rc = rpc_server_set_inline(
			srv, grpc_health_v1_Health_methods[0].path);
	return rc;
}
